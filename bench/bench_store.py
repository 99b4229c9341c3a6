"""The default store's cost on the typical incident, side by side with json_repair, and bytes written per incident.

    python bench/bench_store.py [--rounds R] [--per-round K] [--postgres URL] [--json OUT]

The typical case of issue 14: a ~1.2 KB LLM answer in a ```json fence, single-quoted, with
trailing commas, for a 12-property schema, caught as the JSONDecodeError `json.loads` raises.
Measured interleaved in one process (each round runs every variant K times, in turn; medians of
all calls):

- peer: `json_repair.loads` + a compiled validator (fastjsonschema, compiled once), the floor;
- `recover(checkpointer=None)` (target <= 2x the peer);
- `recover()` with the default store, a SQLite file under KGOT_DATA_DIR kept open for the
  process (target <= 3x the peer);
- `recover(checkpointer=PATH)`, a store opened and closed by every call (what the default
  did before, for reference).

Then, for one incident, the store calls made and the bytes written to the store (target: at
most 2x the incident's own size, its record as compact JSON): SQLite, the payload columns of
its `checkpoints` and `writes` rows; PostgreSQL (`--postgres`, else KGOT_TEST_POSTGRES_URL,
skipped without one), its `checkpoint_blobs`, `checkpoints` (checkpoint and metadata) and
`checkpoint_writes` rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kgot_errors.testing.typical import ANSWER, PROPERTIES, SCHEMA, incident_size, typical_error

def sqlite_bytes(path: str | Path, thread_id: str) -> dict[str, int]:
    """Payload bytes of one thread's rows in a SQLite store: checkpoints (checkpoint + metadata) and writes."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows, cp = conn.execute("SELECT count(*), coalesce(sum(length(checkpoint) + length(metadata)), 0) "
                                "FROM checkpoints WHERE thread_id = ?", (thread_id,)).fetchone()
        writes, wr = conn.execute("SELECT count(*), coalesce(sum(length(value)), 0) FROM writes "
                                  "WHERE thread_id = ?", (thread_id,)).fetchone()
    finally:
        conn.close()
    return {"checkpoints": rows, "writes": writes, "bytes": cp + wr}


async def postgres_bytes(url: str, thread_id: str) -> dict[str, int]:
    """Payload bytes of one thread's rows in a PostgreSQL store: blobs, checkpoints (checkpoint + metadata)
    and writes, as the text/bytes the saver sent (octet_length of each)."""
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = %(t)s), "
            "(SELECT coalesce(sum(octet_length(checkpoint::text) + octet_length(metadata::text)), 0) "
            " FROM checkpoints WHERE thread_id = %(t)s), "
            "(SELECT coalesce(sum(coalesce(octet_length(blob), 0)), 0) FROM checkpoint_blobs WHERE thread_id = %(t)s), "
            "(SELECT count(*) FROM checkpoint_writes WHERE thread_id = %(t)s), "
            "(SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_writes WHERE thread_id = %(t)s)",
            {"t": thread_id})
        rows, cp, blobs, writes, wr = await cur.fetchone()
    return {"checkpoints": rows, "writes": writes, "bytes": int(cp) + int(blobs) + int(wr)}


class StoreCalls:
    """Counts the store calls LangGraph makes (reads, checkpoints, task writes) on our two savers."""

    def __init__(self) -> None:
        from kgot_errors.runtime.postgres_store import PostgresStore
        from kgot_errors.runtime.sqlite_store import SqliteStore

        self.counts = {"aget_tuple": 0, "aput": 0, "aput_writes": 0}
        for cls in (SqliteStore, PostgresStore):
            for name in self.counts:
                original = getattr(cls, name)
                setattr(cls, name, self._counted(name, original))

    def _counted(self, name: str, original: Any) -> Any:
        async def call(saver: Any, *args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            return await original(saver, *args, **kwargs)

        return call

    def reset(self) -> dict[str, int]:
        out = dict(self.counts)
        self.counts = dict.fromkeys(self.counts, 0)
        return out


def timings(rounds: int, per_round: int, tmp: Path) -> dict[str, list[float]]:
    import fastjsonschema
    import json_repair

    from kgot_errors import recover
    from kgot_errors.runtime.settings import load_settings

    error, settings = typical_error(), load_settings()
    validate = fastjsonschema.compile(SCHEMA)

    def peer() -> Any:
        value = json_repair.loads(ANSWER)
        validate(value)
        return value

    def one(checkpointer: Any) -> Any:
        kwargs = {} if checkpointer == "default" else {"checkpointer": checkpointer}
        result = recover(error, content=ANSWER, schema=SCHEMA, settings=settings, **kwargs)
        if not result.recovered:
            raise AssertionError(result.summary)
        return result.value

    reopened = str(tmp / "reopened.sqlite")
    variants = {"json_repair + compiled validator": peer, "recover(checkpointer=None)": lambda: one(None),
                "recover() default store": lambda: one("default"),
                "recover(checkpointer=PATH), opened per call": lambda: one(reopened)}
    if peer() != one(None):
        print("note: json_repair and recover() give different values on the typical case", file=sys.stderr)
    for fn in variants.values():  # warm: imports, caches, the default store opened
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def store_figures(tmp: Path, postgres: str | None) -> dict[str, Any]:
    from kgot_errors import recover
    from kgot_errors.runtime.settings import load_settings

    error, settings = typical_error(), load_settings()
    calls = StoreCalls()
    out: dict[str, Any] = {"incident_bytes": incident_size(error)}
    path = str(tmp / "bytes.sqlite")
    recover(error, content=ANSWER, schema=SCHEMA, checkpointer=path, settings=settings)  # tables made
    calls.reset()
    result = recover(error, content=ANSWER, schema=SCHEMA, checkpointer=path, settings=settings)
    out["sqlite"] = {**sqlite_bytes(path, result.thread_id), "store_calls": calls.reset()}
    if postgres:
        recover(error, content=ANSWER, schema=SCHEMA, checkpointer=postgres, settings=settings)
        calls.reset()
        result = recover(error, content=ANSWER, schema=SCHEMA, checkpointer=postgres, settings=settings)
        out["postgres"] = {**asyncio.run(postgres_bytes(postgres, result.thread_id)), "store_calls": calls.reset()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=20)
    ap.add_argument("--postgres", default=os.environ.get("KGOT_TEST_POSTGRES_URL"),
                    help="PostgreSQL URL for the bytes figure (default KGOT_TEST_POSTGRES_URL; none: skipped)")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["KGOT_DATA_DIR"] = str(Path(tmp) / "data")  # the default store, away from the user's
        os.environ.pop("KGOT_CHECKPOINT_URL", None)
        times = timings(args.rounds, args.per_round, Path(tmp))
        figures = store_figures(Path(tmp), args.postgres)
    medians = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    floor = medians["json_repair + compiled validator"]
    print(f"typical case ({len(ANSWER.encode())} bytes, {len(PROPERTIES)}-property schema); medians of "
          f"{args.rounds} interleaved rounds x {args.per_round} calls:")
    targets = {"recover(checkpointer=None)": 2.0, "recover() default store": 3.0}
    for name, ms in medians.items():
        target = f" (target <= {targets[name]:g}x)" if name in targets else ""
        print(f"  {name:45s} {ms:8.3f} ms  {ms / floor:5.2f}x{target}")
    own = figures["incident_bytes"]
    print(f"bytes written per incident (the incident itself: {own} bytes as compact JSON; target <= 2x):")
    for store in ("sqlite", "postgres"):
        if store in figures:
            f = figures[store]
            print(f"  {store:9s} {f['bytes']:7d} bytes = {f['bytes'] / own:4.2f}x  ({f['checkpoints']} checkpoint(s), "
                  f"{f['writes']} task write(s); store calls {f['store_calls']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians_ms": medians, "ratios": {k: v / floor for k, v in
                                                                                  medians.items()},
                                               **figures}, indent=2))


if __name__ == "__main__":
    main()
