"""Sandbox benchmark: cold start of print(1) per backend against its plain baseline, and 4-way throughput.

    python bench/bench_sandbox.py [--runs 30] [--backends bwrap,docker] [--write bench/RESULTS.md]
                                  [--attacks path/to/run_attacks.py]

bwrap is compared with `subprocess.run([python, "-c", ...])`, docker with the CLI's
`docker run --rm --network none IMAGE python3 -c ...`, each median of N runs interleaved in the
same process. --write replaces (or appends) only the "## Sandbox" section of the results file.
--attacks also runs that attack harness on each backend through bench/attack_shim.py.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kgot_errors.sandbox import Sandbox, get_sandbox
from kgot_errors.sandbox._docker import DEFAULT_IMAGE

CODE = "print(1)"


def _median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _interleaved(a: Callable[[], object], b: Callable[[], object], n: int) -> tuple[float, float]:
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(n):
        for fn, acc in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return statistics.median(ta) * 1000, statistics.median(tb) * 1000


def _checked(sb: Sandbox) -> Callable[[], object]:
    def run() -> None:
        res = sb.run(CODE)
        if res.stdout != "1\n":
            raise SystemExit(f"{sb.name} gave {res!r}")

    return run


def _throughput(sb: Sandbox, total: int, workers: int = 4) -> float:
    left = [total]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            sb.run(CODE)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total / (time.perf_counter() - t0)


def attack_harness(harness: Path, backend: str) -> str:
    """'N/M' attacks contained, from the harness' last line (run as a separate process)."""
    shim = Path(__file__).with_name("attack_shim.py")
    env = {**os.environ, "KGOT_SANDBOX_BACKEND": backend}
    out = subprocess.run([sys.executable, str(harness), f"{shim}:run", "--latency-runs", "0"],
                         capture_output=True, text=True, env=env, check=False, timeout=1800)
    found = re.findall(r"^(\d+/\d+) attacks contained", out.stdout, re.MULTILINE)
    return found[-1] if found else f"error (exit {out.returncode})"


def _baselines(name: str) -> list[tuple[str, list[str]]]:
    if name == "docker":
        docker = shutil.which("docker") or "docker"
        return [("`docker run --rm --network none IMAGE python3 -c` (CLI)",
                 [docker, "run", "--rm", "--network", "none", DEFAULT_IMAGE, "python3", "-c", CODE])]
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return [("`subprocess.run([python, '-c', ...])`", [sys.executable, "-c", CODE]),
            ("same, with the sandbox's flags `python -I -B -S -c`", [base, "-I", "-B", "-S", "-c", CODE])]


def bench(backends: list[str], n: int, harness: Path | None = None) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name in backends:
        sb = get_sandbox(name, max_concurrent=4, timeout=30)  # type: ignore[arg-type]
        run = _checked(sb)
        run()  # warm-up: probe, client, page cache
        rate = _throughput(sb, total=max(20, n))
        attacks = attack_harness(harness, name) if harness else "not run"
        for label, argv in _baselines(name):
            subprocess.run(argv, capture_output=True, check=True)
            baseline = functools.partial(subprocess.run, argv, capture_output=True, check=True)
            ours, base = _interleaved(run, baseline, n)
            rows.append({"backend": name, "ours_ms": ours, "baseline": label, "baseline_ms": base,
                         "ratio": ours / base, "runs_per_s": rate, "attacks": attacks})
    return rows


def markdown(rows: list[dict[str, object]], n: int) -> str:
    lines = [
        "## Sandbox",
        "",
        (
            f"`python bench/bench_sandbox.py --runs {n}` on {platform.node() or 'this machine'} "
            f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}), "
            f"{time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f} at the start. "
            f"Cold start of `{CODE}` (median of {n}, interleaved with the baseline in the same run); "
            "throughput with 4 concurrent runs (max_concurrent=4). Limits: 256 MiB, 0.5 CPU, 64 pids."
        ),
        "",
        "| backend | sandbox run | baseline | baseline run | ratio | 4-way throughput | attack harness |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['ours_ms']:.1f} ms | {r['baseline']} | {r['baseline_ms']:.1f} ms | "
            f"{r['ratio']:.2f}x | {r['runs_per_s']:.1f} runs/s | {r['attacks']} contained |"
        )
    lines += [
        "",
        (
            "Reading: targets are bwrap at most 3x plain `subprocess.run` and docker at most 1.5x the CLI. "
            "Against the interpreter alone with the sandbox's own flags (`-S`: no site-packages, no host .pth "
            "files), bwrap adds a fixed ~20-30 ms: namespaces and ~20 mounts (~6 ms), the in-run supervisor (reads the program from stdin, forks it as the run's uid: ~3-5 ms), "
            "and running inside the run's cgroups with the 0.5 CPU quota (~10 ms in a separate measurement; "
            "cgroup setup and removal themselves take ~1 ms). A docker run is dominated by container "
            "create/start/remove in dockerd, the same work `docker run --rm` does. Throughput is bounded by "
            "the 2 cores. Measured on a machine shared with other test suites: medians move by 20-40% "
            "between runs, the ratios much less."
        ),
        "",
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Sandbox\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--backends", default="bwrap,docker")
    ap.add_argument("--write", type=Path, help="results file whose '## Sandbox' section to replace")
    ap.add_argument("--attacks", type=Path, help="run_attacks.py of the sandbox attack suite, run per backend")
    args = ap.parse_args()
    rows = bench([b for b in args.backends.split(",") if b], args.runs, args.attacks)
    section = markdown(rows, args.runs)
    print(section)
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
