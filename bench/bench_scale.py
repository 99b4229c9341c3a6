"""Durability at scale: throughput by store and concurrency, and memory over many sequential recoveries.

    python bench/bench_scale.py [--n N] [--rss-n M] [--postgres URL] [--json OUT]

1. Incidents per second for deterministic recoveries (broken JSON that parser_fix repairs) through
   `arecover_many` (one open store, bounded concurrency) at concurrency 1, 10 and 100, with no
   checkpointer, SQLite (a temp file) and PostgreSQL (`--postgres`, else KGOT_TEST_POSTGRES_URL, else
   one started here with .ci/postgres.sh). Target: checkpointed at least 25% of no-checkpointer at
   concurrency 10.
2. RSS growth over M (default 10,000) sequential recoveries with the SQLite store, after a warm-up of
   200 (target under 50 MB): `await arecover(..., checkpointer=path)` per incident (which opens the
   store each time), and the stream `arecover_iter(max_concurrency=1)` through one open store; then,
   reported, `arecover_many(max_concurrency=1)`, which keeps all M results to return them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONCURRENCY = (1, 10, 100)
WARMUP = 200


def _incidents(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"error_type": "json.decoder.JSONDecodeError", "message": "Expecting property name enclosed in "
             "double quotes", "content": f"{{'i': {i}, 'ok': True,}}"} for i in range(start, start + n)]


def _settings() -> Any:
    from kgot_errors.runtime.settings import load_settings

    return load_settings(environ={})  # no LLM, no escalation: deterministic layers only


def rss_mb() -> float:
    """Current resident set size (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, as a fallback


def _check(results: list[Any], n: int) -> None:
    bad = [r for r in results if not r.recovered]
    if len(results) != n or bad:
        raise SystemExit(f"expected {n} recoveries, got {len(results)} ({len(bad)} not recovered: "
                         f"{bad[0].summary if bad else ''})")


async def throughput(stores: dict[str, Any], n: int) -> dict[str, dict[int, float]]:
    from kgot_errors.graph.recover import arecover_many

    settings = _settings()
    out: dict[str, dict[int, float]] = {}
    for label, store in stores.items():
        _check(await arecover_many(_incidents(50), max_concurrency=10, checkpointer=store, settings=settings), 50)
        out[label] = {}
        for c in CONCURRENCY:
            incidents = _incidents(n, start=c * 1_000_000)
            gc.collect()
            t0 = time.perf_counter()
            results = await arecover_many(incidents, max_concurrency=c, checkpointer=store, settings=settings)
            elapsed = time.perf_counter() - t0
            _check(results, n)
            out[label][c] = n / elapsed
            print(f"  {label:<10} concurrency {c:>3}: {n / elapsed:8.1f} incidents/s", flush=True)
    return out


async def rss_growth(path: str, n: int) -> dict[str, float]:
    from kgot_errors.graph.recover import arecover, arecover_iter, arecover_many

    settings = _settings()
    out: dict[str, float] = {}
    for i, inc in enumerate(_incidents(WARMUP, start=10_000_000)):
        assert (await arecover(inc, checkpointer=path, settings=settings)).recovered, i
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    for i, inc in enumerate(_incidents(n, start=20_000_000)):
        if not (await arecover(inc, checkpointer=path, settings=settings)).recovered:
            raise SystemExit(f"sequential recovery {i} failed")
    out["per_call_s"] = time.perf_counter() - t0
    gc.collect()
    after = rss_mb()
    out.update(per_call_before_mb=before, per_call_after_mb=after, per_call_growth_mb=after - before)
    print(f"  arecover per incident ({n}): RSS {before:.1f} -> {after:.1f} MB ({after - before:+.1f} MB), "
          f"{out['per_call_s']:.1f} s", flush=True)

    async def streamed() -> int:
        done = 0
        async for _, result in arecover_iter(_incidents(n, start=30_000_000), max_concurrency=1, checkpointer=path,
                                             settings=settings):
            if not result.recovered:
                raise SystemExit(f"streamed recovery {done} failed")
            done += 1
        return done

    for label, run in (("one_store", streamed),
                       ("kept", lambda: arecover_many(_incidents(n, start=40_000_000), max_concurrency=1,
                                                      checkpointer=path, settings=settings))):
        gc.collect()
        before = rss_mb()
        t0 = time.perf_counter()
        got = await run()
        out[f"{label}_s"] = time.perf_counter() - t0
        if label == "kept":
            _check(got, n)
        gc.collect()
        after = rss_mb()
        del got
        out.update({f"{label}_before_mb": before, f"{label}_after_mb": after, f"{label}_growth_mb": after - before})
        what = ("arecover_iter(max_concurrency=1), one open store" if label == "one_store"
                else "arecover_many(max_concurrency=1), all results kept")
        print(f"  {what} ({n}): RSS {before:.1f} -> {after:.1f} MB ({after - before:+.1f} MB), "
              f"{out[f'{label}_s']:.1f} s", flush=True)
    return out


class _Postgres:
    """A throwaway PostgreSQL from .ci/postgres.sh, started only when no URL was given."""

    def __init__(self) -> None:
        self.state: Path | None = None

    def start(self) -> str:
        self.state = Path(tempfile.mkdtemp(prefix="kgot-bench-pg-"))
        self.state.chmod(0o755)  # postgres (another user) must reach it
        out = subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh"), "start", str(self.state)],
                             capture_output=True, text=True, timeout=300, check=False)
        if out.returncode != 0:
            raise SystemExit(f"could not start PostgreSQL: {out.stderr.strip()[-500:]}")
        return out.stdout.strip().split("=", 1)[1]

    def stop(self) -> None:
        if self.state is not None:
            subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh"), "stop", str(self.state)],
                           capture_output=True, timeout=60, check=False)
            shutil.rmtree(self.state, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="incidents per throughput cell (default 1000)")
    ap.add_argument("--rss-n", type=int, default=10_000, help="sequential incidents for RSS (default 10000)")
    ap.add_argument("--postgres", metavar="URL", help="PostgreSQL URL (default: KGOT_TEST_POSTGRES_URL, "
                    "else start one with .ci/postgres.sh)")
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = ap.parse_args()

    pg = _Postgres()
    url = args.postgres or os.environ.get("KGOT_TEST_POSTGRES_URL") or pg.start()
    results: dict[str, Any] = {"n": args.n, "rss_n": args.rss_n}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"RSS over {args.rss_n} sequential recoveries, SQLite store (after a warm-up of {WARMUP}):")
            results["rss"] = asyncio.run(rss_growth(str(Path(tmp) / "rss.sqlite"), args.rss_n))
            print(f"throughput, {args.n} incidents per cell, arecover_many:")
            stores = {"none": None, "sqlite": str(Path(tmp) / "scale.sqlite"), "postgres": url}
            results["throughput"] = asyncio.run(throughput(stores, args.n))
    finally:
        pg.stop()

    t = results["throughput"]
    print()
    print(f"| store | {' | '.join(f'c={c}' for c in CONCURRENCY)} |")
    print(f"|---|{'---|' * len(CONCURRENCY)}")
    for label, row in t.items():
        print(f"| {label} | {' | '.join(f'{row[c]:.0f}/s' for c in CONCURRENCY)} |")
    results["ratio_c10"] = {s: t[s][10] / t["none"][10] for s in ("sqlite", "postgres")}
    for s, r in results["ratio_c10"].items():
        print(f"{s} / none at concurrency 10: {r:.0%} (target >= 25%: {'met' if r >= 0.25 else 'NOT met'})")
    r = results["rss"]
    for key, what in (("per_call", "arecover per incident"), ("one_store", "arecover_iter, one open store")):
        grew = r[f"{key}_growth_mb"]
        print(f"RSS growth, {what}: {grew:+.1f} MB over {args.rss_n} (target < 50 MB: "
              f"{'met' if grew < 50 else 'NOT met'})")
    print(f"RSS growth, arecover_many keeping all {args.rss_n} results: {r['kept_growth_mb']:+.1f} MB (reported)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
