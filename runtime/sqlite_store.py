"""SQLite checkpoints for recovery traffic: many short threads, a durable write at every step.

A deterministic recovery makes ten store calls (one read, five checkpoints, four sets of task
writes). `AsyncSqliteSaver` sends each through aiosqlite's worker thread, three to six thread
hops per call at ~0.2 ms of CPU each, while the write itself (WAL, `synchronous=NORMAL`) takes
tens of microseconds. `SqliteStore` keeps LangGraph's tables and serialisation and runs its sync
saver inline on the event loop instead; `bench/bench_scale.py` measures the difference.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
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
    """A listing hands the event loop back at least every PAGE checkpoints."""

    def __init__(self, conn: sqlite3.Connection, *, busy_timeout_s: float = 10.0) -> None:
        super().__init__(conn)
        self.busy_timeout_s = busy_timeout_s
        file = conn.execute("PRAGMA database_list").fetchone()[2]
        if not file:
            raise ValueError("SqliteStore needs a database file (for :memory:, use LangGraph's InMemorySaver)")
        self._uri = Path(file).as_uri() + "?mode=ro"
        """Where listings read, through a read-only connection of their own."""

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
                with self.lock:  # a statement refused the lock: start its transaction again
                    self.conn.rollback()
                return fn(*args, **kwargs)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def aget_tuple(self, config: Any) -> Any:
        return await self.call(self.get_tuple, config)

    async def alist(self, config: Any, *, filter: dict[str, Any] | None = None, before: Any = None,
                    limit: int | None = None) -> AsyncIterator[Any]:
        # A listing may be long and is iterated across awaits. It reads through a connection of its own
        # (WAL: readers and the writer never wait for each other), so it holds no lock a write on this
        # loop needs, and hands the loop back every PAGE checkpoints.
        reader = SqliteSaver(sqlite3.connect(self._uri, uri=True, check_same_thread=False))
        reader.is_setup, reader._has_task_path = True, self._has_task_path  # the tables are there: nothing to create
        listing = reader.list(config, filter=filter, before=before, limit=limit)
        try:
            for n, item in enumerate(listing, 1):
                yield item
                if n % self.PAGE == 0:
                    await asyncio.sleep(0)
        finally:
            listing.close()
            reader.conn.close()

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return await self.call(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await self.call(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.call(self.delete_thread, thread_id)

    async def aget_delta_channel_history(self, *, config: Any, channels: Sequence[str]) -> Any:
        return await self.call(self.get_delta_channel_history, config=config, channels=channels)
