"""Circuit breakers per operation name: a small state machine with the clock injected, shared per process.

    closed ──(threshold consecutive transient failures)──► open
    open ──(reset_seconds on the store's clock)──► half-open
    half-open ──(one probe admitted; it succeeds)──► closed
    half-open ──(the probe fails)──► open (the reset timer starts again)

Only transient failures count (429, 5xx, timeouts, dropped connections: the dependency is
down or overloaded). A permanent error (401, 404, bad arguments) proves the dependency
answered, so it counts as a success for the breaker's view of its health.

Why not a library: pybreaker and aiobreaker read `datetime.now()` and purgatory reads
`time.time()` internally, so tests could not drive half-open with an injected clock; none
of them lets the caller ask "would a call be admitted?" without making the call (backoff
must end an attempt at once, without waiting, while the circuit is open); and the state is
needed as plain data for statistics. The machine below is about 100 lines and does exactly
that; its state lives in the process (it is not checkpointed: after a restart every circuit
starts closed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kgot_errors.errors import KgotError

__all__ = ["BreakerState", "BreakerStore", "CircuitBreaker", "CircuitOpenError", "Ticket", "default_store"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(KgotError):
    """A call was refused because the operation's circuit is open (the dependency is known to be down)."""

    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"circuit open for operation {name!r}: no call for another {retry_in:.1f} s")
        self.name = name
        self.retry_in = retry_in


@dataclass(frozen=True)
class Ticket:
    """Permission for one call; `probe` marks the single call admitted while half-open."""

    name: str
    probe: bool


class CircuitBreaker:
    """One operation's circuit. Thread-safe; all times come from `clock` (seconds, monotonic)."""

    def __init__(self, name: str, *, threshold: int = 5, reset_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.name = name
        self.threshold = threshold
        self.reset_seconds = float(reset_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._open = False  # open or half-open; which of the two depends on the clock
        self._opened_at = 0.0
        self._probing = False
        self._consecutive = 0
        self._counts = {"admitted": 0, "rejected": 0, "successes": 0, "failures": 0, "opened": 0}

    def _state(self, now: float) -> BreakerState:
        if not self._open:
            return BreakerState.CLOSED
        return BreakerState.HALF_OPEN if now - self._opened_at >= self.reset_seconds else BreakerState.OPEN

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state(self._clock())

    def _retry_in(self, now: float) -> float:
        state = self._state(now)
        if state is BreakerState.OPEN:
            return self._opened_at + self.reset_seconds - now
        if state is BreakerState.HALF_OPEN and self._probing:
            return self.reset_seconds  # unknown: until the running probe reports
        return 0.0

    def retry_in(self) -> float:
        """Seconds until a call could be admitted: 0 when closed or half-open with no probe running."""
        with self._lock:
            return self._retry_in(self._clock())

    def refusal(self) -> float | None:
        """For a caller deciding whether to wait at all: the seconds the circuit stays shut (counted as
        a refused call), or None when a call would be admitted now."""
        with self._lock:
            shut_for = self._retry_in(self._clock())
            if shut_for <= 0:
                return None
            self._counts["rejected"] += 1
            return shut_for

    def try_acquire(self) -> Ticket | None:
        """A ticket for one call, or None when the circuit refuses it (open, or a probe is running)."""
        with self._lock:
            state = self._state(self._clock())
            if state is BreakerState.CLOSED:
                self._counts["admitted"] += 1
                return Ticket(self.name, probe=False)
            if state is BreakerState.HALF_OPEN and not self._probing:
                self._probing = True
                self._counts["admitted"] += 1
                return Ticket(self.name, probe=True)
            self._counts["rejected"] += 1
            return None

    def settle(self, ticket: Ticket | None, *, failed: bool | None, calls: int = 1) -> None:
        """Report how the call went: `failed=True` a transient failure, False reachable, None abandoned.

        `calls`: how many callers' calls this one carried (a grouped write); a failure counts for each.
        """
        if ticket is None:
            return
        with self._lock:
            now = self._clock()
            if ticket.probe:
                self._probing = False
            if failed is None:
                return  # cancelled: frees the probe slot, proves nothing
            self._counts["failures" if failed else "successes"] += 1
            if not ticket.probe and self._open:
                return  # a late answer to a call admitted before the circuit opened: the probe decides
            if failed:
                self._consecutive += max(1, calls)
                if ticket.probe or self._consecutive >= self.threshold:
                    self._open = True
                    self._opened_at = now
                    self._counts["opened"] += 1
            else:
                self._consecutive = 0
                self._open = False

    def snapshot(self) -> dict[str, Any]:
        """The circuit as plain data, for statistics."""
        with self._lock:
            now = self._clock()
            state = self._state(now)
            retry_in = self._retry_in(now) if state is BreakerState.OPEN else 0.0
            return {
                "state": str(state),
                "consecutive_failures": self._consecutive,
                "threshold": self.threshold,
                "reset_seconds": self.reset_seconds,
                "retry_in_s": round(max(0.0, retry_in), 3),
                "probe_in_flight": self._probing,
                **self._counts,
            }


class BreakerStore:
    """The circuits of one process, by operation name; all share the store's clock."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str, *, threshold: int = 5, reset_seconds: float = 30.0) -> CircuitBreaker:
        """The circuit for `name`, created on first use; its limits follow the latest caller's settings."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(name, threshold=threshold, reset_seconds=reset_seconds, clock=self._clock)
                self._breakers[name] = breaker
            else:
                breaker.threshold, breaker.reset_seconds = threshold, float(reset_seconds)
            return breaker

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every circuit as plain data: `{name: {"state": ..., "consecutive_failures": ..., ...}}`."""
        with self._lock:
            breakers = dict(self._breakers)
        return {name: b.snapshot() for name, b in sorted(breakers.items())}

    def clear(self) -> None:
        """Forget every circuit (they start closed again)."""
        with self._lock:
            self._breakers.clear()


_DEFAULT_STORE: BreakerStore | None = None
_DEFAULT_LOCK = threading.Lock()


def default_store() -> BreakerStore:
    """The process-wide store used when the runtime context brings none (created on first use)."""
    global _DEFAULT_STORE
    with _DEFAULT_LOCK:
        if _DEFAULT_STORE is None:
            _DEFAULT_STORE = BreakerStore()
        return _DEFAULT_STORE
