"""SQLite checkpoints for recovery traffic: many short threads, a durable write at every step.

Every checkpointed step is a store call or two. `AsyncSqliteSaver` sends each through aiosqlite's
worker thread, three to six thread hops per call at ~0.2 ms of CPU each, while the write itself (WAL,
`synchronous=NORMAL`) takes tens of microseconds. `SqliteStore` keeps LangGraph's tables and
serialisation and runs its sync saver inline on the event loop instead; `bench/bench_scale.py`
measures the difference. It writes checkpoints in their stored form (runtime/serde.py
`compact_values`: a finished result shares its attempts and value instead of repeating them) with
short channel versions, and reads them back as the graph wrote them.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from langgraph.checkpoint.sqlite import SqliteSaver

from kgot_errors.errors import CheckpointError

__all__ = ["SETTING", "SqliteStore", "connect_read_only", "is_busy", "sqlite_failure"]

SETTING = "checkpoint_url (KGOT_CHECKPOINT_URL, --checkpoint)"

T = TypeVar("T")


def is_busy(exc: BaseException) -> bool:
    """SQLite's answer when another connection holds the write lock."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return None


def sqlite_failure(path: Path | str, exc: BaseException, *, waited_s: float | None = None) -> CheckpointError:
    """A SQLite error as a CheckpointError naming the file, what is wrong with it and what to do."""
    path = Path(path)
    text = str(exc)
    free = _free_bytes(path)
    if "readonly" in text or "read-only" in text:
        why = ("it is read-only (a read-only mount or an immutable file): history and stats can still read it; "
               f"to recover, set {SETTING} to a writable file")
    elif is_busy(exc):
        why = (f"it is locked by another process (waited {waited_s:g} s); retry later or set {SETTING} to "
               "another file") if waited_s is not None else f"it is locked by another process; retry later"
    elif "full" in text or (("disk I/O" in text or "I/O error" in text) and free is not None and free < 1 << 20):
        why = (f"the disk is full ({free if free is not None else 'unknown'} bytes free on its file system); "
               f"free some space or set {SETTING} to a file on another disk")
    elif "malformed" in text or "not a database" in text or "corrupt" in text:
        why = (f"the file is damaged or not a SQLite database ({text}); move it aside (or restore a backup) "
               f"and start a new store, or set {SETTING} to another file")
    elif "unable to open" in text:
        why = f"it cannot be opened ({text}); check the file and its directory, or set {SETTING} to another file"
    else:
        why = f"{type(exc).__name__}: {text}; set {SETTING} to another file if it persists"
    return CheckpointError(f"SQLite checkpoint store {path}: {why}", setting=SETTING, target=str(path))


def connect_read_only(path: Path | str, *, timeout: float = 0.0) -> tuple[sqlite3.Connection, str]:
    """A read-only connection to an existing store, and the URI it used, for readers that must not write.

    `mode=ro` first; when SQLite cannot even keep its shared-memory file beside the database (a
    read-only mount or directory), `immutable=1`: nothing else can be writing it there. Raises
    CheckpointError when neither opens it.
    """
    base = Path(path).resolve().as_uri()
    last: sqlite3.Error | None = None
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = None
        try:
            conn = sqlite3.connect(base + query, uri=True, timeout=timeout, check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn, base + query
        except sqlite3.Error as exc:
            last = exc
            if conn is not None:
                conn.close()
    raise sqlite_failure(path, last or sqlite3.OperationalError("unable to open database file"))


def _expanded(item: Any) -> Any:
    """A checkpoint tuple read back with its channel values as the graph wrote them."""
    from kgot_errors.runtime.serde import expand_values

    if item is None:
        return None
    values = item.checkpoint.get("channel_values") or {}
    full = expand_values(values)
    return item if full is values else item._replace(checkpoint={**item.checkpoint, "channel_values": full})


class SqliteStore(SqliteSaver):
    """LangGraph's SqliteSaver with its async API run inline on the event loop.

    The connection has no busy timeout: when another process holds the write lock, a call
    fails at once and is retried here with short async sleeps, so the loop (and every other
    recovery on it) keeps running; after `busy_timeout_s` the last "database is locked" error
    is raised. Built for the async API: a sync call fails at once on a locked database.
    A WAL checkpoint (every 1,000 pages) fsyncs on the loop: a few milliseconds now and then.
    Every SQLite failure (disk full, a read-only or damaged file, a lock held too long) leaves
    it as a CheckpointError naming the file and what to do. `read_only`: opened for reading
    only (the file or its mount cannot be written); every write fails with that error.
    """

    PAGE = 256
    """A listing hands the event loop back at least every PAGE checkpoints."""

    def __init__(self, conn: sqlite3.Connection, *, busy_timeout_s: float = 10.0, read_only: bool = False,
                 reader_uri: str | None = None) -> None:
        from kgot_errors.runtime.serde import checkpoint_serde

        super().__init__(conn, serde=checkpoint_serde())
        self.busy_timeout_s = busy_timeout_s
        self.read_only = read_only
        file = conn.execute("PRAGMA database_list").fetchone()[2]
        if not file:
            raise ValueError("SqliteStore needs a database file (for :memory:, use LangGraph's InMemorySaver)")
        self.path = Path(file)
        if read_only:
            self.is_setup = True  # nothing may be created: the tables are there, or reads find nothing
        self._uri = reader_uri or self.path.as_uri() + "?mode=ro"
        """Where listings read, through a read-only connection of their own."""

    def get_next_version(self, current: Any, channel: Any = None) -> str:
        from kgot_errors.runtime.serde import short_version

        return short_version(current)

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        """LangGraph's put, of the checkpoint's stored form (runtime/serde.py `compact_values`)."""
        from kgot_errors.runtime.serde import compact_values

        values = checkpoint.get("channel_values") or {}
        stored = compact_values(values, checkpoint.get("channel_versions") or {})
        if stored is not values:
            checkpoint = {**checkpoint, "channel_values": stored}
        return super().put(config, checkpoint, metadata, new_versions)

    def get_tuple(self, config: Any) -> Any:
        return _expanded(super().get_tuple(config))

    def list(self, config: Any, *, filter: dict[str, Any] | None = None, before: Any = None,
             limit: int | None = None) -> Any:
        for item in super().list(config, filter=filter, before=before, limit=limit):
            yield _expanded(item)

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on the loop, retried while the database is locked by another writer.

        Raises CheckpointError for any SQLite failure (a lock still held after `busy_timeout_s` included).
        """
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            if not is_busy(exc):
                raise sqlite_failure(self.path, exc) from exc
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

        try:
            async for attempt in AsyncRetrying(retry=retry_if_exception(is_busy),
                                               stop=stop_after_delay(self.busy_timeout_s),
                                               wait=wait_random_exponential(multiplier=0.002, max=0.1), reraise=True):
                with attempt:
                    with self.lock:  # a statement refused the lock: start its transaction again
                        self.conn.rollback()
                    return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise sqlite_failure(self.path, exc, waited_s=self.busy_timeout_s) from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def aget_tuple(self, config: Any) -> Any:
        return await self.call(self.get_tuple, config)

    async def alist(self, config: Any, *, filter: dict[str, Any] | None = None, before: Any = None,
                    limit: int | None = None) -> AsyncIterator[Any]:
        # A listing may be long and is iterated across awaits. It reads through a connection of its own
        # (WAL: readers and the writer never wait for each other), so it holds no lock a write on this
        # loop needs, and hands the loop back every PAGE checkpoints.
        try:
            reader = SqliteSaver(sqlite3.connect(self._uri, uri=True, check_same_thread=False), serde=self.serde)
        except sqlite3.Error as exc:
            raise sqlite_failure(self.path, exc) from exc
        reader.is_setup, reader._has_task_path = True, self._has_task_path  # the tables are there: nothing to create
        listing = reader.list(config, filter=filter, before=before, limit=limit)
        try:
            n = 0
            while True:
                try:
                    item = next(listing)
                except StopIteration:
                    break
                except sqlite3.Error as exc:
                    raise sqlite_failure(self.path, exc) from exc
                yield _expanded(item)
                n += 1
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
