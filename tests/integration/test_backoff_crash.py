"""A process killed with SIGKILL mid-backoff; a new process resumes the thread at the same try, none lost or redone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kgot_errors import history
from kgot_errors.runtime.settings import Settings

WORKER = Path(__file__).with_name("backoff_crash_worker.py")


def _env() -> dict[str, str]:
    return {**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true", "PYTHONUNBUFFERED": "1"}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"worker exited {proc.returncode} before blocking:\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("worker never reached the wait before try 3")


def test_killed_during_the_wait_before_try_3_resumes_at_try_3_in_a_new_process(flaky_server, tmp_path):
    flaky_server.script(503, 503, 503, 503)  # the original call and tries 1-3 fail; try 4 is answered
    url = f"{flaky_server.url}/data"
    store, thread_id, ready = str(tmp_path / "crash.sqlite"), "crash-1", tmp_path / "blocked.json"

    first = subprocess.Popen([sys.executable, str(WORKER), "start", store, thread_id, url, str(ready)],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        blocked = _wait_for(ready, first)
        assert blocked["pid"] == first.pid
        assert flaky_server.requests == 3  # the original call, try 1, try 2
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
        first.stdout.close()
        first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    assert blocked["waits"][0] == 1.0 and 1.0 <= blocked["waits"][1] <= 2.0

    # what survived the kill: tries 1 and 2, and backoff is next
    paused = history(thread_id, checkpointer=store, settings=Settings())
    assert [a.try_no for a in paused["attempts"]] == [1, 2]
    assert paused["next"] == ["backoff"] and not paused["finished"]

    second = subprocess.run([sys.executable, str(WORKER), "resume", store, thread_id, url, "-"], env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout.strip().splitlines()[-1])
    attempts = out["result"]["attempts"]
    assert [(a["layer"], a["try_no"], a["verdict"]) for a in attempts] == [
        ("backoff", 1, "failed"), ("backoff", 2, "failed"), ("backoff", 3, "failed"), ("backoff", 4, "recovered")]
    assert [a["evidence"]["call"] for a in attempts] == [2, 3, 4, 5]
    assert out["result"]["recovered"] and out["result"]["value"] == {"ok": True, "request": 5}
    assert flaky_server.requests == 5  # no call lost, none repeated
    # the resumed process waited only for tries 3 and 4, from their own windows
    assert [a["evidence"]["wait_window_s"] for a in attempts[2:]] == [[1.0, 4.0], [1.0, 8.0]]
    assert len(out["waits"]) == 2 and 1.0 <= out["waits"][0] <= 4.0 and 1.0 <= out["waits"][1] <= 8.0

    final = history(thread_id, checkpointer=store, settings=Settings())
    assert final["finished"] and [a.try_no for a in final["attempts"]] == [1, 2, 3, 4]
