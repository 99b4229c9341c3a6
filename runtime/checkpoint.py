"""Opening checkpoint stores: in-memory, SQLite file or PostgreSQL URL, with clear errors."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from kgot_errors.errors import CheckpointError
from kgot_errors.runtime.settings import CheckpointSettings

__all__ = ["HeldWrites", "close_shared", "describe_target", "open_checkpointer", "shared_checkpointer"]

logger = logging.getLogger(__name__)

MEMORY = ":memory:"
SQLITE_TIMEOUT_S = 10.0
"""How long to wait for another process's lock on a SQLite store before saying it is locked."""
POSTGRES_POOL_SIZE = 4
"""Connections per open PostgreSQL store: the grouped writes take one at a time, reads the others."""
_SETUP_LOCK = 0x6B676F74  # "kgot": the advisory lock serialising PostgreSQL table set-up
_SETTING = "checkpoint_url (KGOT_CHECKPOINT_URL, --checkpoint)"


def describe_target(target: Any) -> str:
    if target is None or target is False:
        return "none"
    if isinstance(target, BaseCheckpointSaver):
        return type(target).__name__
    return str(target)


def _is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


@contextlib.asynccontextmanager
async def open_checkpointer(target: Any, limits: CheckpointSettings | None = None,
                            ) -> AsyncIterator[BaseCheckpointSaver | None]:
    """Yield a ready checkpointer for `target`.

    `target` is None/False (no checkpoints), "memory" or ":memory:", a SQLite file path,
    a `postgresql://` URL, or a ready BaseCheckpointSaver (yielded as is). Problems opening
    the store raise CheckpointError naming the setting and the target. `limits`
    (settings.checkpoints; the defaults when None) bound PostgreSQL's connect, statements and
    pool waits, and set its breaker. A SQLite file that exists but cannot be written (a
    read-only mount, an immutable file) opens read-only: reads work, writes raise
    CheckpointError.
    """
    limits = limits or CheckpointSettings()
    if target is None or target is False:
        yield None
        return
    if isinstance(target, BaseCheckpointSaver):
        yield target
        return
    text = os.fspath(target)
    if text in ("memory", MEMORY):
        from langgraph.checkpoint.memory import InMemorySaver

        from kgot_errors.runtime.serde import checkpoint_serde

        yield InMemorySaver(serde=checkpoint_serde())
        return
    if _is_postgres(text):
        async with _open_postgres(text, limits) as saver:
            yield saver
        return
    async with _open_sqlite(Path(text)) as saver:
        yield saver


@contextlib.asynccontextmanager
async def _open_sqlite(path: Path) -> AsyncIterator[BaseCheckpointSaver]:
    saver, conn = await _sqlite_saver(path)
    try:
        yield saver
    finally:
        conn.close()


async def _sqlite_saver(path: Path) -> tuple[BaseCheckpointSaver, sqlite3.Connection]:
    """An open SQLite store and its connection (closing that closes the store); a coroutine, not a context
    manager, so a store kept for the process is not tied to the loop that opened it."""
    from kgot_errors.runtime.sqlite_store import SqliteStore

    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a directory; set {_SETTING} to a file path",
                              setting=_SETTING, target=str(path))
    if path.is_file() and not _writable(path):
        return _sqlite_read_only(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create the checkpoint directory {path.parent}: {exc.strerror}; "
                              f"set {_SETTING} or KGOT_DATA_DIR to a writable place",
                              setting=_SETTING, target=str(path)) from None
    try:
        # timeout=0: a locked database answers at once and the store retries without blocking the loop
        conn = sqlite3.connect(str(path), timeout=0, check_same_thread=False)
    except (sqlite3.Error, OSError) as exc:
        raise CheckpointError(f"cannot open SQLite checkpoint store {path}: {exc}", setting=_SETTING,
                              target=str(path)) from None
    try:
        saver = SqliteStore(conn, busy_timeout_s=SQLITE_TIMEOUT_S)
        try:
            await saver.call(_prepare_sqlite, saver)
        except CheckpointError as exc:
            raise CheckpointError(f"cannot use {exc}", setting=_SETTING, target=str(path)) from None
    except BaseException:
        conn.close()
        raise
    return saver, conn


def _writable(path: Path) -> bool:
    """The file and its directory can be written (WAL needs both); a read-only mount or `chattr +i` say no."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _sqlite_read_only(path: Path) -> tuple[BaseCheckpointSaver, sqlite3.Connection]:
    """A store for reading only: `mode=ro`, or `immutable=1` when SQLite cannot even keep its shared-memory
    file beside it (a read-only directory); then nothing else may be writing it, which a read-only mount
    or an immutable file guarantees."""
    from kgot_errors.runtime.sqlite_store import SqliteStore, connect_read_only

    conn, uri = connect_read_only(path)
    try:
        saver = SqliteStore(conn, busy_timeout_s=SQLITE_TIMEOUT_S, read_only=True, reader_uri=uri)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(writes)")}
        saver._has_task_path = "task_path" in columns or not columns
    except BaseException:
        conn.close()
        raise
    return saver, conn


def _prepare_sqlite(saver: Any) -> None:
    """WAL (readers never wait for the writer), tables, and a write lock taken once.

    `synchronous=NORMAL` in WAL mode loses nothing when a process dies; only a power cut can
    take the newest commits. A store we can read but not write fails here, not halfway through
    a recovery.
    """
    saver.conn.execute("PRAGMA journal_mode=WAL")
    saver.conn.execute("PRAGMA synchronous=NORMAL")
    saver.setup()
    saver.conn.execute("BEGIN IMMEDIATE")
    saver.conn.execute("ROLLBACK")


@contextlib.asynccontextmanager
async def _open_postgres(url: str, limits: CheckpointSettings) -> AsyncIterator[BaseCheckpointSaver]:
    import asyncio

    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import AsyncConnection, Error
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        from kgot_errors.runtime.postgres_store import PostgresStore, first_line
    except ImportError:
        raise CheckpointError("PostgreSQL checkpoints need the extra: pip install 'kgot-errors[postgres]'",
                              setting=_SETTING, target=_redact(url)) from None
    where = _redact(url)
    statement_ms = int(limits.statement_timeout_seconds * 1000)
    options = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row,
               "connect_timeout": max(1, round(limits.connect_timeout_seconds)),
               "options": f"-c statement_timeout={statement_ms}"}
    try:  # one plain connection first: it fails fast with the server's own words, and sets the tables up
        async with asyncio.timeout(limits.connect_timeout_seconds + 1):
            conn = await AsyncConnection.connect(url, **options)
    except (Error, TimeoutError) as exc:
        raise CheckpointError(f"cannot reach PostgreSQL at {where}: {first_line(exc)}; check that the server is up "
                              f"and {_SETTING}", setting=_SETTING, target=where) from None
    try:
        await _take_setup_lock(conn, url, statement_s=limits.statement_timeout_seconds)
        try:
            async with asyncio.timeout(max(60.0, 6 * limits.statement_timeout_seconds)):
                await AsyncPostgresSaver(conn).setup()
        except (Error, TimeoutError) as exc:
            raise CheckpointError(f"PostgreSQL at {where} could not set up the checkpoint tables: {first_line(exc)}; "
                                  f"check the server and {_SETTING}", setting=_SETTING, target=where) from None
        finally:
            with contextlib.suppress(Error, TimeoutError):
                async with asyncio.timeout(limits.statement_timeout_seconds):
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
    finally:
        await conn.close()
    pool = AsyncConnectionPool(url, min_size=1, max_size=POSTGRES_POOL_SIZE, kwargs=options, open=False,
                               name="kgot-checkpoints", timeout=limits.pool_timeout_seconds)
    try:
        await pool.open(wait=True, timeout=max(limits.pool_timeout_seconds, limits.connect_timeout_seconds))
    except PoolTimeout:
        await pool.close()
        raise CheckpointError(f"PostgreSQL at {where} accepted one connection but no pool within "
                              f"{max(limits.pool_timeout_seconds, limits.connect_timeout_seconds):g} s; "
                              f"check {_SETTING} and the server's max_connections", setting=_SETTING,
                              target=where) from None
    saver = PostgresStore(pool, limits=limits, where=where)
    try:
        yield saver
    finally:
        with contextlib.suppress(Exception):
            await saver.writer.drain()
        await pool.close()


async def _take_setup_lock(conn: Any, url: str, *, timeout_s: float = 120.0, statement_s: float = 10.0) -> None:
    """Many workers may open a new database at once: one creates the tables, the others wait.

    They wait by polling, outside any transaction: LangGraph's migrations build indexes
    CONCURRENTLY, which waits for every open transaction, so a blocking pg_advisory_lock
    call would deadlock with the worker doing the set-up.
    """
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with asyncio.timeout(statement_s):
                row = await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_SETUP_LOCK,))).fetchone()
        except Exception as exc:  # noqa: BLE001 - psycopg's errors or our deadline: the server did not answer
            from kgot_errors.runtime.postgres_store import first_line

            raise CheckpointError(f"PostgreSQL at {_redact(url)} did not answer: {first_line(exc)}; check that the "
                                  f"server is up and {_SETTING}", setting=_SETTING, target=_redact(url)) from None
        if row["got"]:
            return
        if time.monotonic() > deadline:
            raise CheckpointError(f"PostgreSQL at {_redact(url)}: another process kept the table set-up lock for "
                                  f"{timeout_s:g} s; check {_SETTING}", setting=_SETTING, target=_redact(url))
        await asyncio.sleep(0.05)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# --- the default store, open once per process ---------------------------------------------------------------

SHARED_IDLE_MAX = 4
"""Idle shared SQLite stores kept open per process (beyond that the least recently used is closed)."""


class _Shared:
    """One store kept open for the process: its saver, how to close it, and how many calls are using it."""

    def __init__(self, key: tuple[Any, ...], saver: BaseCheckpointSaver, close: Any,
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.key = key
        self.saver = saver
        self.close = close
        """SQLite: the connection's close; PostgreSQL: the task holding it open (`aclose()` closes it)."""
        self.loop = loop
        """The event loop a PostgreSQL store is bound to; None for SQLite (nothing in it is bound to a loop)."""
        self.users = 0


_shared: dict[tuple[Any, ...], _Shared] = {}
_opening: dict[tuple[Any, ...], asyncio.Future[None]] = {}
_shared_lock = threading.Lock()
opened_count = 0
"""Stores `shared_checkpointer` has opened in this process (tests count them)."""


class _PostgresHolder:
    """A task on the store's loop that opens a PostgreSQL store and holds it open until `aclose()`, or until
    the task is cancelled: asyncio.run cancels every task left on its loop before closing it, so a store
    opened on such a loop is closed (pool and all) as that loop ends."""

    def __init__(self, url: str, limits: CheckpointSettings) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[BaseCheckpointSaver] = loop.create_future()
        self.stop = asyncio.Event()
        self.task = loop.create_task(self._hold(url, limits), name="kgot-checkpoint-store")

    async def _hold(self, url: str, limits: CheckpointSettings) -> None:
        try:
            async with _open_postgres(url, limits) as saver:
                self.opened.set_result(saver)
                await self.stop.wait()
        except BaseException as exc:  # noqa: BLE001 - the opener hears of a failure to open
            if not self.opened.done():
                self.opened.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError | Exception):
                raise

    async def aclose(self) -> None:
        self.stop.set()
        await asyncio.gather(self.task, return_exceptions=True)


def _shared_key(target: str, limits: CheckpointSettings) -> tuple[Any, ...]:
    if _is_postgres(target):  # its pool and grouped writer belong to one event loop
        return "postgres", target, limits.model_dump_json(), id(asyncio.get_running_loop())
    return "sqlite", str(Path(target).expanduser().absolute())


@contextlib.asynccontextmanager
async def shared_checkpointer(target: Any, limits: CheckpointSettings | None = None,
                              ) -> AsyncIterator[BaseCheckpointSaver | None]:
    """Like `open_checkpointer`, but a SQLite file or a PostgreSQL URL stays open for the process.

    The first call opens the store; later calls for the same target reuse it; it is closed at
    interpreter exit (closing a SQLite store checkpoints its WAL into the database file). A
    SQLite store has nothing bound to an event loop and serves every loop and thread of the
    process; a PostgreSQL store (a pool, the grouped writer) is kept per event loop, and one
    opened on a loop that `asyncio.run` ends is closed by that loop's shutdown. Other targets
    (None, "memory", a ready saver) are opened and closed per call, as `open_checkpointer` does.
    A store that fails to open raises CheckpointError and nothing is kept.
    """
    limits = limits or CheckpointSettings()
    if target is None or target is False or isinstance(target, BaseCheckpointSaver) or \
            os.fspath(target) in ("memory", MEMORY):
        async with open_checkpointer(target, limits) as saver:
            yield saver
        return
    text = os.fspath(target)
    entry = await _acquire(_shared_key(text, limits), text, limits)
    try:
        yield entry.saver
    finally:
        with _shared_lock:
            entry.users -= 1
        _evict()


async def _acquire(key: tuple[Any, ...], target: str, limits: CheckpointSettings) -> _Shared:
    global opened_count
    loop = asyncio.get_running_loop()
    while True:
        with _shared_lock:
            entry = _shared.get(key)
            if entry is not None and entry.loop is not None and entry.close.task.done():
                del _shared[key]  # its holder was cancelled (someone cancelled every task on the loop): reopen
                entry = None
            if entry is not None:
                entry.users += 1
                return entry
            waiting = _opening.get(key)
            if waiting is None:
                _opening[key] = done = loop.create_future()
                break
        if waiting.get_loop() is loop:
            await asyncio.shield(waiting)
        else:
            await asyncio.sleep(0.002)  # a call on another thread's loop is opening it (SQLite): look again
    try:
        if key[0] == "postgres":
            holder = _PostgresHolder(target, limits)
            try:
                saver = await asyncio.shield(holder.opened)
            except BaseException:
                holder.stop.set()  # cancelled while it opens: it closes as soon as it is open
                raise
            entry = _Shared(key, saver, holder, loop)
        else:
            saver, conn = await _sqlite_saver(Path(target))
            entry = _Shared(key, saver, conn.close, None)
        entry.users = 1
        with _shared_lock:
            _shared[key] = entry
            opened_count += 1
        return entry
    finally:
        with _shared_lock:
            _opening.pop(key, None)
        done.set_result(None)


def _evict() -> None:
    """Forget PostgreSQL stores whose loop has closed (its shutdown closed them), and close the least recently
    opened idle SQLite stores beyond SHARED_IDLE_MAX (a process that recovers into many files)."""
    with _shared_lock:
        gone = [e for e in _shared.values() if e.loop is not None and e.loop.is_closed()]
        idle = [e for e in _shared.values() if e.loop is None and e.users == 0]
        closing = idle[:max(0, len(idle) - SHARED_IDLE_MAX)]
        for e in gone + closing:
            del _shared[e.key]
    for e in closing:
        _close_sqlite(e)


def _close_sqlite(entry: _Shared) -> None:
    with entry.saver.lock:  # type: ignore[attr-defined]  # not in the middle of a statement of another thread
        entry.close()


def close_shared() -> None:
    """Close every store `shared_checkpointer` keeps open; registered with atexit (safe to call again).

    A PostgreSQL store is closed on its own loop: from another thread while that loop runs (the
    background loop of the sync API), or by running the loop when it is idle.
    """
    with _shared_lock:
        entries = list(_shared.values())
        _shared.clear()
    for entry in entries:
        try:
            if entry.loop is None:
                _close_sqlite(entry)
            elif entry.loop.is_closed():
                continue
            elif entry.loop.is_running():
                asyncio.run_coroutine_threadsafe(entry.close.aclose(), entry.loop).result(timeout=30)
            else:
                entry.loop.run_until_complete(entry.close.aclose())
        except Exception:  # noqa: BLE001 - at exit: say so, close the others
            logger.warning("closing the checkpoint store %s failed", entry.key[1], exc_info=True)


def _forget_in_child() -> None:
    """A forked child neither uses nor closes its parent's connections: it opens its own."""
    global _shared_lock
    _shared.clear()
    _opening.clear()
    _shared_lock = threading.Lock()


atexit.register(close_shared)
os.register_at_fork(after_in_child=_forget_in_child)


# --- one run's view of a store: quiet steps held, not written -------------------------------------------------

_BRANCH = "branch:to:"
_QUIET_ALWAYS = frozenset({"__start__"})


class _Held:
    """What a HeldWrites run holds back: the newest checkpoint not written, and whether one has been written."""

    def __init__(self) -> None:
        self.checkpoint: tuple[Any, Any, Any, dict[str, Any]] | None = None
        self.live = False


class HeldWrites(BaseCheckpointSaver):
    """One graph run's view of `store` that holds back the checkpoints of steps that need no writing.

    A checkpoint whose next steps are all `quiet` nodes (cheap, and the same answer when re-run)
    is kept in memory and its tasks' writes dropped; the first checkpoint that leads to another
    node, or to none (the run has ended), is written, carrying every channel changed since the
    last one written; from then on everything is written as it comes. So a run that the quiet
    nodes finish costs one write, and a crash among them loses only work that re-running redoes.
    `flush()` writes what is held (a run that fails or is cancelled keeps its finished steps).
    Reads go to the store.
    """

    def __init__(self, store: BaseCheckpointSaver, quiet: frozenset[str], state: _Held | None = None) -> None:
        super().__init__(serde=store.serde)
        self.store = store
        self.quiet = quiet | _QUIET_ALWAYS
        self.state = state or _Held()
        """Shared with copies: LangGraph runs a copy of the saver (`with_allowlist`), the caller flushes this one."""

    def with_allowlist(self, extra_allowlist: Any) -> HeldWrites:
        return HeldWrites(self.store.with_allowlist(extra_allowlist), self.quiet, self.state)

    def get_next_version(self, current: Any, channel: Any = None) -> Any:
        return self.store.get_next_version(current, channel)

    async def aget_tuple(self, config: Any) -> Any:
        return await self.store.aget_tuple(config)

    def alist(self, config: Any, **kwargs: Any) -> Any:
        return self.store.alist(config, **kwargs)

    def _holds(self, checkpoint: Any) -> bool:
        values = checkpoint.get("channel_values") or {}
        nxt = {k[len(_BRANCH):] for k in values if k.startswith(_BRANCH)}
        if "__start__" in values:
            nxt.add("__start__")
        return bool(nxt) and nxt <= self.quiet and "__pregel_tasks" not in values

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        state = self.state
        if state.checkpoint is not None:  # the channels changed in the steps held back are written with this one
            new_versions = {**state.checkpoint[3], **new_versions}
        if not state.live and self._holds(checkpoint):
            state.checkpoint = (config, checkpoint, metadata, dict(new_versions))
            conf = config["configurable"]
            return {"configurable": {"thread_id": conf["thread_id"], "checkpoint_ns": conf.get("checkpoint_ns", ""),
                                     "checkpoint_id": checkpoint["id"]}}
        state.checkpoint, state.live = None, True
        current = checkpoint.get("channel_versions") or {}
        versions = {k: current[k] for k in new_versions if k in current}
        return await self.store.aput(config, checkpoint, metadata, versions)

    async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        if self.state.live:  # else: a held step's task; the next checkpoint carries what it wrote
            await self.store.aput_writes(config, writes, task_id, task_path)

    async def flush(self) -> None:
        """Write the checkpoint held back, if any."""
        state = self.state
        if state.checkpoint is not None and not state.live:
            config, checkpoint, metadata, versions = state.checkpoint
            state.checkpoint, state.live = None, True
            current = checkpoint.get("channel_versions") or {}
            await self.store.aput(config, checkpoint, metadata, {k: current[k] for k in versions if k in current})
