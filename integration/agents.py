"""Agents: route a failing LangGraph node, or a failing ToolNode call, into recovery; the graph itself is a subgraph.

    builder.add_node("extract", extract,
                     error_handler=node_error_handler(goto="use", on_failure="ask_human", state_schema=State))
    handler = tool_error_handler(schema=...)
    ToolNode(tools, wrap_tool_call=handler.wrap_tool_call, awrap_tool_call=handler.awrap_tool_call)
    # or: handler.tool_node(tools); or ToolNode(tools, handle_tool_errors=handler) (every message status="error")
    builder.add_node("recovery", build_graph())     # input {"incident": ...}, output {"result": ...}

`node_error_handler` follows LangGraph's node-level error handlers (`add_node(...,
error_handler=...)`, LangGraph >= 1.2): the handler runs after the node's RetryPolicy is
spent, receives the node's input state and a `NodeError` (the node's name and the
exception), and its return value decides what happens next. A plain update would end the
run there; the handler returns `Command(update=..., goto=...)` so the run continues. An
update to a key the graph's state does not have would be dropped by LangGraph without a
word: with `state_schema` the handler refuses such a key when it is made, and without it
when it first runs (ConfigError, naming the key and the fix).

`tool_error_handler` makes a `ToolErrorHandler`. As ToolNode's `wrap_tool_call` /
`awrap_tool_call` (or `handler.tool_node(tools)`), a recovered call comes back as a
success ToolMessage holding the repaired value, and only a call that was not recovered
as status "error" with a report of what was tried. As `handle_tool_errors` (a callable
that gets only the exception and returns the message text), LangGraph marks every message
it makes status "error", recovered or not. Without the tool's arguments nothing can be
re-run there: to re-run a flaky tool, guard the tool itself (`guard(tool)`), whose
RecoveryFailed the handler then reports without a second recovery.

With `schema=` a pydantic model, the RecoveryResult handed to `update` functions and carried
by RecoveryFailed has `parsed`, the model instance (as `guard` returns).

Recoveries started here run as threads of their own (the settings' checkpoint store by
default), never as hidden subgraphs of the agent's thread.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kgot_errors.errors import ConfigError, RecoveryFailed
from kgot_errors.graph.recover import DEFAULT
from kgot_errors.integration._run import Options, arun, run
from kgot_errors.integration.typed import typed
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings
from kgot_errors.state import RecoveryResult
from langgraph.errors import GraphBubbleUp, NodeError
from langgraph.types import Command

__all__ = ["ToolErrorHandler", "node_error_handler", "state_keys", "tool_error_handler"]

_REPORT_ATTEMPTS = 6


def _options(schema: Any, context: str, settings: Settings | None, checkpointer: Any, model: Any, sandbox: Any,
             runtime_context: RecoveryContext | None) -> Options:
    return Options(schema=schema, context=context, settings=settings, checkpointer=checkpointer, model=model,
                   sandbox=sandbox, runtime_context=runtime_context)


def state_keys(state_schema: Any) -> frozenset[str] | None:
    """The keys of a graph state schema (TypedDict, pydantic model, dataclass), or None when they cannot be told."""
    fields = getattr(state_schema, "model_fields", None)
    if isinstance(fields, Mapping):
        return frozenset(fields)
    dataclass_fields = getattr(state_schema, "__dataclass_fields__", None)
    if isinstance(dataclass_fields, Mapping):
        return frozenset(dataclass_fields)
    try:
        return frozenset(typing.get_type_hints(state_schema, include_extras=True))
    except Exception:  # noqa: BLE001 - not a class with annotations: nothing to check against
        return None


def _missing_key(key: str, where: str) -> ConfigError:
    return ConfigError(f"node_error_handler(update={key!r}): {where} has no {key!r} key, and LangGraph would drop "
                       f"the recovery without a word; declare `{key}: dict` in the state, pass update='a key it has', "
                       "or update=a function (state, result) -> update", setting="update")


def _channel_exists(key: str, state: Any) -> bool | None:
    """Whether the running graph has a channel `key`: from the state's own type, else from LangGraph's reader.

    None when it cannot be told (then the update is sent as is). The reader is LangGraph's
    internal CONFIG_KEY_READ; if a release moves it, the check is skipped, never wrong.
    """
    keys = state_keys(type(state)) if not isinstance(state, Mapping) else None
    if keys is not None:
        return key in keys
    try:
        from langgraph._internal._constants import CONFIG_KEY_READ
        from langgraph.config import get_config

        read = get_config()["configurable"][CONFIG_KEY_READ]
    except Exception:  # noqa: BLE001 - outside a run, or another LangGraph layout
        return None
    try:
        read(key)
    except KeyError:
        return False
    except Exception:  # noqa: BLE001 - the channel is there (e.g. empty)
        return True
    return True


def node_error_handler(
    *,
    goto: str,
    on_failure: str | None = None,
    update: Callable[[Any, RecoveryResult], Mapping[str, Any]] | str = "recovery",
    state_schema: Any = None,
    content: Callable[[Any, BaseException], str | None] | None = None,
    schema: Any = None,
    context: str = "",
    settings: Settings | None = None,
    checkpointer: Any = DEFAULT,
    model: Any = None,
    sandbox: Any = None,
    runtime_context: RecoveryContext | None = None,
) -> Callable[[Any, NodeError], Command]:
    """An error handler for `add_node(..., error_handler=...)` that recovers the node's failure.

    Recovered: `Command(update=..., goto=goto)`. Not recovered: `Command(update=...,
    goto=on_failure)`, or, with no `on_failure`, RecoveryFailed (carrying the result) ends the
    run. `update` is the state key that receives the RecoveryResult as plain data, or a
    function `(state, result) -> update` (`result.parsed` is the typed value). A key the state
    does not have raises ConfigError: here when `state_schema` (the graph's state class) is
    given, else when the handler first runs. The failing output comes from the exception when
    it carries it (OutputParserException.llm_output, JSONDecodeError.doc), else from
    `content(state, exception)`. Works in sync and async runs.
    """
    options = _options(schema, context, settings, checkpointer, model, sandbox, runtime_context)
    if isinstance(update, str) and state_schema is not None:
        keys = state_keys(state_schema)
        if keys is not None and update not in keys:
            raise _missing_key(update, f"the state schema {getattr(state_schema, '__name__', state_schema)!r}")
    checked: list[bool] = []  # the running graph's keys, checked once

    def writes(state: Any, result: RecoveryResult) -> Mapping[str, Any]:
        if not isinstance(update, str):
            return update(state, result)
        if not checked and state_schema is None:
            if _channel_exists(update, state) is False:
                raise _missing_key(update, "this graph's state")
            checked.append(True)
        return {update: result.to_data()}

    def recovery_handler(state: Any, error: NodeError) -> Command:
        fields: dict[str, Any] = {}
        failing = content(state, error.error) if content is not None else None
        if failing is not None:
            fields["content"] = failing
        result = typed(run(options, error.error, context=options.context or f"LangGraph node {error.node!r} failed",
                           **fields), options.schema)
        if result.recovered:
            return Command(update=writes(state, result), goto=goto)
        if on_failure is None:
            raise RecoveryFailed(result, original=error.error) from error.error
        return Command(update=writes(state, result), goto=on_failure)

    return recovery_handler


def _report(error: BaseException, result: RecoveryResult) -> str:
    """What the model reads when a tool call could not be recovered: the error, what was tried, the thread."""
    tried = "; ".join(f"{a.layer} {a.verdict}: {a.reason}" for a in result.attempts[-_REPORT_ATTEMPTS:])
    thread = f" (recovery thread {result.thread_id})" if result.thread_id else ""
    return (f"Error: {type(error).__name__}: {error}\n"
            f"kgot-errors could not recover it{thread}: {result.summary}\n"
            f"Tried: {tried or 'nothing applied'}\n"
            "Fix the call's arguments or try another approach.")


def _text(result: RecoveryResult) -> str:
    return result.text if result.text is not None else json.dumps(result.value, ensure_ascii=False)


class ToolErrorHandler:
    """Recovers failing tool calls for LangGraph's ToolNode; see the module docstring for the three ways to plug it in.

    The recovered message's `artifact` (never sent to the model) holds the recovery's
    thread id, layer, outcome and summary.
    """

    def __init__(self, options: Options) -> None:
        self.options = options
        # ToolNode reads the handled exception types from the handler's annotations (typing.get_type_hints),
        # which for an instance come from its own __annotations__: every Exception
        self.__annotations__ = {"error": Exception, "return": str}

    # --- handle_tool_errors: the exception in, the message text out ---------------------------------------------

    def __call__(self, error: Exception) -> str:
        """The repaired output, or a report of what was tried (ToolNode marks either as status "error")."""
        return self._outcome(error, lambda: run(self.options, error, context=self._context()))[0]

    # --- wrap_tool_call / awrap_tool_call: the whole call, so a recovered one is a success ------------------------

    def wrap_tool_call(self, request: Any, execute: Callable[[Any], Any]) -> Any:
        try:
            return execute(request)
        except GraphBubbleUp:
            raise
        except Exception as error:  # noqa: BLE001 - every tool failure goes to recovery (or back to the model)
            return self._message(request, error, *self._outcome(
                error, lambda: run(self.options, error, context=self._context(request))))

    async def awrap_tool_call(self, request: Any, execute: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            return await execute(request)
        except GraphBubbleUp:
            raise
        except Exception as error:  # noqa: BLE001 - as in wrap_tool_call
            if isinstance(error, RecoveryFailed) or _invalid_call(error):
                return self._message(request, error, *self._outcome(error, None))
            result = await arun(self.options, error, context=self._context(request))
            return self._message(request, error, *self._outcome(error, lambda: result))

    def tool_node(self, tools: Any, **kwargs: Any) -> Any:
        """A ToolNode running `tools` with this handler around every call."""
        from langgraph.prebuilt import ToolNode

        return ToolNode(tools, wrap_tool_call=self.wrap_tool_call, awrap_tool_call=self.awrap_tool_call, **kwargs)

    # --- shared ---------------------------------------------------------------------------------------------------

    def _context(self, request: Any = None) -> str:
        if self.options.context:
            return self.options.context
        call = getattr(request, "tool_call", None) or {}
        return f"the tool call {call['name']!r} failed" if call.get("name") else "a tool call failed"

    def _outcome(self, error: Exception, recover: Callable[[], RecoveryResult] | None,
                 ) -> tuple[str, RecoveryResult | None]:
        """(message text, the result when recovered): invalid arguments and a guard's RecoveryFailed pass as reports."""
        if _invalid_call(error):
            return error.message, None  # type: ignore[attr-defined]
        if isinstance(error, RecoveryFailed):
            return _report(error.original or error, error.result), None
        assert recover is not None
        result = typed(recover(), self.options.schema)
        if not result.recovered:
            return _report(error, result), None
        return _text(result), result

    def _message(self, request: Any, error: Exception, text: str, result: RecoveryResult | None) -> Any:
        from langchain_core.messages import ToolMessage

        call = request.tool_call
        artifact = None if result is None else {"kgot_errors": {
            "thread_id": result.thread_id, "recovered_by": result.recovered_by, "outcome": result.outcome,
            "summary": result.summary}}
        return ToolMessage(content=text, name=call["name"], tool_call_id=call["id"],
                           status="success" if result is not None else "error", artifact=artifact)


def _invalid_call(error: Exception) -> bool:
    """The model's arguments did not fit the tool: it is the one that can fix its call."""
    from langgraph.prebuilt.tool_node import ToolInvocationError

    return isinstance(error, ToolInvocationError)


def tool_error_handler(
    *,
    schema: Any = None,
    context: str = "",
    settings: Settings | None = None,
    checkpointer: Any = DEFAULT,
    model: Any = None,
    sandbox: Any = None,
    runtime_context: RecoveryContext | None = None,
) -> ToolErrorHandler:
    """A ToolErrorHandler: recovers a tool's failure; for ToolNode's wrap_tool_call (success when recovered) or handle_tool_errors.

    A tool whose failure carries its broken output (JSONDecodeError.doc,
    OutputParserException.llm_output) gets the repaired value as the message text (JSON).
    RecoveryFailed from a guarded tool is reported as is. Invalid arguments from the model
    (ToolInvocationError) go back to the model unchanged: it is the one that can fix its call.
    """
    return ToolErrorHandler(_options(schema, context, settings, checkpointer, model, sandbox, runtime_context))
