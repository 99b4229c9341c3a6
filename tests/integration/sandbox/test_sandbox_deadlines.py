"""A run keeps its deadline without its caller: a caller killed mid-run leaves nothing running, and its leftovers are reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kgot_errors.sandbox import get_sandbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox suites run as root")

_CALLER = textwrap.dedent("""
    import sys
    from kgot_errors.sandbox import get_sandbox
    sb = get_sandbox(sys.argv[1], timeout=float(sys.argv[2]))
    print("ready", flush=True)
    sb.run("import os, time\\nos.set_inheritable(os.memfd_create(%r, 0), True)\\ntime.sleep(120)" % sys.argv[3])
""")


def _start_caller(backend: str, timeout: float, marker: str) -> subprocess.Popen[bytes]:
    caller = subprocess.Popen([sys.executable, "-c", _CALLER, backend, str(timeout), marker],
                              stdout=subprocess.PIPE, env={**os.environ})
    assert caller.stdout is not None and caller.stdout.readline() == b"ready\n"
    return caller


def _wait_for(predicate, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _run_groups_of(pid: int) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob("*/kgot-sandbox/run-*") if p.name.split("-")[1] == str(pid)]


def test_bwrap_a_killed_caller_leaves_no_process_and_its_cgroups_are_reaped_at_the_next_run(probes, marker: str):
    probes.make_sandbox("bwrap")  # skips unless root
    caller = _start_caller("bwrap", 60, marker)
    try:
        assert _wait_for(lambda: probes.survivors(marker) != [], 15), "the run never started"
        assert _run_groups_of(caller.pid)
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    assert probes.wait_no_survivors(marker, within=5) == [], "the run outlived its killed caller"
    assert _run_groups_of(caller.pid), "expected the dead caller's cgroups to be left for the reaper"
    res = get_sandbox("bwrap", timeout=5).run("print('next')")  # a fresh backend: its first run reaps
    assert res.stdout == "next\n"
    assert _run_groups_of(caller.pid) == [], "the next run did not reap the dead caller's cgroups"


def _containers(sb, *, running: bool) -> list:
    from kgot_errors.sandbox._docker import LABEL

    return sb.backend.client().containers.list(all=not running, filters={"label": LABEL})


def test_docker_a_killed_caller_leaves_no_running_container_and_it_is_reaped_later(probes, marker: str):
    sb = probes.make_sandbox("docker", timeout=5)  # skips (or fails in CI) without a daemon
    before = {c.id for c in _containers(sb, running=False)}
    timeout = 3.0
    caller = _start_caller("docker", timeout, marker)
    started = time.monotonic()
    try:
        assert _wait_for(lambda: {c.id for c in _containers(sb, running=True)} - before, 20), "no container started"
        time.sleep(0.5)
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    ours = [c for c in _containers(sb, running=False) if c.id not in before]
    assert ours, "the killed caller's container should be left for the reaper"
    stopped = _wait_for(lambda: not [c for c in _containers(sb, running=True) if c.id not in before], timeout + 5)
    assert stopped, "the container ran on past its deadline without its caller"
    assert time.monotonic() - started < timeout + 8
    assert probes.wait_no_survivors(marker) == []
    from kgot_errors.sandbox._docker import HOST_GRACE, REAP_MARGIN

    time.sleep(max(0.0, started + timeout + HOST_GRACE + REAP_MARGIN + 1.5 - time.monotonic()))
    res = get_sandbox("docker", timeout=5).run("print('next')")  # a fresh backend: its first run reaps
    assert res.stdout == "next\n"
    left = [c.id for c in _containers(sb, running=False) if c.id in {o.id for o in ours}]
    assert left == [], "the next run did not reap the dead caller's container"
