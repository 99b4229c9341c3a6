"""The threads of a checkpoint store for operators: list them with filters, time a thread's steps, prune and vacuum."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kgot_errors.errors import CheckpointError, StoreNotFound

__all__ = [
    "PruneReport",
    "STATUSES",
    "ThreadInfo",
    "Timeline",
    "alist_threads",
    "aprune",
    "atimeline",
    "format_time",
    "list_threads",
    "prune",
    "require_store",
    "timeline",
]

STATUSES = ("recovered", "degraded", "not_recovered", "escalated", "invalid", "error", "paused", "unfinished")
"""A thread's status: its result's outcome once finished, else `paused` (waiting for a person) or `unfinished`."""
_MEMORY = ("memory", ":memory:")
_UUID_EPOCH = 0x01B21DD213814000
"""100-ns intervals from the UUID epoch (1582-10-15) to the Unix epoch."""
_BRANCH = "branch:to:"
_CHANNELS = ("result", "attempts", "kind")


def _is_postgres(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def require_store(target: Any) -> Any:
    """`target` when there is a store to read there; StoreNotFound for a missing SQLite file, or the memory store.

    Opening a SQLite path creates the file: a command that only reads must say that nothing is
    there instead of reporting an empty store it just made (a typo in the path looks like "0 incidents").
    """
    if not isinstance(target, (str, os.PathLike)):
        return target
    text = os.fspath(target)
    if text in _MEMORY:
        raise StoreNotFound(f"{text!r} (the memory store lives only inside one command: use a SQLite file or a "
                            "postgresql:// URL to read threads later)")
    if not _is_postgres(text) and not Path(text).is_file():
        raise StoreNotFound(text)
    return target


def checkpoint_time(checkpoint_id: str) -> float | None:
    """Unix time at which LangGraph made a checkpoint id (a UUID v6, time first)."""
    try:
        u = uuid.UUID(checkpoint_id)
    except (ValueError, TypeError):
        return None
    high = u.int >> 64
    ticks = ((high >> 16) << 12) | (high & 0x0FFF)
    return (ticks - _UUID_EPOCH) / 1e7 if ticks > _UUID_EPOCH else None


def _iso(ts: Any) -> float | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(str(ts)).timestamp()
    except ValueError:
        return None


def format_time(when: float | None, *, clock_only: bool = False) -> str:
    """UTC, to the second (or the millisecond, for a step's clock time); `-` when unknown."""
    if when is None:
        return "-" if not clock_only else "            "
    moment = datetime.fromtimestamp(when, tz=timezone.utc)
    if clock_only:
        return moment.strftime("%H:%M:%S.%f")[:12]
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclasses.dataclass(frozen=True)
class ThreadInfo:
    """One recovery thread as an operator sees it: status, kind, layers tried, when it started and last moved."""

    thread_id: str
    status: str
    kind: str
    recovered_by: str | None
    layers: tuple[str, ...]
    attempts: int
    summary: str
    started_at: float | None
    updated_at: float | None
    next: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status not in ("paused", "unfinished")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["layers"], data["next"] = list(self.layers), list(self.next)
        for key in ("started_at", "updated_at"):
            data[key] = None if data[key] is None else datetime.fromtimestamp(data[key], tz=timezone.utc).isoformat()
        return data


def _info(thread_id: str, values: Mapping[str, Any], waiting: Sequence[str], started: float | None,
          updated: float | None) -> ThreadInfo:
    if started is not None and updated is not None and started > updated:
        # one checkpoint (the deterministic layers are written once): its id's clock ticks just after its ts
        started = updated
    result = values.get("result") if isinstance(values.get("result"), Mapping) else None
    attempts = list((result or {}).get("attempts") or values.get("attempts") or ())
    layers = tuple(dict.fromkeys(str(a.get("layer")) for a in attempts if isinstance(a, Mapping)))
    if result is not None and not waiting:
        status = str(result.get("outcome") or ("recovered" if result.get("recovered") else "not_recovered"))
        kind, summary = str(result.get("kind") or values.get("kind") or "unknown"), str(result.get("summary") or "")
        by = result.get("recovered_by")
    else:
        status = "paused" if "human" in waiting else "unfinished"
        kind, by = str(values.get("kind") or "unknown"), None
        summary = ("waiting for a person's fix" if status == "paused"
                   else f"unfinished: next {', '.join(waiting) or '?'}")
    return ThreadInfo(thread_id=thread_id, status=status, kind=kind, recovered_by=str(by) if by else None,
                      layers=layers, attempts=len(attempts), summary=summary, started_at=started, updated_at=updated,
                      next=tuple(waiting))


def _waiting(channel_values: Mapping[str, Any]) -> list[str]:
    return [k[len(_BRANCH):] for k in channel_values if k.startswith(_BRANCH)]


# --- reading: one query over the savers' own tables (as statistics does) -------------------------------------

_SQLITE_THREADS = """
SELECT c.thread_id, c.type, c.checkpoint, l.first
FROM (SELECT thread_id, min(checkpoint_id) AS first, max(checkpoint_id) AS latest
      FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id) l
JOIN checkpoints c ON c.thread_id = l.thread_id AND c.checkpoint_ns = '' AND c.checkpoint_id = l.latest
"""

_POSTGRES_THREADS = """
WITH latest AS (
    SELECT DISTINCT ON (thread_id) thread_id, checkpoint FROM checkpoints
    WHERE checkpoint_ns = '' ORDER BY thread_id, checkpoint_id DESC
), firsts AS (
    SELECT thread_id, min(checkpoint_id) AS first FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id
)
SELECT l.thread_id, f.first, l.checkpoint ->> 'ts' AS ts, l.checkpoint -> 'channel_values' AS inline, (
    SELECT array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
    FROM jsonb_each_text(l.checkpoint -> 'channel_versions') v
    JOIN checkpoint_blobs bl ON bl.thread_id = l.thread_id AND bl.checkpoint_ns = ''
        AND bl.channel = v.key AND bl.version = v.value
    WHERE v.key = ANY(%(channels)s)
) AS blobs
FROM latest l JOIN firsts f USING (thread_id)
"""


def _serde() -> Any:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer()


def expand_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Channel values as the graph wrote them (a stored result shares its attempts and value: runtime/serde.py)."""
    from kgot_errors.runtime.serde import expand_values as expand

    return expand(dict(values))


def _sqlite_threads(path: Path) -> list[ThreadInfo]:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'checkpoints'").fetchone():
                return []
            rows = conn.execute(_SQLITE_THREADS).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot read SQLite checkpoint store {path}: {exc}", target=str(path)) from None
    serde, found = _serde(), []
    for thread_id, type_, blob, first in rows:
        checkpoint = serde.loads_typed((type_, blob))
        values = expand_values(checkpoint.get("channel_values") or {})
        found.append(_info(thread_id, values, _waiting(values), checkpoint_time(first), _iso(checkpoint.get("ts"))))
    return found


async def _postgres_connect(url: str) -> Any:
    from kgot_errors.runtime.checkpoint import _redact

    try:
        from psycopg import AsyncConnection, OperationalError
    except ImportError:
        raise CheckpointError("PostgreSQL checkpoints need the extra: pip install 'kgot-errors[postgres]' "
                              "(from a clone: pip install '.[postgres]')", target=_redact(url)) from None
    try:
        return await AsyncConnection.connect(url, autocommit=True, prepare_threshold=0, connect_timeout=10)
    except OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot reach PostgreSQL at {_redact(url)}: {first}", target=_redact(url)) from None


async def _has_tables(conn: Any) -> bool:
    async with conn.cursor() as cur:
        await cur.execute("SELECT to_regclass('checkpoints') IS NOT NULL AND to_regclass('checkpoint_blobs') "
                          "IS NOT NULL")
        row = await cur.fetchone()
    return bool(row and row[0])


async def _postgres_threads(url: str) -> list[ThreadInfo]:
    from psycopg.rows import dict_row

    conn = await _postgres_connect(url)
    try:
        if not await _has_tables(conn):
            return []
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_POSTGRES_THREADS, {"channels": list(_CHANNELS)})
            rows = await cur.fetchall()
    finally:
        await conn.close()
    serde, found = _serde(), []
    for row in rows:
        values = dict(row["inline"] or {})
        for channel, type_, blob in row["blobs"] or ():
            name, kind = bytes(channel).decode(), bytes(type_).decode()
            if kind != "empty":
                values[name] = serde.loads_typed((kind, bytes(blob)))
        values = expand_values(values)
        found.append(_info(row["thread_id"], values, _waiting(values), checkpoint_time(row["first"]),
                           _iso(row["ts"])))
    return found


async def _threads(target: Any) -> list[ThreadInfo]:
    text = os.fspath(require_store(target))
    if _is_postgres(text):
        return await _postgres_threads(text)
    return await asyncio.to_thread(_sqlite_threads, Path(text))


def _matches(info: ThreadInfo, *, status: Iterable[str], kind: Iterable[str], layer: Iterable[str],
             newer_than: float | None, older_than: float | None, now: float) -> bool:
    status, kind, layer = set(status), set(kind), set(layer)
    when = info.updated_at or info.started_at or 0.0
    return ((not status or info.status in status)
            and (not kind or info.kind in kind)
            and (not layer or bool(layer & set(info.layers)))
            and (newer_than is None or when >= now - newer_than)
            and (older_than is None or when < now - older_than))


async def alist_threads(
    target: Any,
    *,
    status: Iterable[str] = (),
    kind: Iterable[str] = (),
    layer: Iterable[str] = (),
    newer_than: float | None = None,
    older_than: float | None = None,
    limit: int | None = None,
    now: float | None = None,
) -> list[ThreadInfo]:
    """The root threads of a SQLite or PostgreSQL store, newest first, filtered.

    `status`: any of STATUSES (`paused`, `unfinished` for threads not finished); `kind`: error
    kinds; `layer`: threads in which that layer made an attempt; `newer_than`/`older_than`:
    seconds since the thread's last step. A missing SQLite file raises StoreNotFound.
    """
    now = time.time() if now is None else now
    found = [t for t in await _threads(target)
             if _matches(t, status=status, kind=kind, layer=layer, newer_than=newer_than, older_than=older_than,
                         now=now)]
    found.sort(key=lambda t: t.updated_at or 0.0, reverse=True)
    return found[:limit] if limit is not None else found


def list_threads(target: Any, **filters: Any) -> list[ThreadInfo]:
    """Sync twin of `alist_threads`."""
    from kgot_errors.graph.recover import run_sync

    return run_sync(lambda: alist_threads(target, **filters))


# --- a thread's steps in time --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Timeline:
    """When a thread started and last moved, and when each of its attempts was recorded (Unix times)."""

    started: float | None
    updated: float | None
    attempts: list[float | None]


async def atimeline(thread_id: str, target: Any) -> Timeline:
    """Each attempt's time: that of the first checkpoint holding it (attempts are appended step by step)."""
    from kgot_errors.runtime.checkpoint import open_checkpointer

    steps: list[tuple[str, float | None, int]] = []
    async with open_checkpointer(require_store(target)) as saver:
        async for tup in saver.alist({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}):
            checkpoint = tup.checkpoint
            attempts = (checkpoint.get("channel_values") or {}).get("attempts") or ()
            steps.append((checkpoint["id"], _iso(checkpoint.get("ts")), len(attempts)))
    steps.sort()
    recorded: list[float | None] = []
    for _, when, count in steps:
        recorded.extend([when] * (count - len(recorded)))
    return Timeline(started=checkpoint_time(steps[0][0]) if steps else None,
                    updated=steps[-1][1] if steps else None, attempts=recorded)


def timeline(thread_id: str, target: Any) -> Timeline:
    """Sync twin of `atimeline`."""
    from kgot_errors.graph.recover import run_sync

    return run_sync(lambda: atimeline(thread_id, target))


# --- retention -----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PruneReport:
    """What a prune did (or, with dry_run, would do): threads deleted and kept, store size before and after."""

    deleted: tuple[str, ...]
    kept: int
    bytes_before: int | None
    bytes_after: int | None
    vacuumed: bool
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "deleted": list(self.deleted)}


def _sqlite_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


_PG_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


async def _postgres_bytes(url: str) -> int:
    conn = await _postgres_connect(url)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0) "
                              "FROM unnest(%s::text[]) t", (list(_PG_TABLES),))
            row = await cur.fetchone()
        return int(row[0])
    finally:
        await conn.close()


def _vacuum_sqlite(path: Path) -> None:
    conn = sqlite3.connect(str(path), timeout=30.0)
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot vacuum SQLite checkpoint store {path}: {exc}", target=str(path)) from None
    finally:
        conn.close()


async def _vacuum_postgres(url: str) -> None:
    conn = await _postgres_connect(url)
    try:
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(_PG_TABLES)}")
    finally:
        await conn.close()


async def _size(text: str) -> int:
    return await _postgres_bytes(text) if _is_postgres(text) else _sqlite_bytes(Path(text))


async def aprune(
    target: Any,
    *,
    older_than: float,
    keep_failed: bool = False,
    vacuum: bool = False,
    dry_run: bool = False,
    now: float | None = None,
) -> PruneReport:
    """Delete the threads whose last step is older than `older_than` seconds, through the store's own delete.

    `keep_failed` keeps every thread that did not end recovered (not recovered, escalated,
    paused, unfinished, ...). `vacuum` then gives the space back: SQLite's VACUUM (the file
    shrinks), PostgreSQL's VACUUM ANALYZE (the space is reused; the files keep their size).
    """
    from kgot_errors.runtime.checkpoint import open_checkpointer

    text = os.fspath(require_store(target))
    threads = await alist_threads(text, now=now)
    cutoff = (time.time() if now is None else now) - older_than
    doomed = [t.thread_id for t in threads if (t.updated_at or t.started_at or 0.0) < cutoff
              and not (keep_failed and t.status not in ("recovered", "degraded"))]
    before = await _size(text)
    if not dry_run and doomed:
        async with open_checkpointer(text) as saver:
            for start in range(0, len(doomed), 64):  # PostgreSQL groups the deletes of one chunk in a round trip
                await asyncio.gather(*(saver.adelete_thread(tid) for tid in doomed[start:start + 64]))
    if vacuum and not dry_run:
        if _is_postgres(text):
            await _vacuum_postgres(text)
        else:
            await asyncio.to_thread(_vacuum_sqlite, Path(text))
    after = before if dry_run else await _size(text)
    return PruneReport(deleted=tuple(doomed), kept=len(threads) - len(doomed), bytes_before=before,
                       bytes_after=after, vacuumed=vacuum and not dry_run, dry_run=dry_run)


def prune(target: Any, **kwargs: Any) -> PruneReport:
    """Sync twin of `aprune`."""
    from kgot_errors.graph.recover import run_sync

    return run_sync(lambda: aprune(target, **kwargs))
