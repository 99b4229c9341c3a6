"""A first-come first-served cap on concurrent runs, shared by threads and asyncio tasks of one process."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Union

__all__ = ["RunLimiter", "limiter_for"]

_Waiter = Union[threading.Event, "tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]"]


class RunLimiter:
    """At most `capacity` holders at once; the others wait in arrival order (sync or async)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def active(self) -> int:
        return self._active

    def acquire(self) -> None:
        with self._lock:
            if self._active < self.capacity and not self._waiters:
                self._active += 1
                return
            event = threading.Event()
            self._waiters.append(event)
        event.wait()  # the releaser handed its slot to us

    async def aacquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._active < self.capacity and not self._waiters:
                self._active += 1
                return
            fut: asyncio.Future[None] = loop.create_future()
            entry = (loop, fut)
            self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                    raise
            if fut.done() and not fut.cancelled():
                self.release()  # the slot reached us just as we were cancelled: pass it on
            raise  # (a cancelled future gets its slot passed on by _hand_over)

    def release(self) -> None:
        while True:
            with self._lock:
                if not self._waiters:
                    self._active -= 1
                    return
                waiter = self._waiters.popleft()
            if isinstance(waiter, threading.Event):
                waiter.set()
                return
            loop, fut = waiter
            try:
                loop.call_soon_threadsafe(_hand_over, fut, self)
                return
            except RuntimeError:  # that loop is closed: try the next waiter
                continue


def _hand_over(fut: asyncio.Future[None], limiter: RunLimiter) -> None:
    if fut.cancelled():
        limiter.release()
    else:
        fut.set_result(None)


_SHARED: dict[int, RunLimiter] = {}
_SHARED_LOCK = threading.Lock()


def limiter_for(capacity: int) -> RunLimiter:
    """The process-wide limiter for this capacity (sandboxes with the same cap share it)."""
    with _SHARED_LOCK:
        lim = _SHARED.get(capacity)
        if lim is None:
            lim = _SHARED[capacity] = RunLimiter(capacity)
        return lim
