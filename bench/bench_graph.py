"""Graph overhead, import cost and CLI latency, each measured against its peer in the same run.

    python bench/bench_graph.py [--cases N] [--json OUT]

1. Median time per incident over the corpus through the compiled graph (no checkpointer) vs a
   bare three-node LangGraph graph carrying the same input (target: at most 1.5x); the same
   with the SQLite checkpointer (reported).
2. `from kgot_errors import recover` in a fresh interpreter vs `import langgraph.graph`
   (target: at most 1.3x), median of fresh processes.
3. `kgot-errors repair` on the shipped example, wall time (target: under 2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class _Bare(TypedDict, total=False):
    incident: dict
    result: dict


async def _pass(state: _Bare) -> dict:
    return {"incident": state["incident"]}


async def _done(state: _Bare) -> dict:
    return {"result": {"ok": True}}


def bare_graph() -> Any:
    """The peer: three trivial async nodes in a chain, the smallest useful LangGraph graph."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(_Bare)
    g.add_node("a", _pass)
    g.add_node("b", _pass)
    g.add_node("c", _done)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g.compile()


def _incidents(n: int) -> list[dict]:
    from kgot_errors.state import Incident

    lines = (HERE / "corpus" / "json_public.jsonl").read_text(encoding="utf-8").splitlines()
    cases = [json.loads(line) for line in lines if line.strip()][:n]
    return [Incident.parse({"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": c["input"],
                            "output_schema": c.get("schema")}).to_data() for c in cases]


async def _per_incident(graph: Any, incidents: list[dict], *, context: Any = None, threads: bool = False,
                        rounds: int = 3) -> list[float]:
    times: list[float] = []
    for r in range(rounds):
        for i, inc in enumerate(incidents):
            kwargs: dict[str, Any] = {"context": context} if context is not None else {}
            config = {"configurable": {"thread_id": f"b{r}-{i}"}} if threads else {}
            if threads:
                kwargs["durability"] = "sync"
            t0 = time.perf_counter()
            await graph.ainvoke({"incident": inc}, config, **kwargs)
            times.append(time.perf_counter() - t0)
    return times


async def graph_overhead(n: int) -> dict[str, float]:
    from kgot_errors import build_graph
    from kgot_errors.runtime.checkpoint import open_checkpointer

    from kgot_errors.runtime.context import RecoveryContext

    incidents, ctx = _incidents(n), RecoveryContext()
    ours, bare = build_graph(), bare_graph()
    await _per_incident(ours, incidents[:20], context=ctx, rounds=1)  # warm caches and lazy imports
    await _per_incident(bare, incidents[:20], rounds=1)
    t_bare = statistics.median(await _per_incident(bare, incidents))
    t_ours = statistics.median(await _per_incident(ours, incidents, context=ctx))
    with tempfile.TemporaryDirectory() as tmp:
        async with open_checkpointer(str(Path(tmp) / "b.sqlite")) as saver:
            t_sqlite = statistics.median(await _per_incident(build_graph(saver), incidents, context=ctx,
                                                             threads=True, rounds=1))
    return {"bare_ms": t_bare * 1e3, "graph_ms": t_ours * 1e3, "ratio": t_ours / t_bare,
            "graph_sqlite_ms": t_sqlite * 1e3, "sqlite_ratio": t_sqlite / t_bare}


def _fresh(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def import_cost(runs: int = 15) -> dict[str, float]:
    _fresh("import langgraph.graph; from kgot_errors import recover", 2)  # warm the OS file cache
    base = _fresh("pass", runs)
    lg = _fresh("import langgraph.graph", runs)
    ours = _fresh("from kgot_errors import recover", runs)
    return {"python_s": base, "langgraph_s": lg, "kgot_s": ours, "ratio": ours / lg,
            "ratio_minus_interpreter": (ours - base) / (lg - base)}


def cli_latency(runs: int = 5) -> dict[str, float]:
    exe = shutil.which("kgot-errors")
    if exe is None:
        return {}
    example = str(ROOT / "examples" / "broken_output.txt")
    schema = str(ROOT / "examples" / "review.schema.json")
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "KGOT_DATA_DIR": tmp}
        for label, extra in (("no_checkpoint_s", ["--no-checkpoint"]), ("sqlite_s", [])):
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                subprocess.run([exe, "repair", example, "--schema", schema, *extra], env=env, check=True,
                               capture_output=True)
                times.append(time.perf_counter() - t0)
            out[label] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=300, help="corpus cases per round (default 300)")
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = ap.parse_args()
    results = {"graph": asyncio.run(graph_overhead(args.cases)), "import": import_cost(), "cli": cli_latency()}
    g, i, c = results["graph"], results["import"], results["cli"]
    print(f"per incident (median): bare 3-node graph {g['bare_ms']:.3f} ms | kgot graph {g['graph_ms']:.3f} ms "
          f"({g['ratio']:.2f}x, target <= 1.5x) | kgot graph + SQLite {g['graph_sqlite_ms']:.3f} ms "
          f"({g['sqlite_ratio']:.2f}x)")
    print(f"import (median, fresh process): python {i['python_s']:.3f} s | langgraph.graph {i['langgraph_s']:.3f} s | "
          f"kgot_errors.recover {i['kgot_s']:.3f} s ({i['ratio']:.2f}x, target <= 1.3x; "
          f"{i['ratio_minus_interpreter']:.2f}x without interpreter start)")
    if c:
        print(f"kgot-errors repair example: {c['no_checkpoint_s']:.2f} s without checkpoint, {c['sqlite_s']:.2f} s "
              f"with SQLite (target < 2 s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
