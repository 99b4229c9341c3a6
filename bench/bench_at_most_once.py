"""SIGKILL during operation calls, then resume: is every side effect recorded or reported outcome-unknown?

    python bench/bench_at_most_once.py [--runs 30] [--seed 1]

Each run starts a recovery in a subprocess (tests/integration/at_most_once_worker.py) whose
operation appends its idempotency key to a log before answering (the side effect, counted at the
operation), fails transiently 0-3 times, and takes 0-300 ms. The process is SIGKILLed at a random
moment (just after a side effect, or at a random time), resumed, maybe killed again, and resumed
until the thread finishes. Then every logged call is checked against the thread's attempts: a call
is accounted for when an attempt recorded it or an attempt reported its start as outcome-unknown.
Prints one JSON line: runs, kills, calls, recorded, reported unknown, unseen duplicates, unrecorded.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "integration" / "at_most_once_worker.py"
ENV = {**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true", "PYTHONUNBUFFERED": "1"}


def _lines(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _run(mode: str, store: Path, thread: str, log: Path, fails: int, hold: float, kill: tuple[str, float] | None,
         ) -> tuple[bool, dict | None]:
    """One process; `kill` = ("after-call", jitter) or ("at", seconds). Returns (killed, result)."""
    proc = subprocess.Popen([sys.executable, str(WORKER), mode, str(store), thread, str(log), str(fails), str(hold)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started, before = time.monotonic(), _lines(log)
    killed = False
    while proc.poll() is None and kill is not None:
        how, value = kill
        if (how == "at" and time.monotonic() - started >= value) or (how == "after-call" and _lines(log) > before):
            if how == "after-call":
                time.sleep(value)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
            break
        if time.monotonic() - started > 120:
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=180)
    if killed:
        return True, None
    if proc.returncode != 0:
        raise RuntimeError(f"worker {mode} failed ({proc.returncode}):\n{err[-2000:]}")
    return False, json.loads(out.strip().splitlines()[-1])


def _account(log: Path, result: dict) -> dict[str, int]:
    calls = collections.Counter(line.split()[0] for line in log.read_text().splitlines()) if log.exists() else {}
    recorded: collections.Counter[str] = collections.Counter()
    unknown: collections.Counter[str] = collections.Counter()
    for a in result["attempts"]:
        ev = a["evidence"]
        key = ev.get("idempotency_key")
        if a["layer"] != "backoff" or key is None:
            continue
        unknown[key] += int((ev.get("outcome_unknown") or {}).get("starts", 0))
        made = ev.get("calls", 1) != 0 and not (ev.get("outcome_unknown") or {}).get("policy") == "stop"
        recorded[key] += int(made)
    unseen = sum(max(0, n - recorded[k] - unknown[k]) for k, n in calls.items())
    unrecorded = sum(n for k, n in calls.items() if recorded[k] == 0 and unknown[k] == 0)
    return {"calls": sum(calls.values()), "recorded": sum(min(recorded[k], n) for k, n in calls.items()),
            "reported_unknown": sum(unknown.values()), "unseen_duplicates": unseen, "unrecorded": unrecorded,
            "unknown_without_a_call": sum(max(0, recorded[k] + unknown[k] - calls.get(k, 0)) for k in recorded)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    totals: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kgot-amo-") as tmp:
        for run in range(args.runs):
            store, log, thread = Path(tmp) / f"{run}.sqlite", Path(tmp) / f"{run}.log", f"amo-{run}"
            fails, hold = rng.randint(0, 3), rng.choice([0.0, 0.05, 0.3])
            mode, result, kills = "start", None, 0
            while result is None:
                kill = None
                if kills < 3 and rng.random() < (0.9 if mode == "start" else 0.5):
                    kill = ("after-call", rng.choice([0.0, 0.001, 0.02, 0.2])) if rng.random() < 0.7 else \
                        ("at", rng.uniform(0.5, 4.0))
                killed, result = _run(mode, store, thread, log, fails, hold, kill)
                kills += killed
                mode = "resume" if (store.exists() and _resumable(store, thread)) or mode == "resume" else "start"
            figures = _account(log, result)
            totals.update(figures)
            totals["kills"] += kills
            totals["recovered"] += int(result["recovered"])
            if figures["unseen_duplicates"] or figures["unrecorded"]:
                print(json.dumps({"run": run, **figures, "attempts": result["attempts"]}), file=sys.stderr)
    print(json.dumps({"runs": args.runs, **dict(totals), "seconds": round(time.monotonic() - started, 1)}))


def _resumable(store: Path, thread: str) -> bool:
    """A thread exists in the store (a kill before the first checkpoint leaves none: start again)."""
    import sqlite3

    try:
        with sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1", (thread,)).fetchone() is not None
    except sqlite3.Error:
        return False


if __name__ == "__main__":
    main()
