"""SQLite checkpoints for recovery traffic: many short threads, a durable write at every step.

A deterministic recovery makes ten store calls (one read, five checkpoints, four sets of task
writes). `AsyncSqliteSaver` sends each through aiosqlite's worker thread, three to six thread
hops per call at ~0.2 ms of CPU each, while the write itself (WAL, `synchronous=NORMAL`) takes
tens of microseconds. `SqliteStore` keeps LangGraph's tables and serialisation and runs its sync
saver inline on the event loop instead; `bench/bench_scale.py` measures the difference.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from langgraph.checkpoint.sqlite import SqliteSaver

__all__ = ["SqliteStore", "is_busy"]

T = TypeVar("T")


def is_busy(exc: BaseException) -> bool:
    """SQLite's answer when another connection holds the write lock."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class SqliteStore(SqliteSaver):
    """LangGraph's SqliteSaver with its async API run inline on the event loop.

    The connection has no busy timeout: when another process holds the write lock, a call
    fails at once and is retried here with short async sleeps, so the loop (and every other
    recovery on it) keeps running; after `busy_timeout_s` the last "database is locked" error
    is raised. Built for the async API: a sync call fails at once on a locked database.
    A WAL checkpoint (every 1,000 pages) fsyncs on the loop: a few milliseconds now and then.
    """

    PAGE = 256
    """Checkpoints read per listing query: the listing holds the saver's lock only while it runs."""

    def __init__(self, conn: sqlite3.Connection, *, busy_timeout_s: float = 10.0) -> None:
        super().__init__(conn)
        self.busy_timeout_s = busy_timeout_s

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on the loop, retried while the database is locked by another writer."""
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

        async for attempt in AsyncRetrying(retry=retry_if_exception(is_busy), stop=stop_after_delay(self.busy_timeout_s),
                                           wait=wait_random_exponential(multiplier=0.002, max=0.1), reraise=True):
            with attempt:
                self.conn.rollback()  # a statement refused the lock: start its transaction again
                return fn(*args, **kwargs)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def aget_tuple(self, config: Any) -> Any:
        return await self.call(self.get_tuple, config)

    async def alist(self, config: Any, *, filter: dict[str, Any] | None = None, before: Any = None,
                    limit: int | None = None) -> AsyncIterator[Any]:
        # SqliteSaver.list holds a thread lock for as long as it is iterated: read it a page at a
        # time, never across an await (a write on the same loop would wait on that lock forever).
        left = limit
        while left is None or left > 0:
            size = self.PAGE if left is None else min(self.PAGE, left)
            page = await self.call(lambda: list(self.list(config, filter=filter, before=before, limit=size)))
            for item in page:
                yield item
            if len(page) < size:
                return
            before = page[-1].config
            left = None if left is None else left - len(page)

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return await self.call(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await self.call(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.call(self.delete_thread, thread_id)

    async def aget_delta_channel_history(self, *, config: Any, channels: Sequence[str]) -> Any:
        return await self.call(self.get_delta_channel_history, config=config, channels=channels)
