"""At most once you can see: a process killed during an operation call, then resumed in a new process.

The operation appends its idempotency key to a log (the side effect, counted at the operation);
every line of the log must be an attempt the thread recorded or a start it reports as outcome-unknown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WORKER = Path(__file__).with_name("at_most_once_worker.py")


def _env() -> dict[str, str]:
    return {**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true", "PYTHONUNBUFFERED": "1"}


def _keys(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def _kill_during_the_call(store: Path, thread: str, log: Path) -> None:
    """Start the recovery, wait until the operation has written its side effect, SIGKILL the process."""
    proc = subprocess.Popen([sys.executable, str(WORKER), "start", str(store), thread, str(log), "0", "-1"],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not _keys(log):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the operation was never called"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _resume(store: Path, thread: str, log: Path, policy: str) -> dict:
    out = subprocess.run([sys.executable, str(WORKER), "resume", str(store), thread, str(log), "0", "0", policy],
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_call_killed_mid_way_is_reported_outcome_unknown_and_rerun_with_the_same_key(tmp_path):
    store, log, thread = tmp_path / "s.sqlite", tmp_path / "calls.log", "amo-1"
    _kill_during_the_call(store, thread, log)
    result = _resume(store, thread, log, "rerun")
    assert result["recovered"] and result["value"]["charged"] == 5
    (call,) = [a for a in result["attempts"] if a["layer"] == "backoff"]
    key = f"kgot:{thread}:2"  # thread id and call number (the incident was call 1)
    assert call["evidence"]["idempotency_key"] == key == result["value"]["key"]
    assert call["evidence"]["outcome_unknown"] == {"starts": 1, "policy": "rerun"}
    # two side effects, both accounted for: the recorded call and the start reported outcome-unknown
    assert _keys(log) == [key, key]


def test_with_the_stop_policy_the_unknown_call_is_not_run_again(tmp_path):
    store, log, thread = tmp_path / "s.sqlite", tmp_path / "calls.log", "amo-2"
    _kill_during_the_call(store, thread, log)
    result = _resume(store, thread, log, "stop")
    assert not result["recovered"]
    (call,) = [a for a in result["attempts"] if a["layer"] == "backoff"]
    assert call["verdict"] == "failed" and "outcome unknown" in call["reason"]
    assert call["evidence"]["outcome_unknown"] == {"starts": 1, "policy": "stop"} and call["evidence"]["final"]
    assert _keys(log) == [f"kgot:{thread}:2"]  # run once, never again
