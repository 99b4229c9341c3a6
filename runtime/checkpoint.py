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
async def open_checkpointer(target: Any) -> AsyncIterator[BaseCheckpointSaver | None]:
    """Yield a ready checkpointer for `target`.

    `target` is None/False (no checkpoints), "memory" or ":memory:", a SQLite file path,
    a `postgresql://` URL, or a ready BaseCheckpointSaver (yielded as is). Problems opening
    the store raise CheckpointError naming the setting and the target.
    """
    if target is None or target is False:
        yield None
        return
    if isinstance(target, BaseCheckpointSaver):
        yield target
        return
    text = os.fspath(target)
    if text in ("memory", MEMORY):
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
        return
    if _is_postgres(text):
        async with _open_postgres(text) as saver:
            yield saver
        return
    async with _open_sqlite(Path(text)) as saver:
        yield saver


@contextlib.asynccontextmanager
async def _open_sqlite(path: Path) -> AsyncIterator[BaseCheckpointSaver]:
    from kgot_errors.runtime.sqlite_store import SqliteStore

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create the checkpoint directory {path.parent}: {exc.strerror}; "
                              f"set {_SETTING} or KGOT_DATA_DIR to a writable place",
                              setting=_SETTING, target=str(path)) from None
    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a directory; set {_SETTING} to a file path",
                              setting=_SETTING, target=str(path))
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
        except sqlite3.Error as exc:
            raise CheckpointError(_sqlite_message(path, exc), setting=_SETTING, target=str(path)) from None
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


def _sqlite_message(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        why = "it is read-only"
    elif "locked" in text or "busy" in text:
        why = f"it is locked by another process (waited {SQLITE_TIMEOUT_S:g} s)"
    elif "not a database" in text:
        why = "the file is not a SQLite database"
    else:
        why = text
    return f"cannot use SQLite checkpoint store {path}: {why}; set {_SETTING} to another file"


@contextlib.asynccontextmanager
async def _open_postgres(url: str) -> AsyncIterator[BaseCheckpointSaver]:
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import AsyncConnection, OperationalError
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        from kgot_errors.runtime.postgres_store import PostgresStore
    except ImportError:
        raise CheckpointError("PostgreSQL checkpoints need the extra: pip install 'kgot-errors[postgres]'",
                              setting=_SETTING, target=_redact(url)) from None
    options = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    try:  # one plain connection first: it fails fast with the server's own words, and sets the tables up
        conn = await AsyncConnection.connect(url, connect_timeout=10, **options)
    except OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot reach PostgreSQL at {_redact(url)}: {first}; check {_SETTING}", setting=_SETTING,
                              target=_redact(url)) from None
    try:
        await _take_setup_lock(conn, url)
        try:
            await AsyncPostgresSaver(conn).setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
    finally:
        await conn.close()
    pool = AsyncConnectionPool(url, min_size=1, max_size=POSTGRES_POOL_SIZE, kwargs=options, open=False,
                               name="kgot-checkpoints")
    try:
        await pool.open(wait=True, timeout=30)
    except PoolTimeout:
        await pool.close()
        raise CheckpointError(f"PostgreSQL at {_redact(url)} accepted one connection but no pool within 30 s; "
                              f"check {_SETTING} and the server's max_connections", setting=_SETTING,
                              target=_redact(url)) from None
    saver = PostgresStore(pool)
    try:
        yield saver
    finally:
        await saver.writer.drain()
        await pool.close()


async def _take_setup_lock(conn: Any, url: str, *, timeout_s: float = 120.0) -> None:
    """Many workers may open a new database at once: one creates the tables, the others wait.

    They wait by polling, outside any transaction: LangGraph's migrations build indexes
    CONCURRENTLY, which waits for every open transaction, so a blocking pg_advisory_lock
    call would deadlock with the worker doing the set-up.
    """
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_SETUP_LOCK,))).fetchone()
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
