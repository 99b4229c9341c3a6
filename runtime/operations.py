"""Operations: the registry of re-runnable callables, calling one once, judging its failure, and the retry policy.

The retry policy here is the one machinery behind both the backoff node (one attempt per
graph step) and `APIErrorManager` (tenacity's loop in one call): the same wait computation,
the same transient/permanent split (repair/_classify.py), the same circuit breakers.

Calling convention: an incident's `arguments` is a JSON object and the operation is called
as `operation(**arguments)` (no positional arguments; an operation that wants them takes a
keyword). Sync callables run in a thread of their own so a blocking call never stalls the event
loop; async callables (and callables returning an awaitable) are awaited. `run_operation` bounds
a call by a deadline: past it the call is an `OperationTimeout` (transient, so retried like any
timeout). A sync call still running then cannot be stopped (Python cannot kill a thread): its
daemon thread is left to finish on its own, its result discarded, and it never delays exit.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from tenacity import RetryCallState
from tenacity.wait import wait_base, wait_exponential, wait_fixed

from kgot_errors.errors import KgotError
from kgot_errors.runtime.breaker import BreakerStore, CircuitBreaker, default_store
from kgot_errors.runtime.settings import ApiSettings
from kgot_errors.state import ErrorKind, Incident

__all__ = [
    "BackoffPolicy",
    "Failure",
    "NotJSON",
    "OperationTimeout",
    "Wait",
    "argument_error",
    "call_operation",
    "json_value",
    "registry",
    "run_operation",
    "wait_uniform",
]

_MESSAGE_CHARS = 1_000
_TRACEBACK_CHARS = 2_000


def registry(*operations: Callable[..., Any], **named: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    """A registry from callables (named by `__name__`) and `name=callable` pairs; names must be unique."""
    out: dict[str, Callable[..., Any]] = {}
    for op in operations:
        name = getattr(op, "__name__", None)
        if not name or name == "<lambda>":
            raise ValueError(f"{op!r} has no usable __name__; register it as name=callable")
        if name in out:
            raise ValueError(f"operation {name!r} registered twice")
        out[name] = op
    for name, op in named.items():
        if name in out:
            raise ValueError(f"operation {name!r} registered twice")
        if not callable(op):
            raise TypeError(f"operation {name!r} is not callable")
        out[name] = op
    return out


def argument_error(operation: Callable[..., Any], arguments: Mapping[str, Any]) -> str | None:
    """Why `operation(**arguments)` cannot bind, or None when it can (or the signature is unknowable)."""
    try:
        signature = inspect.signature(operation)
    except (TypeError, ValueError):
        return None  # builtins without a signature: let the call decide
    try:
        signature.bind(**arguments)
    except TypeError as exc:
        return f"arguments do not fit {getattr(operation, '__name__', 'the operation')}{signature}: {exc}"
    return None


class OperationTimeout(KgotError, TimeoutError):
    """A call of an operation did not return within its deadline (a TimeoutError: transient)."""

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(f"operation {name!r} did not return within {seconds:g} s "
                         "(api_error_management.operation_timeout_seconds)")
        self.name = name
        self.seconds = seconds


async def call_operation(operation: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call once, with no deadline: async callables awaited, sync ones in a thread, awaitable results awaited."""
    return await run_operation(operation, args, kwargs)


async def run_operation(operation: Callable[..., Any], args: tuple[Any, ...] = (),
                        kwargs: Mapping[str, Any] | None = None, *, timeout: float | None = None,
                        name: str | None = None) -> Any:
    """`operation(*args, **kwargs)` once, raising OperationTimeout if it has not returned after `timeout` s."""
    kwargs = dict(kwargs or {})
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            if inspect.iscoroutinefunction(operation):
                result = await operation(*args, **kwargs)
            else:
                result = await _in_thread(operation, args, kwargs)
            while inspect.isawaitable(result):
                result = await result
            return result
    except TimeoutError:
        if not deadline.expired():
            raise  # the operation's own timeout, not ours
        assert timeout is not None
        raise OperationTimeout(name or getattr(operation, "__name__", None) or repr(operation), timeout) from None


def _in_thread(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
    """Run `fn` in a daemon thread of its own (not the loop's executor: a hung call must not hold one of its
    few workers, nor keep the interpreter from exiting); the future settles when it returns."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()  # as asyncio.to_thread: tracing and callbacks see the caller's context

    def settle(value: Any, exc: BaseException | None) -> None:
        if future.done():  # abandoned at its deadline
            return
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)

    def work() -> None:
        try:
            value, exc = context.run(fn, *args, **kwargs), None
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting caller
            value, exc = None, error
        try:
            loop.call_soon_threadsafe(settle, value, exc)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting any more

    threading.Thread(target=work, name=f"kgot-op-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return future


class NotJSON(ValueError):
    """An operation returned a value strict JSON cannot carry (an object, bytes, NaN, a cycle, a lone surrogate)."""


def json_value(value: Any) -> tuple[Any, str, str | None]:
    """`(plain, text, note)`: the value as checkpoint-safe JSON data, its JSON text, and what changed.

    A value strict JSON cannot carry raises NotJSON (a re-run that returns one proves nothing);
    values JSON reshapes (tuples to lists, non-string keys to strings) are kept reshaped and
    `note` says so.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        raise NotJSON(f"the return value ({type(value).__name__}) is not strict JSON: {type(exc).__name__}: "
                      f"{str(exc)[:200]}") from None
    plain = json.loads(text)
    if plain != value or type(plain) is not type(value):
        return plain, text, f"return value of type {type(value).__name__} was stored as its JSON form"
    return plain, text, None


class Failure(NamedTuple):
    """One failed call, judged by repair/_classify.py: kind, HTTP status, Retry-After, what was raised."""

    kind: ErrorKind
    rule: str
    error_type: str
    message: str
    status_code: int | None = None
    retry_after: float | None = None
    traceback: str | None = None

    @property
    def transient(self) -> bool:
        return self.kind is ErrorKind.TRANSIENT

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        """Classify a raised exception exactly as an incident carrying it would be classified."""
        from kgot_errors.repair._classify import classify_incident

        incident = Incident.from_exception(exc, content=None).to_data()
        kind, _, rule = classify_incident(incident)
        return cls(kind, rule, incident["error_type"], incident["message"][:_MESSAGE_CHARS],
                   incident.get("status_code"), incident.get("retry_after"),
                   (incident.get("traceback") or "")[-_TRACEBACK_CHARS:] or None)

    @classmethod
    def bad_arguments(cls, reason: str) -> Failure:
        """The arguments cannot bind to the operation's signature: permanent, refine may fix them."""
        return cls(ErrorKind.PERMANENT, "arguments checked against the signature", "TypeError", reason)

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": str(self.kind), "classified_by": self.rule, "error_type": self.error_type,
                               "message": self.message, "status_code": self.status_code,
                               "retry_after": self.retry_after}
        if not self.transient and self.traceback:
            out["traceback"] = self.traceback  # for refine, which may fix the arguments
        return out


class wait_uniform(wait_base):  # noqa: N801 - named like tenacity's strategies
    """Uniform in `[low, ceiling(retry_state)]`, drawn from an injected `random.Random`.

    tenacity's `wait_random_exponential(multiplier, min, max)` is exactly
    `uniform(min, wait_exponential(multiplier, min, max)(state))` drawn from the module
    `random`; this strategy takes the window's top from tenacity's own strategy object and
    draws with `rng`, so seeded tests and the runtime context's rng decide the jitter.
    """

    def __init__(self, ceiling: wait_base, *, low: float, rng: random.Random) -> None:
        self.ceiling = ceiling
        self.low = float(low)
        self.rng = rng

    def window(self, retry_state: RetryCallState) -> tuple[float, float]:
        return self.low, max(self.low, float(self.ceiling(retry_state)))

    def __call__(self, retry_state: RetryCallState) -> float:
        low, high = self.window(retry_state)
        return self.rng.uniform(low, high)


class Wait(NamedTuple):
    """The wait before one re-run: seconds slept, the jitter window, and the Retry-After that applied."""

    seconds: float
    low: float
    high: float
    retry_after: float | None  # the server's value after the cap, when there was one

    def evidence(self) -> dict[str, Any]:
        return {"waited_s": round(self.seconds, 6), "wait_window_s": [round(self.low, 6), round(self.high, 6)],
                "retry_after_applied_s": None if self.retry_after is None else round(self.retry_after, 6)}


def _state_at(calls_made: int) -> RetryCallState:
    """A tenacity call state after `calls_made` calls, for asking a wait strategy outside tenacity's loop."""
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = calls_made
    return state


@dataclass(frozen=True, kw_only=True)
class BackoffPolicy:
    """How failed operations are re-run: attempts, waits, Retry-After and the circuit breaker.

    `max_attempts` counts every call, the original failing one included (the original
    system: tenacity `stop_after_attempt(6)` around the call), so backoff re-runs at most
    `max_attempts - 1` times: under an outage of k failures it makes k - 1 re-runs before
    the call that works, k + 1 <= max_attempts calls in all.

    The wait after call n is drawn uniformly from `[min_wait, wait_exponential(n)]`
    (tenacity's `wait_random_exponential(multiplier=1, min=1, max=60)` by default). With the
    default 6 attempts the five windows top out at 1, 2, 4, 8 and 16 s: at most 31 s in all,
    whatever `max_wait` says (60 s is only reached from the 7th call on). A server's
    Retry-After (seconds or HTTP-date) wins when longer, capped at `max_retry_after`.
    Each call has `call_timeout` seconds to return (None: no deadline).
    """

    max_attempts: int = 6
    min_wait: float = 1.0
    max_wait: float = 60.0
    multiplier: float = 1.0
    exponential: bool = True
    max_retry_after: float = 120.0
    breaker_enabled: bool = True
    breaker_threshold: int = 5
    breaker_reset_seconds: float = 30.0
    call_timeout: float | None = 60.0

    @classmethod
    def from_settings(cls, api: ApiSettings) -> BackoffPolicy:
        return cls(max_attempts=api.max_retries, min_wait=api.min_wait_seconds, max_wait=api.max_wait_seconds,
                   exponential=api.exponential_backoff_enabled, max_retry_after=api.max_retry_after_seconds,
                   breaker_enabled=api.circuit_breaker_enabled, breaker_threshold=api.circuit_breaker_threshold,
                   breaker_reset_seconds=api.circuit_breaker_reset_seconds,
                   call_timeout=api.operation_timeout_seconds)

    def ceiling(self) -> wait_base:
        """tenacity's strategy for the top of the jitter window (exponential, or flat at max_wait)."""
        if self.exponential:
            return wait_exponential(multiplier=self.multiplier, min=self.min_wait, max=self.max_wait)
        return wait_fixed(self.max_wait)

    def wait_strategy(self, rng: random.Random) -> wait_uniform:
        """The jittered wait as a tenacity strategy object, drawing from `rng`."""
        return wait_uniform(self.ceiling(), low=self.min_wait, rng=rng)

    def wait_after(self, calls_made: int, retry_after: float | None, rng: random.Random) -> Wait:
        """The wait before the next call, after `calls_made` calls (the original one included)."""
        strategy = self.wait_strategy(rng)
        state = _state_at(calls_made)
        low, high = strategy.window(state)
        drawn = strategy(state)
        applied = None if retry_after is None else min(float(retry_after), self.max_retry_after)
        return Wait(max(drawn, applied or 0.0), low, high, applied)

    def may_call_again(self, calls_made: int) -> bool:
        return calls_made < self.max_attempts

    def breaker(self, store: BreakerStore | None, name: str) -> CircuitBreaker | None:
        """The operation's circuit from `store` (the process-wide one when None), or None when disabled."""
        if not self.breaker_enabled:
            return None
        if store is not None and not isinstance(store, BreakerStore):
            raise TypeError(f"breakers must be a BreakerStore or None, not {type(store).__name__}")
        return (store or default_store()).get(name, threshold=self.breaker_threshold,
                                              reset_seconds=self.breaker_reset_seconds)
