"""The repair engine against its peers, side by side in one run: repair_json vs json_repair plus a compiled validator.

    python bench/bench_engine.py                 # typical case, public corpus, CLI
    python bench/bench_engine.py --only typical  # one part (typical | corpus | cli)
    python bench/bench_engine.py --json out.json
    git worktree add /tmp/old/kgot_errors COMMIT; python bench/bench_engine.py --before /tmp/old  # vs COMMIT too

- typical: the 1.2 KB fenced, single-quoted, trailing-comma answer with a 12-property schema
  (kgot_errors.testing.typical): `repair_json(text, schema)` against `json_repair.loads(text)` plus
  `is_valid` of a jsonschema validator built once; interleaved runs, median and p90 (CPU time of this
  process, which other load on the machine disturbs far less than wall time).
- corpus: every case of bench/corpus/json_public.jsonl, each timed interleaved against json_repair
  (with a compiled validator where the case has a schema); the p50/p90 of the per-case times and of
  the per-case ratios.
- cli: `kgot-errors repair FILE --schema S --no-checkpoint`, and the same with the default store (a SQLite file
  in a fresh XDG_DATA_HOME), against `python -m json_repair FILE --schema S` on examples/broken_output.txt: wall
  time (median) and peak RSS (max) of each process, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "bench" / "corpus" / "json_public.jsonl"
EXAMPLE, EXAMPLE_SCHEMA = ROOT / "examples" / "broken_output.txt", ROOT / "examples" / "review.schema.json"


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _interleaved(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[float]]:
    """CPU seconds of each run (time.process_time: steadier than wall time on a machine others load too)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    clock = time.process_time
    for _ in range(runs):
        for name, fn in fns.items():
            started = clock()
            fn()
            times[name].append(clock() - started)
    return times


def _compiled(schema: Any) -> Callable[[Any], bool]:
    import jsonschema

    if schema is None:
        return lambda value: True
    return jsonschema.validators.validator_for(schema)(schema).is_valid


def _engine() -> Callable[..., Any]:
    """repair_json; in a checkout from before kgot_errors.repair (run with --before), the layers as repair() ran
    them, answering with the same fields."""
    try:
        from kgot_errors.repair import repair_json

        return repair_json
    except ImportError:
        from types import SimpleNamespace

        from kgot_errors.nodes._json import parser_layer, unicode_layer  # type: ignore[import-not-found]
        from kgot_errors.nodes._schema import load_schema  # type: ignore[import-not-found]

        def layers(text: str, schema: Any = None) -> Any:
            loaded = load_schema(schema)
            out = unicode_layer(text, loaded)
            out = out if out.ok else parser_layer(text, loaded)
            verdict = ("degraded" if out.degraded else "recovered") if out.ok else "failed"
            return SimpleNamespace(verdict=verdict, value=out.value)

        return layers


def _typical_case() -> tuple[str, dict[str, Any]]:
    """This checkout's typical case (testing/typical.py, read by path: --before runs import an older package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_typical", ROOT / "testing" / "typical.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ANSWER, module.SCHEMA


def typical(runs: int) -> dict[str, Any]:
    import json_repair

    repair_json = _engine()
    ANSWER, SCHEMA = _typical_case()  # noqa: N806

    valid = _compiled(SCHEMA)
    peer = lambda: valid(json_repair.loads(ANSWER))  # noqa: E731
    mine = lambda: repair_json(ANSWER, SCHEMA)  # noqa: E731
    assert peer() and mine().verdict == "recovered" and mine().value == json_repair.loads(ANSWER)
    for _ in range(20):  # warm caches and the allocator on both sides
        peer(), mine()
    times = _interleaved({"json_repair + compiled validator": peer, "repair_json": mine}, runs)
    out = {name: {"median_ms": statistics.median(t) * 1e3, "p90_ms": _p(t, 0.9) * 1e3} for name, t in times.items()}
    ratio = out["repair_json"]["median_ms"] / out["json_repair + compiled validator"]["median_ms"]
    return {"bytes": len(ANSWER.encode()), "runs": runs, "times": out, "ratio_median": ratio}


def corpus(repeats: int) -> dict[str, Any]:
    import json_repair

    repair_json = _engine()
    cases = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    mine_t, peer_t, ratios = [], [], []
    for case in cases:
        text, schema = case["input"], case.get("schema")
        valid = _compiled(schema)

        def peer(text: str = text, valid: Callable[[Any], bool] = valid) -> None:
            try:
                valid(json_repair.loads(text))
            except Exception:  # noqa: BLE001 - json_repair raising on a case is its answer
                pass

        def mine(text: str = text, schema: Any = schema) -> None:
            repair_json(text, schema)

        mine(), peer()
        times = _interleaved({"peer": peer, "mine": mine}, repeats)
        m, p = statistics.median(times["mine"]), statistics.median(times["peer"])
        mine_t.append(m)
        peer_t.append(p)
        ratios.append(m / p if p else 1.0)
    summary = {
        "cases": len(cases), "repeats": repeats,
        "repair_json_ms": {"p50": _p(mine_t, 0.5) * 1e3, "p90": _p(mine_t, 0.9) * 1e3, "max": max(mine_t) * 1e3},
        "json_repair_ms": {"p50": _p(peer_t, 0.5) * 1e3, "p90": _p(peer_t, 0.9) * 1e3, "max": max(peer_t) * 1e3},
        "per_case_ratio": {"p50": _p(ratios, 0.5), "p90": _p(ratios, 0.9), "max": max(ratios)},
    }
    summary["p90_ratio"] = summary["repair_json_ms"]["p90"] / summary["json_repair_ms"]["p90"]
    return summary


_LAUNCHER = """import json, os, sys, time
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=[
    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(json.dumps([time.perf_counter() - started, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)]))
"""


def _run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one process, started by a small launcher: a child's peak RSS
    counts the memory of the process it was spawned from, so that one must be smaller than any measured."""
    env = {k: v for k, v in (env or os.environ).items() if not k.startswith(("KGOT_", "OPENAI_", "LANGSMITH_"))}
    done = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *argv], capture_output=True, text=True, env=env,
                          check=True)
    wall, rss, code = json.loads(done.stdout)
    return wall, rss, code


def cli(runs: int, before: str | None = None) -> dict[str, Any]:
    kgot = Path(sys.executable).with_name("kgot-errors")
    repair = ["repair", str(EXAMPLE), "--schema", str(EXAMPLE_SCHEMA), "--no-checkpoint"]
    store = tempfile.mkdtemp(prefix="kgot-bench-store-")  # the default store's file lives under XDG_DATA_HOME
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "kgot-errors repair --no-checkpoint": ([str(kgot), *repair], None),
        "kgot-errors repair (default store)": ([str(kgot), *repair[:-1]], {**os.environ, "XDG_DATA_HOME": store}),
        "python -m json_repair --schema": ([sys.executable, "-m", "json_repair", str(EXAMPLE), "--schema",
                                            str(EXAMPLE_SCHEMA)], None),
    }
    if before:  # a folder holding another checkout as kgot_errors/, put first on the path
        commands["the same, from --before"] = ([sys.executable, "-m", "kgot_errors.cli", *repair],
                                               {**os.environ, "PYTHONPATH": before})
    seen: dict[str, list[tuple[float, float, int]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, env) in commands.items():
            seen[name].append(_run(argv, env))
    out = {}
    for name, results in seen.items():
        assert all(code == 0 for _, _, code in results), (name, results)
        walls, rss = [w for w, _, _ in results], [r for _, r, _ in results]
        out[name] = {"wall_median_s": statistics.median(walls), "wall_p90_s": _p(walls, 0.9),
                     "peak_rss_max_mib": max(rss), "peak_rss_median_mib": statistics.median(rss)}
    peer = out["python -m json_repair --schema"]
    for c in out.values():
        c["wall_ratio"] = c["wall_median_s"] / peer["wall_median_s"]
        c["rss_ratio"] = c["peak_rss_max_mib"] / peer["peak_rss_max_mib"]
    mine = out["kgot-errors repair --no-checkpoint"]
    return {"runs": runs, "commands": out, "wall_ratio": mine["wall_ratio"], "rss_ratio": mine["rss_ratio"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["typical", "corpus", "cli"])
    parser.add_argument("--runs", type=int, default=400, help="typical-case runs per side (default 400)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per corpus case and side (default 7)")
    parser.add_argument("--cli-runs", type=int, default=15, help="processes per CLI command (default 15)")
    parser.add_argument("--before", metavar="DIR",
                        help="also time the CLI of another checkout: DIR holds it as kgot_errors/ (git worktree add "
                             "DIR/kgot_errors COMMIT)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    if args.only in (None, "typical"):
        r = results["typical"] = typical(args.runs)
        print(f"typical case ({r['bytes']} bytes, 12-property schema), {r['runs']} interleaved runs:")
        for name, t in r["times"].items():
            print(f"  {name:34} median {t['median_ms']:7.3f} ms   p90 {t['p90_ms']:7.3f} ms")
        print(f"  repair_json / (json_repair + compiled validator): {r['ratio_median']:.2f}x (medians)")
    if args.only in (None, "corpus"):
        r = results["corpus"] = corpus(args.repeats)
        print(f"public corpus ({r['cases']} cases, median of {r['repeats']} interleaved runs per case):")
        for name in ("repair_json_ms", "json_repair_ms"):
            t = r[name]
            print(f"  {name[:-3]:12} p50 {t['p50']:7.3f} ms   p90 {t['p90']:7.3f} ms   max {t['max']:8.3f} ms")
        q = r["per_case_ratio"]
        print(f"  p90 time ratio {r['p90_ratio']:.2f}x; per-case ratio p50 {q['p50']:.2f}x p90 {q['p90']:.2f}x "
              f"max {q['max']:.1f}x")
    if args.before and args.only in (None, "typical", "corpus"):
        for part in ("typical", "corpus") if args.only is None else (args.only,):
            argv = [sys.executable, str(Path(__file__).resolve()), "--only", part, "--runs", str(args.runs),
                    "--repeats", str(args.repeats), "--json", str(Path(args.json or os.devnull))]
            if args.json:
                argv[-1] = f"{args.json}.before-{part}"
            env = {**os.environ, "PYTHONPATH": args.before}
            done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
            print(f"before ({args.before}): " + done.stdout.rstrip().replace("\n", "\n  "))
    if args.only in (None, "cli"):
        r = results["cli"] = cli(args.cli_runs, args.before)
        print(f"CLI on {EXAMPLE.relative_to(ROOT)}, {r['runs']} interleaved processes each:")
        for name, c in r["commands"].items():
            print(f"  {name:36} wall median {c['wall_median_s']:.3f} s ({c['wall_ratio']:.2f}x)   peak RSS max "
                  f"{c['peak_rss_max_mib']:.1f} MiB ({c['rss_ratio']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
