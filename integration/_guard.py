"""guard: wraps a callable or LangChain tool so a failure goes through recovery; returns the fix or raises RecoveryFailed.

    @guard(schema=Review, checkpointer=None)
    async def review(text: str) -> dict: ...        # broken output -> repaired value

    @guard
    def fetch(url: str) -> dict: ...                 # 503 -> backoff re-runs fetch(url=...)

    safe = guard(my_tool)                            # a @tool / StructuredTool, same name and schema

On an exception the guard builds the incident from it (its content, when the exception
carries the failing output), registers the callable as the incident's operation with the
call's arguments bound to parameter names (so backoff can re-run it), and recovers. It
returns the recovered value: the re-run's own return value when backoff or refine proved
the fix by calling it again, else the repaired JSON value (validated into the pydantic
model when `schema` is one). When no validator proved a fix it raises RecoveryFailed,
whose `.result` is the RecoveryResult and whose `__cause__` is the original exception. The
results it hands out (`on_result`, RecoveryFailed) have `.parsed`: the value
as the schema's model instance.

Arguments must be JSON to travel in the checkpointed incident. A call with other arguments
(objects, bytes, open files) is still recovered from its content, but backoff cannot re-run
it: the incident names no operation, and its summary says which argument was not JSON. A
method's receiver (`self`, `cls`) is not an argument: the bound method is the operation.
LangGraph's control-flow exceptions (interrupts, parent commands) and RecoveryFailed from a
guard further in pass through untouched.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from kgot_errors.errors import RecoveryFailed
from kgot_errors.graph.recover import DEFAULT
from kgot_errors.integration._run import Options, arun, run
from kgot_errors.integration.typed import typed
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings
from kgot_errors.state import Layer, RecoveryResult

__all__ = ["Call", "guard"]

F = TypeVar("F", bound=Callable[..., Any])

_RERUN_LAYERS = (Layer.BACKOFF, Layer.REFINE, Layer.VOTE)
"""Layers that prove a fix by calling the operation again (refine and vote: with revised arguments)."""
_RECEIVERS = ("self", "cls")


def _passes_through(exc: BaseException) -> bool:
    from langgraph.errors import GraphBubbleUp

    return isinstance(exc, GraphBubbleUp | RecoveryFailed)


def _not_json(value: Any) -> str | None:
    """Why `value` cannot travel as JSON unchanged, or None when it can."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if json.loads(text) != value:
        return "it changes when sent as JSON (e.g. a tuple or a non-string key)"
    return None


class Call:
    """One failing call: its arguments by parameter name, and the operation that repeats it with JSON arguments.

    `arguments` is None when some argument is not JSON (`reason` says which). Calling
    `operation(**arguments)` makes the same call again; the last value it returned is kept
    in `returned`, so the guard can hand back the real object, not its JSON form.
    """

    _EMPTY = object()

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.returned: Any = Call._EMPTY
        self.reason: str | None = None
        signature = inspect.signature(fn)
        self._signature = signature
        self.arguments: dict[str, Any] | None = None
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            self.reason = f"the call's arguments do not fit {getattr(fn, '__name__', 'it')}{signature}: {exc}"
            return
        named: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                named.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                named[name] = list(value)
            else:
                named[name] = value
        for name, value in named.items():
            why = _not_json(value)
            if why is not None:
                self.reason = f"argument {name!r} ({type(value).__name__}) is not JSON: {why}"
                break
        self.arguments = None if self.reason else named

    @property
    def called(self) -> bool:
        """The operation has returned at least once (so `returned` holds its last value)."""
        return self.returned is not Call._EMPTY

    def _call_args(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional-only parameters, and everything before a *args, back in place; the rest by keyword."""
        params = self._signature.parameters.values()
        before_var = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
        args: list[Any] = []
        kwargs = dict(arguments)
        for p in params:
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                args.extend(kwargs.pop(p.name, ()))
                before_var = False
            elif p.kind is inspect.Parameter.POSITIONAL_ONLY or (
                    before_var and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD):
                if p.name in kwargs:
                    args.append(kwargs.pop(p.name))
                elif p.default is not inspect.Parameter.empty:
                    args.append(p.default)
                else:
                    break  # missing: the call itself says so
        return args, kwargs

    def operation(self) -> Callable[..., Any]:
        """`operation(**arguments)` repeats the call; its signature names every parameter, for argument checks."""
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=p.default)
                  if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  else p.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=(), annotation=list)
                  if p.kind is inspect.Parameter.VAR_POSITIONAL else p
                  for p in self._signature.parameters.values()]
        params.sort(key=lambda p: p.kind)

        if inspect.iscoroutinefunction(self.fn):
            async def again(**arguments: Any) -> Any:
                args, kwargs = self._call_args(arguments)
                self.returned = await self.fn(*args, **kwargs)
                return self.returned
        else:
            def again(**arguments: Any) -> Any:  # type: ignore[misc]
                args, kwargs = self._call_args(arguments)
                self.returned = self.fn(*args, **kwargs)
                return self.returned

        again.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        again.__name__ = getattr(self.fn, "__name__", "operation")
        return again


def _receiver_bound(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """For a function defined in a class and called as a method, the bound method and the other arguments."""
    params = list(inspect.signature(fn).parameters)
    if args and params and params[0] in _RECEIVERS and "." in getattr(fn, "__qualname__", ""):
        return fn.__get__(args[0]), args[1:]
    return fn, args


class _Guard:
    """The recovery half of a guarded callable (shared by its sync and async forms)."""

    def __init__(self, fn: Callable[..., Any], name: str, options: Options,
                 on_result: Callable[[RecoveryResult], Any] | None) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        self.on_result = on_result

    def _plan(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Call, dict[str, Any]]:
        target, rest = _receiver_bound(self.fn, args)
        call = Call(target, rest, kwargs)
        if call.arguments is None:
            note = f"backoff cannot re-run {self.name}: {call.reason}"
            return call, {"input_notes": [note]}
        return call, {"operation": self.name, "arguments": call.arguments}

    def _outcome(self, result: RecoveryResult, call: Call, exc: BaseException) -> Any:
        result = typed(result, self.options.schema)  # `parsed`: the model instance, as returned below
        if self.on_result is not None:
            self.on_result(result)
        if not result.recovered:
            raise RecoveryFailed(result, original=exc) from exc
        if result.recovered_by in _RERUN_LAYERS and call.called:
            return call.returned
        return result.parsed

    def recover(self, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call, fields = self._plan(args, kwargs)
        operations = {self.name: call.operation()} if "operation" in fields else {}
        result = run(self.options, exc, operations=operations, **fields)
        return self._outcome(result, call, exc)

    async def arecover(self, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call, fields = self._plan(args, kwargs)
        operations = {self.name: call.operation()} if "operation" in fields else {}
        result = await arun(self.options, exc, operations=operations, **fields)
        return self._outcome(result, call, exc)


def _guard_callable(fn: Callable[..., Any], name: str | None, options: Options,
                    on_result: Callable[[RecoveryResult], Any] | None) -> Callable[..., Any]:
    recovery = _Guard(fn, name or getattr(fn, "__qualname__", None) or repr(fn), options, on_result)
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if _passes_through(exc):
                    raise
                return await recovery.arecover(exc, args, kwargs)

        guarded_async.recovery = recovery  # type: ignore[attr-defined]
        return guarded_async

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if _passes_through(exc):
                raise
            return recovery.recover(exc, args, kwargs)

    guarded.recovery = recovery  # type: ignore[attr-defined]
    return guarded


def _guard_tool(tool: Any, name: str | None, options: Options,
                on_result: Callable[[RecoveryResult], Any] | None) -> Any:
    """A copy of a function-backed LangChain tool whose function and coroutine are guarded (name and schema kept)."""
    func, coroutine = getattr(tool, "func", None), getattr(tool, "coroutine", None)
    if func is None and coroutine is None:
        raise TypeError(f"guard() supports function-backed tools (@tool, StructuredTool, Tool); {type(tool).__name__} "
                        "implements _run itself: guard the function it calls instead")
    op_name = name or tool.name
    update = {key: _guard_callable(value, op_name, options, on_result)
              for key, value in (("func", func), ("coroutine", coroutine)) if value is not None}
    return tool.model_copy(update=update)


@overload
def guard(fn: F, /) -> F: ...


@overload
def guard(fn: None = None, /, *, name: str | None = ..., schema: Any = ..., context: str = ...,
          settings: Settings | None = ..., checkpointer: Any = ..., model: Any = ..., sandbox: Any = ...,
          operations: Mapping[str, Callable[..., Any]] | None = ..., runtime_context: RecoveryContext | None = ...,
          on_result: Callable[[RecoveryResult], Any] | None = ...) -> Callable[[F], F]: ...


def guard(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    schema: Any = None,
    context: str = "",
    settings: Settings | None = None,
    checkpointer: Any = DEFAULT,
    model: Any = None,
    sandbox: Any = None,
    operations: Mapping[str, Callable[..., Any]] | None = None,
    runtime_context: RecoveryContext | None = None,
    on_result: Callable[[RecoveryResult], Any] | None = None,
) -> Any:
    """Guard a sync or async callable, or a function-backed LangChain tool; usable bare (`@guard`) or configured.

    `name` is the operation's name (default: the function's qualified name, the tool's
    name); `schema`, `context`, `settings`, `checkpointer`, `model`, `sandbox`,
    `operations` and `runtime_context` are what `recover()` takes; `on_result` sees every
    RecoveryResult (recovered or not) before the guard returns or raises.
    """
    options = Options(schema=schema, context=context, settings=settings, checkpointer=checkpointer, model=model,
                      sandbox=sandbox, operations=dict(operations or {}), runtime_context=runtime_context)

    def apply(target: Any) -> Any:
        from langchain_core.tools import BaseTool

        if isinstance(target, BaseTool):
            return _guard_tool(target, name, options, on_result)
        if not callable(target):
            raise TypeError(f"guard() takes a callable or a LangChain tool, not {type(target).__name__}")
        return _guard_callable(target, name, options, on_result)

    return apply if fn is None else apply(fn)
