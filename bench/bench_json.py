"""Benchmark of deterministic JSON repair on the labelled corpus: ours against the libraries, in one process.

    python bench/bench_json.py                      # table per category, overall, cases/s
    python bench/bench_json.py --json results.json  # also machine-readable results

To add an implementation, append a (name, callable) pair to IMPLEMENTATIONS (the callable
takes (text, schema) and returns a value or raises), or import `score` and call it yourself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus" / "json_public.jsonl"

Impl = Callable[[str, Any], Any]


def _json_loads(text: str, schema: Any) -> Any:
    return json.loads(text)


def _json_repair(text: str, schema: Any) -> Any:
    import json_repair

    return json_repair.loads(text)


def _ftfy_json_repair(text: str, schema: Any) -> Any:
    import ftfy
    import json_repair

    return json_repair.loads(ftfy.fix_text(text))


def _langchain(text: str, schema: Any) -> Any:
    from langchain_core.utils.json import parse_json_markdown

    return parse_json_markdown(text)


def _kgot(text: str, schema: Any) -> Any:
    from kgot_errors.repair import repair

    return repair(text, schema)


class _ThroughGraph:
    """The deterministic layers as users meet them: the compiled graph (no checkpointer, no model)."""

    def __init__(self) -> None:
        import asyncio

        from kgot_errors import build_graph
        from kgot_errors.runtime.context import RecoveryContext

        self.loop = asyncio.new_event_loop()
        self.graph, self.ctx = build_graph(), RecoveryContext()

    def __call__(self, text: str, schema: Any) -> Any:
        from kgot_errors.state import Incident

        incident = Incident.parse({"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": text,
                                   "output_schema": schema}).to_data()
        out = self.loop.run_until_complete(self.graph.ainvoke({"incident": incident}, context=self.ctx))
        if not out["result"]["recovered"]:
            raise ValueError(out["result"]["summary"])
        return out["result"]["value"]


def _kgot_graph(text: str, schema: Any) -> Any:
    global _GRAPH
    if _GRAPH is None:
        _GRAPH = _ThroughGraph()
    return _GRAPH(text, schema)


_GRAPH: _ThroughGraph | None = None

IMPLEMENTATIONS: list[tuple[str, Impl]] = [
    ("json.loads", _json_loads),
    ("json_repair", _json_repair),
    ("ftfy+json_repair", _ftfy_json_repair),
    ("langchain parse_json_markdown", _langchain),
    ("kgot repair", _kgot),
    ("kgot compiled graph", _kgot_graph),
]


def load_cases(path: Path = CORPUS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def same_json(a: Any, b: Any) -> bool:
    """Strict JSON equality: booleans are not numbers, 1 == 1.0, key order ignored."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9) if isinstance(a, float) or isinstance(b, float) else a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _judge(case: dict[str, Any], value: Any, failed: bool) -> tuple[bool, bool, bool]:
    """(scoreable, exact, valid) for one case."""
    alternatives = case.get("alternatives") or []
    scoreable = not case.get("ambiguous") or bool(alternatives)
    from kgot_errors.repair import is_strict_json

    valid = not failed and is_strict_json(value)
    exact = valid and scoreable and (
        (not case.get("ambiguous") and same_json(value, case["expected"]))
        or any(same_json(value, alt) for alt in alternatives)
    )
    return scoreable, exact, valid


def score(impl: Impl, cases: list[dict[str, Any]], *, min_time: float = 1.0) -> dict[str, Any]:
    """Exact / valid / fail per category and overall, and cases per second (corpus repeated
    until `min_time` seconds were spent inside `impl`; accuracy from the first pass)."""
    table: dict[str, dict[str, int]] = {}
    spent, done, first = 0.0, 0, True
    while first or spent < min_time:
        for case in cases:
            started = time.perf_counter()
            try:
                value, failed = impl(case["input"], case.get("schema")), False
            except Exception:  # noqa: BLE001 - a failure is what is being measured
                value, failed = None, True
            spent += time.perf_counter() - started
            done += 1
            if first:
                scoreable, exact, valid = _judge(case, value, failed)
                row = table.setdefault(case["category"], {"n": 0, "scored": 0, "exact": 0, "valid": 0, "fail": 0})
                row["n"] += 1
                row["scored"] += scoreable
                row["exact"] += exact
                row["valid"] += valid
                row["fail"] += failed
        first = False
    total = {key: sum(row[key] for row in table.values()) for key in ("n", "scored", "exact", "valid", "fail")}
    speed = done / spent if spent else math.inf
    return {"by_category": dict(sorted(table.items())), "total": total, "cases_per_s": speed}


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:5.1f}" if b else "  n/a"


def format_results(results: dict[str, dict[str, Any]]) -> str:
    """Exact % per category for each implementation, then overall exact / valid / fail and speed."""
    names = list(results)
    categories = sorted({c for r in results.values() for c in r["by_category"]})
    head = f"{'category':<20} {'n':>4} " + " ".join(f"{name[:16]:>16}" for name in names)
    lines = ["exact % per category", head, "-" * len(head)]
    for cat in categories:
        first = next(iter(results.values()))["by_category"][cat]
        cells = " ".join(
            f"{_pct(r['by_category'][cat]['exact'], r['by_category'][cat]['scored']):>16}" for r in results.values()
        )
        lines.append(f"{cat[:20]:<20} {first['n']:>4} {cells}")
    lines += ["", f"{'implementation':<30} {'exact %':>8} {'valid %':>8} {'fail %':>8} {'cases/s':>10}"]
    for name, r in results.items():
        t = r["total"]
        lines.append(
            f"{name[:30]:<30} {_pct(t['exact'], t['scored']):>8} {_pct(t['valid'], t['n']):>8} "
            f"{_pct(t['fail'], t['n']):>8} {r['cases_per_s']:>10,.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per implementation")
    parser.add_argument("--only", action="append", help="only implementations whose name contains this")
    parser.add_argument("--json", metavar="OUT", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    cases = load_cases(args.corpus)
    chosen = [(n, f) for n, f in IMPLEMENTATIONS if not args.only or any(o in n for o in args.only)]
    for _, impl in chosen:  # imports and caches outside the timed runs
        try:
            impl(cases[0]["input"], cases[0].get("schema"))
        except Exception:  # noqa: BLE001
            pass
    results = {name: score(impl, cases, min_time=args.min_time) for name, impl in chosen}
    print(f"corpus: {args.corpus.name}, {len(cases)} cases; Python {sys.version.split()[0]}")
    print(format_results(results))
    if args.json:
        args.json.write_text(json.dumps({"corpus": args.corpus.name, "results": results}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
