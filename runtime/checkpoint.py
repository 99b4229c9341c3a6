"""Opening checkpoint stores: in-memory, SQLite file or PostgreSQL URL, with clear errors."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from kgot_errors.errors import CheckpointError
from kgot_errors.runtime.settings import CheckpointSettings

__all__ = ["describe_target", "open_checkpointer"]

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
    from kgot_errors.runtime.sqlite_store import SqliteStore

    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a directory; set {_SETTING} to a file path",
                              setting=_SETTING, target=str(path))
    if path.is_file() and not _writable(path):
        async with _open_sqlite_read_only(path) as saver:
            yield saver
        return
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
        yield saver
    finally:
        conn.close()


def _writable(path: Path) -> bool:
    """The file and its directory can be written (WAL needs both); a read-only mount or `chattr +i` say no."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


@contextlib.asynccontextmanager
async def _open_sqlite_read_only(path: Path) -> AsyncIterator[BaseCheckpointSaver]:
    """A store for reading only: `mode=ro`, or `immutable=1` when SQLite cannot even keep its shared-memory
    file beside it (a read-only directory); then nothing else may be writing it, which a read-only mount
    or an immutable file guarantees."""
    from kgot_errors.runtime.sqlite_store import SqliteStore, connect_read_only

    conn, uri = connect_read_only(path)
    try:
        saver = SqliteStore(conn, busy_timeout_s=SQLITE_TIMEOUT_S, read_only=True, reader_uri=uri)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(writes)")}
        saver._has_task_path = "task_path" in columns or not columns
        yield saver
    finally:
        conn.close()


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
