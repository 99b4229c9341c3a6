"""The original system's APIErrorManager: retry one call in-process, on the backoff node's rules.

    api = APIErrorManager()                      # 6 calls, waits from [1, 2^(n-1)] s, breaker on
    data = await api.execute_with_retry(fetch, "fetch", url)

    @api.with_retry("fetch")                     # the decorator form
    async def fetch(url): ...

tenacity's `AsyncRetrying` runs the loop; every decision comes from the same
`BackoffPolicy`, classification and circuit breakers the backoff node uses (runtime/
operations.py): the wait after call n is `policy.wait_after(n, retry_after, rng)`, only
failures nodes/classify.py calls transient are retried, and a call is never made while the
operation's circuit is open. Differences from the original, on purpose: the constructor's
limits are honoured (the original's decorator hard-coded 6 / 1-60 s), non-transient errors
(401, bad arguments, programmer errors) are raised at once instead of retried, and when the
calls run out the last error itself is raised (not tenacity's RetryError).
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base

from kgot_errors.runtime.breaker import BreakerStore, CircuitBreaker, CircuitOpenError, default_store
from kgot_errors.runtime.operations import BackoffPolicy, Failure, run_operation
from kgot_errors.runtime.settings import ApiSettings

__all__ = ["APIErrorManager", "with_api_retry"]

P = ParamSpec("P")


class _Run:
    """What one execute_with_retry call has seen: the latest failure, paired with the exception raised."""

    def __init__(self, name: str, breaker: CircuitBreaker | None) -> None:
        self.name = name
        self.breaker = breaker
        self.exc: BaseException | None = None
        self.failure: Failure | None = None

    def retryable(self, exc: BaseException) -> bool:
        return exc is self.exc and self.failure is not None and self.failure.transient

    def circuit_open(self) -> bool:
        """The next call would be refused (counted as refused by the breaker)."""
        return self.breaker is not None and self.breaker.refusal() is not None


class stop_if_circuit_open(stop_base):  # noqa: N801 - named like tenacity's strategies
    """Stop retrying while the operation's circuit is open: waiting cannot help a dependency known to be down."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.run.circuit_open()


class APIErrorManager:
    """Re-runs a failing call with jittered exponential waits, Retry-After and a circuit breaker per name.

    `max_retries` counts every call, the first included (default 6, or the settings');
    `min_wait`/`max_wait` bound the jitter window (default 1 and 60 s). `settings` supplies
    the other limits (Retry-After cap, breaker threshold and reset); `breakers` is shared
    with the backoff node when both use the process-wide store (the default). `sleep` and
    `rng` are injectable for tests.
    """

    def __init__(
        self,
        max_retries: int | None = None,
        min_wait: float | None = None,
        max_wait: float | None = None,
        *,
        settings: ApiSettings | None = None,
        breakers: BreakerStore | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        base = (settings or ApiSettings()).model_dump()
        given = {"max_retries": max_retries, "min_wait_seconds": min_wait, "max_wait_seconds": max_wait}
        api = ApiSettings.model_validate({**base, **{k: v for k, v in given.items() if v is not None}})
        self.settings = api
        self.policy = BackoffPolicy.from_settings(api)
        self.max_retries, self.min_wait, self.max_wait = api.max_retries, api.min_wait_seconds, api.max_wait_seconds
        self.breakers = breakers
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.error_stats: Counter[str] = Counter()
        self._counts = {"operations": 0, "calls": 0, "retries": 0, "successes": 0, "gave_up": 0,
                        "circuit_rejections": 0}
        self._waited = 0.0

    async def execute_with_retry(self, operation: Callable[..., Any], operation_name: str, *args: Any,
                                 **kwargs: Any) -> Any:
        """Call `operation(*args, **kwargs)` until it returns, a failure is not transient, or calls run out.

        Raises the operation's own exception when it is not transient or the calls are spent,
        and CircuitOpenError (its `__cause__` the last failure, if any) when the operation's
        circuit is open.
        """
        self._counts["operations"] += 1
        run = _Run(operation_name, self.policy.breaker(self.breakers, operation_name))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.max_attempts) | stop_if_circuit_open(run),
            wait=lambda rs: self._wait(run, rs),
            retry=retry_if_exception(run.retryable),
            before_sleep=self._before_sleep,
            retry_error_callback=lambda rs: self._give_up(run, rs),
            sleep=self._sleep,
        )
        async for try_ in retrying:
            with try_:
                return await self._call_once(run, operation, args, kwargs)
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    async def _call_once(self, run: _Run, operation: Callable[..., Any], args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Any:
        breaker = run.breaker
        ticket = breaker.try_acquire() if breaker is not None else None
        if breaker is not None and ticket is None:
            self._counts["circuit_rejections"] += 1
            raise CircuitOpenError(run.name, breaker.retry_in()) from run.exc
        self._counts["calls"] += 1
        failed: bool | None = None
        try:
            value = await run_operation(operation, args, kwargs, timeout=self.policy.call_timeout, name=run.name)
            failed = False
        except Exception as exc:
            run.exc, run.failure = exc, Failure.of(exc)
            failed = run.failure.transient
            self.error_stats[type(exc).__name__] += 1
            raise
        finally:
            if breaker is not None:
                breaker.settle(ticket, failed=failed)
        self._counts["successes"] += 1
        return value

    def _wait(self, run: _Run, rs: RetryCallState) -> float:
        retry_after = run.failure.retry_after if run.failure is not None else None
        return self.policy.wait_after(rs.attempt_number, retry_after, self._rng).seconds

    def _before_sleep(self, rs: RetryCallState) -> None:
        self._counts["retries"] += 1
        self._waited += rs.upcoming_sleep

    def _give_up(self, run: _Run, rs: RetryCallState) -> Any:
        self._counts["gave_up"] += 1
        exc = rs.outcome.exception() if rs.outcome is not None else None
        if rs.attempt_number < self.policy.max_attempts and run.breaker is not None:
            self._counts["circuit_rejections"] += 1
            raise CircuitOpenError(run.name, run.breaker.retry_in()) from exc
        assert exc is not None
        raise exc

    def with_retry(self, operation_name: str | None = None,
                   ) -> Callable[[Callable[P, Any]], Callable[P, Awaitable[Any]]]:
        """Decorator form: the decorated callable (sync or async) becomes a coroutine function that retries."""

        def decorate(fn: Callable[P, Any]) -> Callable[P, Awaitable[Any]]:
            name = operation_name or getattr(fn, "__qualname__", repr(fn))

            @functools.wraps(fn)
            async def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.execute_with_retry(fn, name, *args, **kwargs)

            return guarded

        return decorate

    def get_error_statistics(self) -> dict[str, Any]:
        """The original keys (total_errors, error_breakdown, most_common_error, timestamp) and the counts."""
        common = self.error_stats.most_common(1)
        return {
            "total_errors": sum(self.error_stats.values()),
            "error_breakdown": dict(self.error_stats),
            "most_common_error": list(common[0]) if common else None,
            "timestamp": datetime.now(UTC).isoformat(),
            **self._counts,
            "waited_s": round(self._waited, 6),
            "policy": {"max_retries": self.max_retries, "min_wait": self.min_wait, "max_wait": self.max_wait},
            "circuit_breakers": (self.breakers or default_store()).snapshot(),
        }

    def get_api_error_statistics(self) -> dict[str, Any]:
        """`get_error_statistics()` plus `total_api_errors`, the key the original dashboard reads."""
        stats = self.get_error_statistics()
        return {"total_api_errors": stats["total_errors"], **stats}


def with_api_retry(operation_name: str | None = None, *, manager: APIErrorManager | None = None,
                   ) -> Callable[[Callable[P, Any]], Callable[P, Awaitable[Any]]]:
    """`@with_api_retry("name")`: guard a callable with `manager` (a default APIErrorManager when None)."""
    return (manager or APIErrorManager()).with_retry(operation_name)
