"""The bwrap backend: limits reach the code, nothing is left behind, the cap on concurrent runs, auto, compat."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
from kgot_errors.errors import SandboxUnavailable
from kgot_errors.sandbox import PythonExecutorManager, Sandbox, get_sandbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the bwrap backend tests run as root")


@pytest.fixture
def bwrap(probes) -> Sandbox:
    return probes.make_sandbox("bwrap", timeout=5)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_hundred_runs_leave_no_process_cgroup_mount_fd_or_thread_behind(bwrap: Sandbox, probes, marker: str):
    code = f"""
import os, sys
open("scratch.txt", "w").write("x" * 1000)
if os.fork() == 0:
    os.setsid()
    os.execv(sys.executable, [sys.executable, "-S", "-c", "import time; time.sleep(30)", "{marker}"])
print("ok")
"""
    bwrap.run("print(0)")  # warm-up: lazy setup happens once
    fds, threads, before = _fds(), threading.active_count(), probes.leftovers()
    for i in range(100):
        res = bwrap.run(code)
        assert res.ok and res.stdout == "ok\n", (i, res)
    assert probes.wait_no_survivors(marker) == []
    after = probes.leftovers()
    assert after["cgroups"] == [] and after["mounts"] == before["mounts"]
    assert set(after["temps"]) <= set(before["temps"]), "temp dirs left behind"
    assert _fds() == fds, "file descriptors leaked in the calling process"
    assert threading.active_count() == threads


def test_limits_reach_the_code_as_rlimits_and_cgroup_caps(probes):
    sb = probes.make_sandbox("bwrap", timeout=4, pids=16, nofile=64, file_size="1m")
    code = """
import os, resource
print("nofile", resource.getrlimit(resource.RLIMIT_NOFILE))
print("fsize", resource.getrlimit(resource.RLIMIT_FSIZE))
print("core", resource.getrlimit(resource.RLIMIT_CORE))
try:
    open("big", "wb").write(b"x" * (2 << 20)); print("big write ok")
except OSError as e:
    print("big write refused", e.errno)
kids = 0
try:
    for _ in range(40):
        if os.fork() == 0:
            import time; time.sleep(3); os._exit(0)
        kids += 1
except OSError:
    pass
print("kids", kids)
"""
    res = sb.run(code)
    assert "nofile (64, 64)" in res.stdout and f"fsize ({1 << 20}, {1 << 20})" in res.stdout
    assert "core (0, 0)" in res.stdout and "big write refused 27" in res.stdout
    kids = int(res.stdout.split("kids ")[1].split()[0])
    assert 5 <= kids < 16, res.stdout


def test_memory_limit_is_enforced_and_peak_memory_reported(probes):
    sb = probes.make_sandbox("bwrap", timeout=5, memory="64m")
    small = sb.run("x = b'a' * (20 << 20)\nprint('fine')")
    assert small.ok and small.peak_memory is not None and (20 << 20) < small.peak_memory <= (64 << 20)
    big = sb.run("x = [b'a' * (16 << 20) for _ in range(10)]\nprint('too much')")
    assert big.killed_by == "memory" and big.exit_code == 137 and "too much" not in big.stdout


def test_large_programs_travel_in_chunks(bwrap: Sandbox):
    code = "data = [\n" + "".join(f"    {i},\n" for i in range(40000)) + "]\nprint(sum(data), len(data))\n"
    assert len(code) > 250_000
    res = bwrap.run(code)
    assert res.ok and res.stdout == f"{sum(range(40000))} 40000\n"


def test_sync_runs_never_exceed_max_concurrent(probes):
    spans = probes.concurrent_spans(get_sandbox("bwrap", max_concurrent=2, timeout=10), 6)
    assert len(spans) == 6 and probes.max_overlap(spans) == 2


async def test_async_runs_never_exceed_max_concurrent_and_do_not_block_the_loop(probes):
    sb = get_sandbox("bwrap", max_concurrent=3, timeout=10)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    tick = asyncio.create_task(ticker())
    t0 = time.monotonic()
    results = await asyncio.gather(*(sb.arun(probes.span_code) for _ in range(7)))
    elapsed = time.monotonic() - t0
    tick.cancel()
    spans = [tuple(map(float, r.stdout.split())) for r in results]
    assert probes.max_overlap(spans) == 3
    assert ticks >= elapsed / 0.05 * 0.25, "the event loop was blocked while runs waited"


def test_unsafe_backend_is_explicit_and_warns_on_every_run():
    sb = get_sandbox("unsafe-subprocess", timeout=5)
    for _ in range(2):
        with pytest.warns(RuntimeWarning, match="WITHOUT isolation"):
            assert sb.run("print(6 * 7)").stdout == "42\n"


def test_auto_uses_bwrap_when_docker_is_not_configured(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr("kgot_errors.sandbox._docker._DEFAULT_SOCKET", "/nonexistent/docker.sock")
    sb = get_sandbox("auto", timeout=5)
    assert sb.name == "bwrap" and sb.run("print(1)").ok


def test_auto_falls_back_to_bwrap_when_docker_is_unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    assert get_sandbox("auto", timeout=5).name == "bwrap"


def test_auto_refuses_to_run_code_when_nothing_isolates(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    with pytest.raises(SandboxUnavailable) as err:
        get_sandbox("auto", bwrap=str(tmp_path / "no-bwrap"))
    text = str(err.value)
    assert "docker" in text and "bwrap" in text and "unsafe-subprocess" in text


def test_python_executor_manager_keeps_the_original_result_shape(probes):
    probes.make_sandbox("bwrap")  # skips where bwrap cannot run
    mgr = PythonExecutorManager(default_timeout=5, backend="bwrap")
    ok = mgr.execute_code_safely("print(21 * 2)", execution_context="Mathematical calculation")  # prose, not code
    assert ok["success"] is True and ok["output"] == "42\n" and ok["error"] == ""
    assert isinstance(ok["execution_time"], float) and ok["backend"] == "bwrap"
    bad = mgr.execute_code_safely("raise ValueError('boom')")
    assert bad["success"] is False and "ValueError: boom" in bad["error"] and bad["exit_code"] == 1
    slow = mgr.execute_code_safely("import time; time.sleep(10)", timeout=1)
    assert slow["success"] is False and slow["timed_out"] is True and "timed out" in slow["error"]


def test_stale_run_cgroups_of_dead_owners_are_killed_and_removed(bwrap: Sandbox):
    import subprocess

    host = bwrap.backend._cgroups()  # type: ignore[attr-defined]
    dirs = [base / "run-999999999-stale0000000" for base in host.bases.values()]
    for d in dirs:
        d.mkdir()
    straggler = subprocess.Popen(["sleep", "60"])
    for d in dirs:
        (d / "cgroup.procs").write_text(str(straggler.pid))
    assert bwrap.cleanup() == len(dirs)
    assert straggler.wait(5) == -9
    assert not any(d.exists() for d in dirs)


def test_code_never_runs_when_the_cgroup_cannot_be_joined(bwrap: Sandbox, monkeypatch: pytest.MonkeyPatch):
    from kgot_errors.errors import SandboxError
    from kgot_errors.sandbox._cgroup import RunCgroup

    monkeypatch.setattr(RunCgroup, "procs_files", property(lambda self: ["/proc/kgot-no-such/cgroup.procs"]))
    with pytest.raises(SandboxError, match="could not start"):
        bwrap.run("print('RAN')")
