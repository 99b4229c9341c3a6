"""Benchmark: statistics over a large store, and what tracing costs a deterministic recovery."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics as st
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")


def _incidents(n: int) -> list[dict[str, Any]]:
    """A mix with known outcomes: 3 in 4 repaired by parser_fix, 1 in 4 unrecoverable without a model."""
    out = []
    for i in range(n):
        if i % 4 == 3:
            out.append({"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": f"no json here {i}"})
        else:
            out.append({"error_type": "json.decoder.JSONDecodeError", "message": "m",
                        "content": f"{{'i': {i}, 'ok': True,}}"})
    return out


def build_store(target: str, n: int) -> float:
    from kgot_errors import recover_many
    from kgot_errors.runtime.settings import Settings

    started = time.perf_counter()
    done = 0
    for lo in range(0, n, 2000):
        batch = _incidents(n)[lo:lo + 2000]
        recover_many(batch, max_concurrency=50, checkpointer=target, settings=Settings())
        done += len(batch)
    return time.perf_counter() - started


def bench_statistics(target: str, rounds: int) -> dict[str, Any]:
    from kgot_errors.observability.statistics import get_statistics
    from kgot_errors.runtime.breaker import BreakerStore

    times = []
    stats = None
    for _ in range(rounds):
        t = time.perf_counter()
        stats = get_statistics(checkpointer=target, breakers=BreakerStore())
        times.append(time.perf_counter() - t)
    assert stats is not None
    return {"incidents": stats.incidents, "recovered": stats.recovered, "median_s": st.median(times),
            "min_s": min(times), "max_s": max(times)}


def bench_aget_state(target: str, limit: int) -> float:
    """The per-thread alternative for comparison: graph.aget_state for `limit` threads, seconds per 10,000."""
    import sqlite3

    from kgot_errors.graph.recover import _graph, run_sync
    from kgot_errors.runtime.checkpoint import open_checkpointer

    with sqlite3.connect(target) as conn:
        ids = [r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints LIMIT ?", (limit,))]

    async def go() -> float:
        async with open_checkpointer(target) as saver:
            graph = _graph(saver)
            t = time.perf_counter()
            for tid in ids:
                await graph.aget_state({"configurable": {"thread_id": tid}})
            return (time.perf_counter() - t) / len(ids) * 10_000

    return run_sync(go)


def bench_tracing(rounds: int, per_round: int, compression: bool) -> dict[str, float]:
    """Milliseconds per deterministic recovery: tracing off, and tracing to a loopback LangSmith recorder
    (which advertises zstd-compressed ingestion as LangSmith does, or not)."""
    import langsmith

    from kgot_errors import recover
    from kgot_errors.observability.recorder import LoopbackRecorder
    from kgot_errors.runtime.settings import Settings

    incident = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": 'Sure: ```json\n{"a": 1,}\n```'}
    settings = Settings()

    def once() -> None:
        r = recover(incident, checkpointer=None, settings=settings)
        assert r.recovered

    for _ in range(20):
        once()
    off: list[float] = []
    on: list[float] = []
    with LoopbackRecorder(compression=compression) as recorder:
        client = langsmith.Client(api_url=recorder.url, api_key="loopback")
        for _ in range(rounds):  # interleaved, so drifting machine load hits both alike
            t = time.perf_counter()
            for _ in range(per_round):
                once()
            off.append((time.perf_counter() - t) / per_round * 1000)
            t = time.perf_counter()
            with langsmith.tracing_context(enabled=True, client=client, project_name="bench"):
                for _ in range(per_round):
                    once()
            on.append((time.perf_counter() - t) / per_round * 1000)
        client.flush()
        time.sleep(0.5)
        roots = len(recorder.roots())
    return {"off_ms": st.median(off), "on_ms": st.median(on), "traces": roots}


def bench_wrapper_off(rounds: int, per_round: int) -> dict[str, float]:
    """Microseconds per graph run of 4 no-op nodes, plain vs wrapped by layer_node, tracing off."""
    import asyncio
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    from kgot_errors.observability.tracing import layer_node

    class S(TypedDict, total=False):
        attempts: list

    async def step(state: S) -> dict:
        return {"attempts": [{"layer": "x", "try_no": 1, "verdict": "failed", "reason": "r"}]}

    def build(wrap: bool) -> Any:
        g = StateGraph(S)
        names = ["a", "b", "c", "d"]
        for n in names:
            fn = layer_node(step) if wrap else step
            g.add_node(n, fn)
        g.add_edge(START, "a")
        for x, y in zip(names, names[1:]):
            g.add_edge(x, y)
        g.add_edge("d", END)
        return g.compile()

    async def timed(graph: Any) -> float:
        t = time.perf_counter()
        for _ in range(per_round):
            await graph.ainvoke({})
        return (time.perf_counter() - t) / per_round * 1e6

    async def go() -> dict[str, float]:
        plain, wrapped = build(False), build(True)
        for g in (plain, wrapped):
            await timed(g)
        a, b = [], []
        for _ in range(rounds):
            a.append(await timed(plain))
            b.append(await timed(wrapped))
        return {"plain_us": st.median(a), "wrapped_us": st.median(b)}

    return asyncio.run(go())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--incidents", type=int, default=10_000)
    ap.add_argument("--store", help="reuse (or create) this SQLite store")
    ap.add_argument("--postgres", help="also measure a PostgreSQL store at this URL (filled the same way)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-tracing", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "load": os.getloadavg()}
    store = args.store or str(Path(tempfile.mkdtemp(prefix="kgot-bench-")) / "stats.sqlite")
    if not Path(store).exists():
        out["sqlite_fill_s"] = build_store(store, args.incidents)
    out["sqlite"] = bench_statistics(store, args.rounds)
    out["sqlite_aget_state_s_per_10k"] = bench_aget_state(store, 500)
    if args.postgres:
        out["postgres_fill_s"] = build_store(args.postgres, args.incidents)
        out["postgres"] = bench_statistics(args.postgres, args.rounds)
    if not args.skip_tracing:
        out["tracing_zstd"] = bench_tracing(args.rounds * 2, 40, compression=True)
        out["tracing_plain"] = bench_tracing(args.rounds * 2, 40, compression=False)
        out["wrapper_off"] = bench_wrapper_off(args.rounds * 2, 300)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
