"""Statistics derived from the recorded attempts of every thread in a checkpoint store (they survive restarts)."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kgot_errors.observability.health import RECOVERY_TARGET_S, Health, health_of
from kgot_errors.state import ErrorKind, Layer, Verdict

__all__ = [
    "LayerStats",
    "SandboxStats",
    "Statistics",
    "Tally",
    "TimeStats",
    "aget_comprehensive_statistics",
    "aget_statistics",
    "get_comprehensive_statistics",
    "get_statistics",
    "scan_store",
]

_WANTED = ("result", "attempts", "kind", "recovered")
"""The channels statistics read; `result` alone holds everything once a thread has finished."""
_BRANCH = "branch:to:"
_PERCENT = 100.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class LayerStats(_Frozen):
    """What one layer did over every incident: tries by verdict, time spent, LLM use."""

    attempts: int = 0
    recovered: int = 0
    failed: int = 0
    skipped: int = 0
    error: int = 0
    duration_s: float = 0.0
    llm_calls: int = 0
    tokens: int = 0


class KindStats(_Frozen):
    incidents: int = 0
    recovered: int = 0


class TimeStats(_Frozen):
    """Time to recovery of the recovered incidents: the time their layers spent (waits included), seconds."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None
    over_target: int = 0
    target_s: float = RECOVERY_TARGET_S


class SandboxStats(_Frozen):
    """Sandbox runs found in the attempts' evidence (any layer that ran code), and why the sandbox killed some."""

    runs: int = 0
    ok: int = 0
    killed: dict[str, int] = Field(default_factory=dict)  # killed_by -> count (timeout, memory, cpu)
    by_backend: dict[str, int] = Field(default_factory=dict)
    peak_memory_max: int | None = None  # bytes
    peak_memory_mean: float | None = None


class Statistics(_Frozen):
    """Figures over every recovery thread in one store. `to_dict()` gives plain JSON data.

    `recovery_rate` is recovered / concluded, a fraction in [0, 1] (None with nothing concluded);
    concluded = finished threads plus threads paused for a person. Threads still running or cut
    off mid-way (`open`) are counted as incidents but not in the rate.
    """

    store: str
    incidents: int = 0
    finished: int = 0
    recovered: int = 0
    degraded: int = 0
    """Finished with a value whose fix changed the data (completed, dropped, coerced): not recovered."""
    not_recovered: int = 0
    escalated: int = 0
    paused: int = 0
    open: int = 0
    recovery_rate: float | None = None
    by_kind: dict[str, KindStats] = Field(default_factory=dict)
    recovered_by: dict[str, int] = Field(default_factory=dict)
    layers: dict[str, LayerStats] = Field(default_factory=dict)
    llm_calls: int = 0
    tokens: int = 0
    time_to_recovery: TimeStats = TimeStats()
    sandbox: SandboxStats = SandboxStats()
    breakers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    health: Health
    recovery_times: tuple[float, ...] = Field(default=(), exclude=True, repr=False)
    """Every recovered incident's time to recovery, sorted (for histograms); not in to_dict()."""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _exec_results(evidence: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    """ExecResult dicts carried in an attempt's evidence: the evidence itself, or one level down
    (`run`, a list of runs, a ballot's run)."""

    def looks_like(value: Any) -> bool:
        return isinstance(value, Mapping) and "killed_by" in value and "exit_code" in value

    if looks_like(evidence):
        yield evidence
        return
    for value in evidence.values():
        if looks_like(value):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if looks_like(v))


class Tally:
    """Accumulates threads (or results as they complete) into Statistics. Not thread-safe; cheap to add to."""

    def __init__(self) -> None:
        self.incidents = self.finished = self.recovered = self.degraded = self.not_recovered = 0
        self.escalated = self.paused = self.open = 0
        self.by_kind: dict[str, list[int]] = {}
        self.recovered_by: dict[str, int] = {}
        self.layers: dict[str, dict[str, float]] = {}
        self.times: list[float] = []
        self.runs = self.runs_ok = 0
        self.killed: dict[str, int] = {}
        self.backends: dict[str, int] = {}
        self.peaks: list[int] = []

    def add_thread(self, values: Mapping[str, Any], next_nodes: Iterable[str] = ()) -> None:
        """One recovery thread from its latest checkpoint's channel values and the nodes it waits on."""
        waiting = list(next_nodes)
        result = values.get("result")
        if isinstance(result, Mapping) and not waiting:
            self.add_result(result)
            return
        self.incidents += 1
        attempts = list(values.get("attempts") or ())
        kind = str(values.get("kind") or ErrorKind.UNKNOWN)
        self._kind(kind, recovered=False)
        self._attempts(attempts)
        if "human" in waiting:
            self.paused += 1
            self.escalated += 1
        else:
            self.open += 1

    def add_result(self, result: Any) -> None:
        """One finished recovery: a RecoveryResult or its plain data (`result` channel)."""
        data = result.to_data() if hasattr(result, "to_data") else result
        self.incidents += 1
        self.finished += 1
        recovered = bool(data.get("recovered"))
        self._kind(str(data.get("kind") or ErrorKind.UNKNOWN), recovered=recovered)
        self._attempts(data.get("attempts") or ())
        outcome = data.get("outcome")
        if recovered:
            self.recovered += 1
            layer = str(data.get("recovered_by") or "unknown")
            self.recovered_by[layer] = self.recovered_by.get(layer, 0) + 1
            self.times.append(float(data.get("duration_s") or 0.0))
        elif outcome == "escalated":
            self.escalated += 1
        elif outcome == "degraded":
            self.degraded += 1
        else:
            self.not_recovered += 1

    def _kind(self, kind: str, *, recovered: bool) -> None:
        row = self.by_kind.setdefault(kind, [0, 0])
        row[0] += 1
        row[1] += recovered

    def _attempts(self, attempts: Iterable[Mapping[str, Any]]) -> None:
        for a in attempts:
            a = a.model_dump(mode="json") if hasattr(a, "model_dump") else a
            row = self.layers.get(a["layer"])
            if row is None:
                row = self.layers[a["layer"]] = dict.fromkeys(("attempts", *Verdict, "duration_s", "llm_calls",
                                                                "tokens"), 0)
            row["attempts"] += 1
            row[a["verdict"]] = row.get(a["verdict"], 0) + 1
            row["duration_s"] += a.get("duration_s") or 0.0
            row["llm_calls"] += a.get("llm_calls") or 0
            row["tokens"] += a.get("tokens") or 0
            for run in _exec_results(a.get("evidence") or {}):
                self._run(run)

    def _run(self, run: Mapping[str, Any]) -> None:
        self.runs += 1
        self.runs_ok += bool(run.get("ok", run.get("exit_code") == 0 and not run.get("killed_by")))
        cause = run.get("killed_by")
        if cause:
            self.killed[str(cause)] = self.killed.get(str(cause), 0) + 1
        backend = str(run.get("backend") or "unknown")
        self.backends[backend] = self.backends.get(backend, 0) + 1
        if isinstance(run.get("peak_memory"), int):
            self.peaks.append(run["peak_memory"])

    def statistics(self, *, store: str = "", breakers: Mapping[str, Mapping[str, Any]] | None = None,
                   backends: Mapping[str, bool] | None = None, target_s: float = RECOVERY_TARGET_S) -> Statistics:
        concluded = self.finished + self.paused
        rate = self.recovered / concluded if concluded else None
        times = sorted(self.times)
        within = sum(t <= target_s for t in times)
        layer_order = {str(layer): i for i, layer in enumerate(Layer)}
        layers = {name: LayerStats(**{k: (round(v, 6) if k == "duration_s" else int(v)) for k, v in row.items()})
                  for name, row in sorted(self.layers.items(), key=lambda kv: layer_order.get(kv[0], 99))}
        breakers = {k: dict(v) for k, v in (breakers or {}).items()}
        return Statistics(
            store=store,
            incidents=self.incidents,
            finished=self.finished,
            recovered=self.recovered,
            degraded=self.degraded,
            not_recovered=self.not_recovered,
            escalated=self.escalated,
            paused=self.paused,
            open=self.open,
            recovery_rate=None if rate is None else round(rate, 6),
            by_kind={k: KindStats(incidents=v[0], recovered=v[1]) for k, v in sorted(self.by_kind.items())},
            recovered_by=dict(sorted(self.recovered_by.items(), key=lambda kv: layer_order.get(kv[0], 99))),
            layers=layers,
            llm_calls=sum(s.llm_calls for s in layers.values()),
            tokens=sum(s.tokens for s in layers.values()),
            time_to_recovery=TimeStats(
                count=len(times),
                mean=round(sum(times) / len(times), 6) if times else None,
                p50=_percentile(times, 50),
                p95=_percentile(times, 95),
                max=times[-1] if times else None,
                over_target=len(times) - within,
                target_s=target_s,
            ),
            sandbox=SandboxStats(
                runs=self.runs, ok=self.runs_ok, killed=dict(sorted(self.killed.items())),
                by_backend=dict(sorted(self.backends.items())),
                peak_memory_max=max(self.peaks) if self.peaks else None,
                peak_memory_mean=round(sum(self.peaks) / len(self.peaks), 1) if self.peaks else None,
            ),
            breakers=breakers,
            health=health_of(recovery_rate=rate, within_target=within / len(times) if times else None,
                             breakers=breakers, backends=backends),
            recovery_times=tuple(times),
        )


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (an observed value, never interpolated)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# --- reading the latest checkpoint of every thread -------------------------------------------------------------

_SQLITE_LATEST = """
SELECT c.thread_id, c.type, c.checkpoint
FROM (SELECT thread_id, max(checkpoint_id) AS latest FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id) l
JOIN checkpoints c ON c.thread_id = l.thread_id AND c.checkpoint_ns = '' AND c.checkpoint_id = l.latest
"""
"""The newest checkpoint of every root thread: one scan of the primary key, then one lookup per thread."""

_POSTGRES_LATEST = """
WITH latest AS (
    SELECT DISTINCT ON (thread_id) thread_id, checkpoint FROM checkpoints
    WHERE checkpoint_ns = '' ORDER BY thread_id, checkpoint_id DESC
)
SELECT l.thread_id, l.checkpoint -> 'channel_values' AS inline, (
    SELECT array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
    FROM jsonb_each_text(l.checkpoint -> 'channel_versions') v
    JOIN checkpoint_blobs bl ON bl.thread_id = l.thread_id AND bl.checkpoint_ns = ''
        AND bl.channel = v.key AND bl.version = v.value
    WHERE v.key = ANY(%(channels)s)
) AS blobs
FROM latest l
"""


def _serde(saver: Any = None) -> Any:
    if saver is not None and getattr(saver, "serde", None) is not None:
        return saver.serde
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer()


def _split(thread_id: str, channel_values: Mapping[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
    """(thread, the wanted channels, the nodes it waits on): a `branch:to:X` channel still set means X runs next."""
    from kgot_errors.runtime.serde import expand_values  # a stored result shares its attempts with `attempts`

    values = expand_values({k: channel_values[k] for k in _WANTED if k in channel_values})
    waiting = [k[len(_BRANCH):] for k in channel_values if k.startswith(_BRANCH)]
    return thread_id, values, waiting


def _sqlite_file_rows(path: Path) -> list[tuple[str, str, bytes]]:
    """Rows from a SQLite store opened read-only (a reader never needs write access nor blocks writers in WAL)."""
    if not path.exists():
        return []
    from kgot_errors.runtime.sqlite_store import connect_read_only

    conn, _ = connect_read_only(path, timeout=10.0)  # immutable=1 on a read-only mount
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'checkpoints'").fetchone():
            return []
        return conn.execute(_SQLITE_LATEST).fetchall()
    finally:
        conn.close()


def _decode_sqlite(rows: list[tuple[str, str, bytes]], serde: Any, tally: Tally) -> None:
    """Decode and count one thread at a time (keeping every decoded checkpoint costs twice the time in GC)."""
    for thread_id, type_, blob in rows:
        checkpoint = serde.loads_typed((type_, blob))
        tally.add_thread(*_split(thread_id, checkpoint.get("channel_values") or {})[1:])


def _decode_postgres(rows: list[Mapping[str, Any]], serde: Any, tally: Tally) -> None:
    for row in rows:
        values = dict(row["inline"] or {})
        for channel, type_, blob in row["blobs"] or ():
            name, kind = bytes(channel).decode(), bytes(type_).decode()
            if kind == "empty":
                values.pop(name, None)
            else:
                values[name] = serde.loads_typed((kind, bytes(blob)))
        tally.add_thread(*_split(row["thread_id"], values)[1:])


async def _postgres_rows(conn: Any) -> list[Mapping[str, Any]]:
    from psycopg.rows import dict_row

    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_POSTGRES_LATEST, {"channels": list(_WANTED)})
        return await cur.fetchall()


async def _from_postgres_url(url: str, tally: Tally) -> None:
    from kgot_errors.errors import CheckpointError
    from kgot_errors.runtime.checkpoint import _redact

    try:
        from psycopg import AsyncConnection, OperationalError
    except ImportError:
        raise CheckpointError("PostgreSQL checkpoints need the extra: pip install 'kgot-errors[postgres]' (from a "
                              "clone: pip install '.[postgres]')", target=_redact(url)) from None
    try:
        conn = await AsyncConnection.connect(url, autocommit=True, prepare_threshold=0, connect_timeout=10)
    except OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot reach PostgreSQL at {_redact(url)}: {first}", target=_redact(url)) from None
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT to_regclass('checkpoints') IS NOT NULL AND to_regclass('checkpoint_blobs') "
                              "IS NOT NULL")
            row = await cur.fetchone()
        if not row or not row[0]:
            return
        rows = await _postgres_rows(conn)
    finally:
        await conn.close()
    await asyncio.to_thread(_decode_postgres, rows, _serde(), tally)


async def _from_saver(saver: Any, tally: Tally) -> None:
    kinds = {cls.__name__ for cls in type(saver).__mro__}
    if "SqliteStore" in kinds:  # ours: a sync connection used on the loop
        rows = await saver.call(lambda: saver.conn.execute(_SQLITE_LATEST).fetchall())
        await asyncio.to_thread(_decode_sqlite, rows, _serde(saver), tally)
        return
    if "AsyncSqliteSaver" in kinds:
        async with saver.lock:
            async with saver.conn.execute(_SQLITE_LATEST) as cur:
                rows = await cur.fetchall()
        await asyncio.to_thread(_decode_sqlite, list(rows), _serde(saver), tally)
        return
    if "AsyncPostgresSaver" in kinds:
        conn = saver.conn
        if hasattr(conn, "connection"):  # a pool
            async with conn.connection() as c:
                rows = await _postgres_rows(c)
        else:
            async with saver.lock:
                rows = await _postgres_rows(conn)
        await asyncio.to_thread(_decode_postgres, rows, _serde(saver), tally)
        return
    # Any other saver (InMemorySaver, custom): its own listing, newest checkpoint of each thread kept.
    # The listing may hold a lock while it runs: read it whole first, decode nothing else meanwhile.
    latest: dict[str, tuple[str, dict[str, Any]]] = {}
    async for tup in saver.alist(None):
        conf = tup.config["configurable"]
        if conf.get("checkpoint_ns", ""):
            continue
        cid = tup.checkpoint["id"]
        known = latest.get(conf["thread_id"])
        if known is None or cid > known[0]:
            latest[conf["thread_id"]] = (cid, tup.checkpoint.get("channel_values") or {})
    for tid, (_, values) in latest.items():
        tally.add_thread(*_split(tid, values)[1:])


async def scan_store(target: Any, tally: Tally) -> Tally:
    """Add the latest checkpoint of every root thread in `target` to `tally`.

    `target` is a SQLite path, a `postgresql://` URL, or a ready checkpoint saver. SQLite and
    PostgreSQL are read with one query over the savers' own tables (a missing SQLite file is an
    empty store); other savers through their listing.
    """
    from langgraph.checkpoint.base import BaseCheckpointSaver

    if target is None or target is False:
        return tally
    if isinstance(target, BaseCheckpointSaver):
        await _from_saver(target, tally)
        return tally
    text = os.fspath(target)
    if text in ("memory", ":memory:"):
        return tally  # a fresh in-memory store holds nothing
    if text.startswith(("postgresql://", "postgres://")):
        await _from_postgres_url(text, tally)
        return tally
    try:
        rows = await asyncio.to_thread(_sqlite_file_rows, Path(text))
    except sqlite3.Error as exc:
        from kgot_errors.errors import CheckpointError

        raise CheckpointError(f"cannot read SQLite checkpoint store {text}: {exc}", target=text) from None
    await asyncio.to_thread(_decode_sqlite, rows, _serde(), tally)
    return tally


def _default_target(checkpointer: Any, settings: Any) -> Any:
    if isinstance(checkpointer, str) and checkpointer == "default":  # recover()'s DEFAULT
        from kgot_errors.runtime.settings import load_settings

        return (settings or load_settings()).checkpoint_target()
    return checkpointer


async def aget_statistics(
    *,
    checkpointer: Any = "default",
    settings: Any = None,
    breakers: Any = None,
    backends: Mapping[str, bool] | None = None,
    target_s: float = RECOVERY_TARGET_S,
) -> Statistics:
    """Statistics over every recovery thread in a checkpoint store, with the health score.

    `checkpointer` is what recover() takes (default: the settings' store). `breakers` is a
    BreakerStore (default: this process's); its circuits are process state, not stored.
    `backends` maps parts checked elsewhere (e.g. by `doctor`) to whether they are usable; it
    feeds the health score. `target_s` is the time-to-recovery target (30 s).
    """
    from kgot_errors.runtime.breaker import default_store
    from kgot_errors.runtime.checkpoint import describe_target

    target = _default_target(checkpointer, settings)
    tally = await scan_store(target, Tally())
    snapshot = (breakers if breakers is not None else default_store()).snapshot()
    return tally.statistics(store=describe_target(target), breakers=snapshot, backends=backends, target_s=target_s)


def get_statistics(**kwargs: Any) -> Statistics:
    """Sync twin of `aget_statistics`."""
    from kgot_errors.graph.recover import run_sync

    return run_sync(lambda: aget_statistics(**kwargs))


_SYNTAX_KINDS = (ErrorKind.SYNTAX, ErrorKind.SCHEMA)
_API_KINDS = (ErrorKind.TRANSIENT, ErrorKind.PERMANENT)


def comprehensive(stats: Statistics) -> dict[str, Any]:
    """Statistics in the original system's key shape (recovery_rate in percent, as there)."""

    def kinds(names: Iterable[str]) -> KindStats:
        rows = [stats.by_kind.get(str(k), KindStats()) for k in names]
        return KindStats(incidents=sum(r.incidents for r in rows), recovered=sum(r.recovered for r in rows))

    syntax, api, execution = kinds(_SYNTAX_KINDS), kinds(_API_KINDS), kinds([ErrorKind.EXECUTION])
    layer = stats.layers.get
    rate = stats.recovery_rate
    return {
        "kgot_error_management": {
            "total_errors_handled": stats.incidents,
            "successful_recoveries": stats.recovered,
            "failed_recoveries": stats.not_recovered + stats.escalated,
            "recovery_rate": round(rate * _PERCENT, 2) if rate is not None else 0.0,
            "errors_by_kind": {k: v.incidents for k, v in stats.by_kind.items()},
            "recoveries_by_layer": dict(stats.recovered_by),
            "mean_time_to_recovery_s": stats.time_to_recovery.mean,
        },
        "syntax_error_manager": {
            "total_syntax_errors": syntax.incidents,
            "successful_corrections": syntax.recovered,
            "llm_corrections": (layer(str(Layer.LLM_FIX)) or LayerStats()).recovered,
        },
        "api_error_manager": {
            "total_api_errors": api.incidents,
            "successful_retries": api.recovered,
            "retry_attempts": (layer(str(Layer.BACKOFF)) or LayerStats()).attempts,
            "circuit_breakers": {k: v.get("state") for k, v in stats.breakers.items()},
        },
        "python_executor_manager": {
            "total_executions": stats.sandbox.runs,
            "successful_executions": stats.sandbox.ok,
            "killed": dict(stats.sandbox.killed),
            "execution_errors": execution.incidents,
        },
        "llm": {"calls": stats.llm_calls, "tokens": stats.tokens},
        "integration_health_score": stats.health.score,
    }


async def aget_comprehensive_statistics(**kwargs: Any) -> dict[str, Any]:
    """`aget_statistics` in the original system's shape (see `comprehensive`)."""
    return comprehensive(await aget_statistics(**kwargs))


def get_comprehensive_statistics(**kwargs: Any) -> dict[str, Any]:
    """Sync twin of `aget_comprehensive_statistics`: `kgot_error_management.total_errors_handled`, ...,
    `integration_health_score`."""
    return comprehensive(get_statistics(**kwargs))
