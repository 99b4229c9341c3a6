"""Batches on every core: `kgot-errors repair --jsonl --no-checkpoint --workers N` against the engine's own
single-core rate, measured in one run on the same lines.

    python bench/bench_batch.py                 # 10,000 lines (the public corpus, repeated), 2 workers
    python bench/bench_batch.py --lines 2000 --workers 2 --runs 3

Figures: the engine alone (repair_json in a loop, this process: lines/s on one core), repair_many with N
workers (in-process API), and the CLI end to end (process start and imports included) with --workers 1 and N.
The target reads `cli N workers / (N x engine)`: the share of N cores' worth of engine work the CLI delivers.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus" / "json_public.jsonl"


def _lines(count: int) -> list[dict]:
    cases = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for i in range(count):
        case = cases[i % len(cases)]
        line = {"id": i, "error_type": "json.decoder.JSONDecodeError", "message": "m", "content": case["input"]}
        if case.get("schema") is not None:
            line["output_schema"] = case["schema"]
        out.append(line)
    return out


def _engine(lines: list[dict]) -> float:
    from kgot_errors.repair import repair_json

    started = time.perf_counter()
    for line in lines:
        repair_json(line["content"], line.get("output_schema"))
    return len(lines) / (time.perf_counter() - started)


def _many(lines: list[dict], workers: int) -> float:
    from kgot_errors.repair import repair_many

    started = time.perf_counter()
    n = sum(1 for _ in repair_many(((x["content"], x.get("output_schema")) for x in lines), workers=workers))
    return n / (time.perf_counter() - started)


def _cli(path: str, workers: int, count: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGOT_", "OPENAI_", "LANGSMITH_"))}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kgot_errors.cli", "repair", "--jsonl", path, "--no-checkpoint",
                           "--workers", str(workers)], capture_output=True, env=env, timeout=3600)
    took = time.perf_counter() - started
    printed = done.stdout.count(b"\n")
    if printed != count:
        raise SystemExit(f"the CLI printed {printed} of {count} lines (exit {done.returncode}): "
                         f"{done.stderr.decode()[-500:]}")
    return count / took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000, help="JSONL lines (default 10000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    args = parser.parse_args(argv)
    lines = _lines(args.lines)
    rates: dict[str, list[float]] = {"engine, 1 core": [], f"repair_many, {args.workers} workers": [],
                                     "cli --workers 1": [], f"cli --workers {args.workers}": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "batch.jsonl")
        Path(path).write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        for round_no in range(args.runs):
            rates["engine, 1 core"].append(_engine(lines))
            rates[f"repair_many, {args.workers} workers"].append(_many(lines, args.workers))
            rates["cli --workers 1"].append(_cli(path, 1, len(lines)))
            rates[f"cli --workers {args.workers}"].append(_cli(path, args.workers, len(lines)))
            print(f"round {round_no + 1}/{args.runs} done", file=sys.stderr, flush=True)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    engine = medians["engine, 1 core"]
    print(f"{args.lines:,} lines, {args.workers} workers, {os.cpu_count()} CPUs, median of {args.runs} rounds")
    print("| variant | lines/s | vs engine on 1 core | share of N cores' engine work |")
    print("|---|---:|---:|---:|")
    for name, rate in medians.items():
        print(f"| {name} | {rate:,.0f} | {rate / engine:.2f}x | {rate / (engine * args.workers):.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
