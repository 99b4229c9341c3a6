"""Sandbox value objects and pure helpers: sizes, limits, results, argv chunking, file names, seccomp, the limiter."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import threading
import time

import pytest
from kgot_errors.errors import SandboxError
from kgot_errors.sandbox import ExecResult, Limits, get_sandbox, parse_size
from kgot_errors.sandbox._code import MAX_CODE_BYTES, check_files, python_argv
from kgot_errors.sandbox._limiter import RunLimiter
from kgot_errors.sandbox._pump import CappedBuffer
from kgot_errors.sandbox._seccomp import seccomp_program


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256m", 256 << 20), ("256M", 256 << 20), ("256mb", 256 << 20), ("256MiB", 256 << 20),
        ("1g", 1 << 30), ("512k", 512 << 10), ("1.5g", 3 << 29), ("1048576", 1 << 20),
        (4096, 4096), ("100b", 100), (" 2 m ", 2 << 20),
    ],
)
def test_parse_size_reads_docker_style_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "m", "12x", "-1m", "0", True, "lots", None])
def test_parse_size_rejects_nonsense(bad):
    with pytest.raises((ValueError, TypeError)):
        parse_size(bad)


def test_limits_default_to_the_original_systems_values():
    lim = Limits()
    assert (lim.timeout, lim.memory, lim.cpus, lim.pids) == (30.0, 256 << 20, 0.5, 64)
    assert lim.output_bytes == 1 << 20 and lim.file_size == 64 << 20 and lim.nofile == 256


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": 0}, {"timeout": float("inf")}, {"cpus": 0}, {"memory": "8m"}, {"pids": 2}, {"nofile": 1.5}],
)
def test_limits_refuse_values_that_would_not_limit_or_not_start(kwargs):
    with pytest.raises(ValueError):
        Limits(**kwargs)


def test_limits_of_rejects_unknown_names_so_typos_never_widen_limits():
    with pytest.raises(TypeError, match="memroy"):
        Limits.of(memroy="1g")
    assert Limits.of(memory="128m", timeout=None).memory == 128 << 20


def test_limits_derived_rlimits_stay_behind_the_wall_timeout():
    lim = Limits(timeout=10, cpus=0.5)
    assert lim.cpu_seconds == 11 and lim.with_timeout(None) is lim and lim.with_timeout(2).timeout == 2.0
    assert lim.address_space >= lim.memory


def test_exec_result_is_plain_json_data_and_round_trips():
    res = ExecResult("out\x00\ufffd", "err", 0, False, None, 0.25, 1234, False, True, "bwrap")
    data = res.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["ok"] is True and ExecResult.from_dict(data) == res


@pytest.mark.parametrize(
    ("exit_code", "timed_out", "killed_by", "ok"),
    [(0, False, None, True), (1, False, None, False), (137, True, "timeout", False), (0, False, "memory", False)],
)
def test_exec_result_ok_means_exit_zero_and_not_killed(exit_code, timed_out, killed_by, ok):
    res = ExecResult("", "", exit_code, timed_out, killed_by, 0.1, None, False, False, "x")
    assert res.ok is ok


def test_small_programs_pass_as_one_isolated_argument():
    argv = python_argv("/usr/bin/python3", "print(1)")
    assert argv == ["/usr/bin/python3", "-I", "-B", "-S", "-c", "print(1)"]
    assert "-S" not in python_argv("python3", "pass", site=True)


def test_large_programs_are_chunked_and_reassembled_exactly():
    code = "s = '''" + ("é" * 90_000) + "'''\nprint(len(s), __name__)\n"
    argv = python_argv(sys.executable, code)
    assert len(argv) > 7 and all(len(a.encode()) < 128 * 1024 for a in argv)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert out.stdout == "90000 __main__\n", out.stderr


def test_oversized_programs_and_nul_bytes_are_refused():
    with pytest.raises(SandboxError):
        python_argv("python3", "x" * (MAX_CODE_BYTES + 1))
    with pytest.raises(SandboxError):
        python_argv("python3", "print('\x00')")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "", "a//b", "./a", "a\x00b"])
def test_scratch_file_names_cannot_leave_the_scratch_dir(name):
    with pytest.raises(SandboxError):
        check_files({name: b""})


def test_scratch_file_names_may_have_subdirectories():
    check_files({"data/input.csv": b"", "main.py": b""})


def test_capped_buffer_keeps_the_head_and_counts_the_rest():
    buf = CappedBuffer(10)
    for _ in range(5):
        buf.add(b"abcdef")
    assert buf.text() == "abcdefabcd" and buf.truncated and buf.total == 30
    assert not CappedBuffer(10).truncated


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_seccomp_program_is_well_formed_bpf(machine):
    prog = seccomp_program(machine)
    assert prog is not None and len(prog) % 8 == 0 and 10 < len(prog) // 8 < 256
    insns = [struct.unpack("=HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    assert insns[-1] == (0x06, 0, 0, 0x7FFF0000)  # ends allowing everything not listed
    unshare = 272 if machine == "x86_64" else 97
    assert any(code == 0x15 and k == unshare for code, _, _, k in insns)


def test_seccomp_program_is_absent_for_unknown_architectures():
    assert seccomp_program("sparc64") is None


@pytest.mark.parametrize("capacity", [1, 2, 3])
def test_limiter_admits_at_most_capacity_threads_in_arrival_order(capacity):
    lim = RunLimiter(capacity)
    inside, peak, admitted = [0], [0], []
    lock = threading.Lock()

    def work(i: int) -> None:
        lim.acquire()
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            admitted.append(i)
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        lim.release()

    for _ in range(capacity):  # hold every slot so that the workers queue up in a known order
        lim.acquire()
    threads = []
    for i in range(8):
        threads.append(threading.Thread(target=work, args=(i,)))
        threads[-1].start()
        while len(lim._waiters) < i + 1:  # worker i is queued before worker i + 1 starts
            time.sleep(0.001)
    for _ in range(capacity):
        lim.release()
    for t in threads:
        t.join()
    assert peak[0] == capacity and lim.active == 0
    if capacity == 1:  # one at a time: the admission order is observable exactly
        assert admitted == list(range(8))


async def test_limiter_async_waiters_do_not_leak_slots_when_cancelled():
    lim = RunLimiter(1)
    await lim.aacquire()
    waiter = asyncio.create_task(lim.aacquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    lim.release()
    assert lim.active == 0
    await asyncio.wait_for(lim.aacquire(), 1)
    lim.release()


async def test_limiter_mixes_threads_and_tasks():
    lim = RunLimiter(1)
    lim.acquire()
    task = asyncio.create_task(lim.aacquire())
    await asyncio.sleep(0.01)
    assert not task.done()
    threading.Timer(0.05, lim.release).start()
    await asyncio.wait_for(task, 2)
    lim.release()
    assert lim.active == 0


def test_get_sandbox_rejects_unknown_backends_and_limits():
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        get_sandbox("chroot")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown sandbox limit"):
        get_sandbox("unsafe-subprocess", timout=3)


def test_importing_the_sandbox_imports_no_docker_sdk_and_starts_nothing():
    code = "import sys, threading, kgot_errors.sandbox\nprint('docker' in sys.modules, threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.split() == ["False", "1"], out.stderr
