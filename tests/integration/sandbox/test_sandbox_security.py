"""The sandbox's own security suite, on every backend: each threat is judged from the host side."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import pytest
from kgot_errors.sandbox import Sandbox

GRACE = 3.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the security suite runs as root (host-side scans)")


def _run(sb: Sandbox, code: str, timeout: float = 5.0, **kw: object):
    t0 = time.monotonic()
    res = sb.run(code, timeout=timeout, **kw)  # type: ignore[arg-type]
    elapsed = time.monotonic() - t0
    assert elapsed <= timeout + GRACE, f"run took {elapsed:.1f}s for a {timeout}s timeout"
    return res


def _everything(res) -> str:
    return res.stdout + res.stderr + repr(res.to_dict())


# ------------------------------------------------------------------ network
def test_network_host_services_on_loopback_and_unix_sockets_are_unreachable(sandbox: Sandbox, listener):
    code = f"""
import socket
def attempt(fam, addr, kind=socket.SOCK_STREAM):
    try:
        s = socket.socket(fam, kind); s.settimeout(1)
        if kind == socket.SOCK_DGRAM:
            s.sendto(b"x", addr); print("udp sent")
        else:
            s.connect(addr); print("LEAK", s.recv(100))
    except OSError as e:
        print("blocked", addr, e.errno)
attempt(socket.AF_INET, ("127.0.0.1", {listener.tcp_port}))
attempt(socket.AF_INET6, ("::1", {listener.tcp_port}))
attempt(socket.AF_UNIX, "{listener.unix_path}")
attempt(socket.AF_UNIX, "\\0{listener.abstract}")
attempt(socket.AF_INET, ("127.0.0.1", {listener.udp_port}), socket.SOCK_DGRAM)
for p in ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"):
    attempt(socket.AF_UNIX, p)
print("interfaces", sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]))
print("routes", open("/proc/net/route").read().splitlines()[1:])
"""
    res = _run(sandbox, code)
    time.sleep(0.3)
    assert listener.contacts == [], f"host listeners were contacted: {listener.contacts}"
    assert "HOSTSECRET" not in _everything(res)
    assert "LEAK" not in res.stdout
    assert "interfaces ['lo']" in res.stdout  # no interface that could route anywhere
    assert "routes []" in res.stdout


# ------------------------------------------------------------------ secrets
def test_secrets_in_env_proc_environ_parent_cwd_root_and_fds_stay_out(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    canary = "sk-kgotcanary-" + os.urandom(8).hex()
    monkeypatch.setenv("OPENAI_API_KEY", canary + "-env")
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={canary}-cwd\n")
    monkeypatch.chdir(tmp_path)
    root_file = Path(f"/root/kgot-canary-{os.urandom(4).hex()}.txt")
    root_file.write_text(canary + "-root\n")
    root_file.chmod(0o600)
    fd = os.memfd_create("kgot-fd-canary", 0)
    os.write(fd, (canary + "-fd\n").encode())
    os.set_inheritable(fd, True)
    shadow = hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest() if Path("/etc/shadow").exists() else None
    code = f"""
import os, glob, hashlib
for k, v in os.environ.items(): print("env", k, v)
for p in glob.glob("/proc/*/environ"):
    try: print("environ", p, open(p, "rb").read()[:4000])
    except OSError as e: print("denied", p, e.errno)
for p in ("{tmp_path}/.env", "../.env", "{root_file}", "/etc/shadow", "/root/.bash_history"):
    try: print("read", p, open(p, "rb").read()[:4000], hashlib.sha256(open(p, "rb").read()).hexdigest())
    except OSError as e: print("denied", p, e.errno)
for fd in range(3, 64):
    try: print("fd", fd, os.pread(fd, 200, 0))
    except OSError: pass
print("listing /root", os.listdir("/root") if os.path.isdir("/root") else None)
"""
    try:
        res = _run(sandbox, code)
    finally:
        os.close(fd)
        root_file.unlink()
    text = _everything(res)
    assert canary not in text
    assert canary[::-1] not in text and canary.encode().hex() not in text
    if shadow:
        assert shadow not in text
    assert res.exit_code == 0, res.stderr  # the probe itself ran to the end


# ------------------------------------------------------------------ filesystem
def test_writes_outside_scratch_never_reach_the_host(sandbox: Sandbox, probes, marker: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    code = f"""
import os
targets = ["/tmp", "/var/tmp", "/dev/shm", "/root", "/etc", "/opt", "/usr/local", "/srv", "/home", "/",
           "{tmp_path}", os.path.expanduser("~"), "..", "../..", "/proc/self/cwd/.."]
for d in targets:
    p = os.path.join(d, "{marker}")
    try:
        with open(p, "w") as f: f.write("x")
        print("wrote", os.path.realpath(p))
    except OSError as e:
        print("denied", p, e.errno)
try:
    os.symlink("/etc/passwd", "{marker}-link"); open("{marker}-link", "a").write("x"); print("wrote via symlink")
except OSError as e:
    print("symlink write denied", e.errno)
with open("ok.txt", "w") as f: f.write("scratch works")
print(open("ok.txt").read())
"""
    res = _run(sandbox, code)
    assert "scratch works" in res.stdout, res.stderr
    assert probes.marker_files(marker, extra=(str(tmp_path),)) == []
    assert "wrote via symlink" not in res.stdout


def test_a_later_run_sees_nothing_an_earlier_run_left(sandbox: Sandbox, probes, marker: str):
    token = "kgotcross" + os.urandom(6).hex()
    writer = f"""
import os
for d in (".", "/tmp", "/dev/shm", os.path.expanduser("~")):
    try:
        open(os.path.join(d, "{marker}.txt"), "w").write("{token}"); print("wrote", d)
    except OSError as e:
        print("denied", d, e.errno)
"""
    reader = """
import os
hits = 0
for root in (".", "/tmp", "/dev/shm", "/var/tmp", os.path.expanduser("~"), "/sandbox", "/home", "/srv"):
    for dirpath, _, names in os.walk(root):
        for n in names:
            try:
                data = open(os.path.join(dirpath, n), "rb").read(65536)
            except OSError:
                continue
            if b"kgotcross" in data:
                hits += 1; print("FOUND", os.path.join(dirpath, n), data[:40])
print("scan done", hits)
"""
    first = _run(sandbox, writer)
    assert "wrote ." in first.stdout
    second = _run(sandbox, reader)
    assert "scan done 0" in second.stdout, second.stdout + second.stderr
    assert token not in _everything(second)
    assert probes.marker_files(marker) == []


@pytest.mark.parametrize("where", ["scratch", "/tmp", "/dev/shm"])
def test_disk_and_shm_fill_is_capped_and_recovered(sandbox: Sandbox, probes, marker: str, where: str):
    path = f"{marker}.bin" if where == "scratch" else f"{where}/{marker}.bin"
    code = f"""
import os
fd = os.open("{path}", os.O_CREAT | os.O_WRONLY, 0o600)
try:
    os.posix_fallocate(fd, 0, 2 << 30); print("RESERVED 2 GiB")
except OSError as e:
    print("fallocate refused", e.errno)
written = 0
try:
    while written < (1 << 30):
        written += os.write(fd, b"\\0" * (4 << 20))
except OSError as e:
    print("write stopped", written >> 20, "MiB", e.errno)
"""
    before = os.statvfs("/")
    with probes.load() as load:
        res = _run(sandbox, code, timeout=10)
    after = os.statvfs("/")
    assert "RESERVED 2 GiB" not in res.stdout
    assert "write stopped" in res.stdout or res.killed_by == "memory", res.stdout + res.stderr
    drop_mib = (before.f_bavail - after.f_bavail) * before.f_frsize / 2**20
    assert drop_mib < 64, f"host disk still {drop_mib:.0f} MiB fuller after the run"
    assert load.mem_drop_mib < 512


def test_legitimate_program_with_stdin_files_and_exit_code_still_works(sandbox: Sandbox):
    code = """
import json, sys, hashlib
data = sys.stdin.read().split()
nums = [int(x) for x in data if x.isdigit()]
table = open("input/table.csv").read().splitlines()
with open("out.json", "w") as f: json.dump({"sum": sum(nums), "rows": len(table)}, f)
print("RESULT", open("out.json").read(), hashlib.sha256(b"x").hexdigest()[:8], "ünïcødé")
print("warning", file=sys.stderr)
sys.exit(3)
"""
    res = _run(sandbox, code, stdin="alpha 3 4 5 beta\n", files={"input/table.csv": "a,b\n1,2\n"})
    assert res.exit_code == 3 and not res.timed_out and res.killed_by is None
    assert 'RESULT {"sum": 12, "rows": 2} 2d711642 ünïcødé' in res.stdout
    assert res.stderr == "warning\n"
    assert not res.ok


# ------------------------------------------------------------------ processes
def test_fork_bomb_is_stopped_by_the_pids_limit_and_leaves_nothing(sandbox: Sandbox, probes, marker: str):
    code = f"""
import os, time
os.set_inheritable(os.memfd_create("{marker}", 0), True)
born = 0
for _ in range(2000):
    try:
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        born += 1
    except OSError as e:
        print("fork refused after", born, e.errno, flush=True); break
time.sleep(30)
"""
    with probes.load() as load:
        res = _run(sandbox, code, timeout=4)
    assert "fork refused after" in res.stdout
    assert res.timed_out and res.killed_by == "timeout"
    assert load.peak_procs < 120, f"host gained {load.peak_procs} processes"
    assert probes.wait_no_survivors(marker) == []


def test_thread_bomb_is_stopped_by_the_pids_limit(sandbox: Sandbox, probes, marker: str):
    code = f"""
import os, threading, time
os.set_inheritable(os.memfd_create("{marker}", 0), True)
n = 0
try:
    for _ in range(5000):
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); n += 1
except RuntimeError as e:
    print("threads refused after", n, flush=True)
os._exit(0)
"""
    with probes.load() as load:
        res = _run(sandbox, code, timeout=5)
    assert "threads refused after" in res.stdout, res.stdout + res.stderr
    assert load.peak_threads < 200
    assert probes.wait_no_survivors(marker) == []


@pytest.mark.parametrize("procs", [1, 4])
def test_memory_bombs_are_killed_within_the_memory_limit(sandbox: Sandbox, probes, marker: str, procs: int):
    code = f"""
import os, time
os.set_inheritable(os.memfd_create("{marker}", 0), True)
for _ in range({procs} - 1):
    if os.fork() == 0:
        break
hold = []
while len(hold) < 16:
    hold.append(b"\\x01" * (64 << 20))
print("allocated 1 GiB", flush=True)
time.sleep(5)
"""
    with probes.load() as load:
        res = _run(sandbox, code, timeout=10)
    assert "allocated 1 GiB" not in res.stdout
    assert res.exit_code not in (0, None) or res.timed_out
    if procs == 1:
        assert res.killed_by == "memory" or "MemoryError" in res.stderr
    assert load.mem_drop_mib < 600, f"host MemAvailable dropped {load.mem_drop_mib:.0f} MiB"
    assert probes.wait_no_survivors(marker) == []


@pytest.mark.parametrize(
    "body",
    [
        "while True: pass",
        "import time; time.sleep(600)",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)",
        "import math\nwhile True: math.factorial(200000)",  # long C calls holding the GIL
    ],
    ids=["cpu-spin", "sleep", "ignores-sigterm", "gil-holding-c-calls"],
)
def test_runaway_code_is_killed_at_the_wall_timeout(sandbox: Sandbox, probes, marker: str, body: str):
    code = f"import os\nos.set_inheritable(os.memfd_create('{marker}', 0), True)\n{body}\n"
    res = _run(sandbox, code, timeout=2)
    assert res.timed_out and res.killed_by == "timeout" and not res.ok
    assert 2 <= res.duration <= 2 + GRACE
    assert probes.wait_no_survivors(marker) == []


def test_cpu_share_is_capped_at_half_a_core(sandbox: Sandbox):
    code = "import time\nt0 = time.time()\nwhile time.time() - t0 < 2: pass\nprint(time.process_time())"
    res = _run(sandbox, code, timeout=6)
    used = float(res.stdout)
    assert 0.1 <= used <= 1.35, f"2 s of spinning used {used:.2f} CPU seconds under a 0.5 CPU limit"


def test_double_forked_daemons_do_not_survive_the_run(sandbox: Sandbox, probes, marker: str):
    code = f"""
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        fd = os.open(os.devnull, os.O_RDWR)
        for i in (0, 1, 2): os.dup2(fd, i)
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", "{marker}"])
    os._exit(0)
os.wait()
print("daemon started")
"""
    res = _run(sandbox, code)
    assert "daemon started" in res.stdout and res.exit_code == 0
    assert probes.wait_no_survivors(marker, within=1.5) == [], "a daemon outlived the run"


def test_reading_stdin_without_input_returns_eof_at_once(sandbox: Sandbox):
    res = _run(sandbox, "import sys\ndata = sys.stdin.read()\nprint('got', len(data))", timeout=5)
    assert res.stdout == "got 0\n" and not res.timed_out
    assert res.duration < 4


# ------------------------------------------------------------------ output
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_floods_are_truncated_and_do_not_block(sandbox: Sandbox, stream: str):
    code = f"import sys\nline = b'A' * 1023 + b'\\n'\nfor _ in range(200 * 1024): sys.{stream}.buffer.write(line)\nprint('done')"
    res = _run(sandbox, code, timeout=8)
    text = getattr(res, stream)
    assert getattr(res, f"{stream}_truncated")
    assert len(text.encode()) <= sandbox.limits.output_bytes
    assert len(res.stdout) + len(res.stderr) <= 2 * sandbox.limits.output_bytes + 100


def test_one_huge_line_and_an_endless_generator_are_truncated(sandbox: Sandbox):
    res = _run(sandbox, "import sys\nsys.stdout.write('x' * (50 << 20))\nsys.stdout.flush()", timeout=8)
    assert res.stdout_truncated and len(res.stdout) == sandbox.limits.output_bytes
    res = _run(sandbox, "while True: print('y' * 1000)", timeout=2)
    assert res.timed_out and res.stdout_truncated and len(res.stdout) <= sandbox.limits.output_bytes


def test_binary_output_gives_a_well_formed_result(sandbox: Sandbox):
    code = (
        "import sys\njunk = bytes(range(256)) * 8 + b'\\xff\\xfe\\xed\\xa0\\x80\\x00\\x1b]0;x\\x07'\n"
        "sys.stdout.buffer.write(junk + b'\\n'); sys.stderr.buffer.write(junk + b'\\n')\n"
        "sys.stdout.flush(); sys.stderr.flush()\nprint('AFTER')"
    )
    res = _run(sandbox, code)
    assert res.exit_code == 0 and res.stdout.endswith("AFTER\n")
    import json

    json.dumps(res.to_dict())  # plain JSON data, whatever the bytes


# ------------------------------------------------------------------ crashes
@pytest.mark.parametrize(
    "code",
    [
        "import ctypes\nctypes.string_at(0)",
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n): return f(n + 1)\nf(0)",
    ],
    ids=["segfault", "c-stack-overflow"],
)
def test_interpreter_crashes_are_reported_not_raised(sandbox: Sandbox, code: str):
    res = _run(sandbox, code)
    assert res.exit_code not in (0, None) and not res.timed_out


# ------------------------------------------------------------------ privilege
def test_mount_unshare_and_ptrace_are_refused(sandbox: Sandbox, marker: str):
    code = f"""
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir("m")
print("mount", libc.mount(b"{marker}", b"m", b"tmpfs", 0, b"size=1m"), ctypes.get_errno())
print("unshare-user", libc.unshare(0x10000000), ctypes.get_errno())
print("unshare-mnt", libc.unshare(0x00020000), ctypes.get_errno())
print("ptrace-parent", libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())
for argv in (["unshare", "-r", "true"], ["mount", "-t", "tmpfs", "{marker}", "m"]):
    try:
        print(argv[0], subprocess.run(argv, capture_output=True, timeout=3).returncode)
    except OSError as e:
        print(argv[0], "missing", e.errno)
"""
    res = _run(sandbox, code)
    assert "mount -1" in res.stdout and "unshare-user -1" in res.stdout and "unshare-mnt -1" in res.stdout
    assert "ptrace-parent -1" in res.stdout
    assert "unshare 0" not in res.stdout and "mount 0" not in res.stdout
    with open("/proc/self/mountinfo") as f:
        assert marker not in f.read()


def test_signals_cannot_reach_host_processes(sandbox: Sandbox):
    # Only harmless signals are used, so a broken sandbox cannot take the host down with this test:
    # SIGUSR1 to this process (handled), SIGTERM to one bystander, SIGWINCH (ignored by default) to -1.
    got: list[int] = []
    handlers = {sig: signal.signal(sig, lambda s, _f: got.append(s)) for sig in (signal.SIGUSR1, signal.SIGWINCH)}
    import subprocess

    bystander = subprocess.Popen(["sleep", "30"])
    try:
        code = f"""
import os, signal
for pid, sig in (({os.getpid()}, signal.SIGUSR1), ({bystander.pid}, signal.SIGTERM), (-1, signal.SIGWINCH)):
    try: os.kill(pid, sig); print("sent", pid)
    except OSError as e: print("refused", pid, e.errno)
"""
        _run(sandbox, code)
        time.sleep(0.2)
        assert got == [], f"the test process received {got} from the sandbox"
        assert bystander.poll() is None, "a host process was killed from inside the sandbox"
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        bystander.kill()
        bystander.wait()


# ------------------------------------------------------------------ bypasses
def test_shells_and_import_tricks_stay_inside(sandbox: Sandbox, probes, marker: str):
    code = f"""
import subprocess, importlib
script = "id; echo {marker} > /tmp/{marker}-sh; cat /etc/shadow; echo {marker} > $HOME/../{marker}-home; echo SHELLRAN"
for argv in (["/bin/sh", "-c", script], ["sh", "-c", script]):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=3); print(r.stdout, r.stderr); break
    except OSError as e:
        print("no shell", e)
print(__import__("os").system("echo {marker} > /var/tmp/{marker}-sys"))
importlib.import_module("os").makedirs("/tmp/{marker}-dir", exist_ok=True)
"""
    res = _run(sandbox, code)
    assert "root:" not in res.stdout  # /etc/shadow not readable
    time.sleep(0.2)
    assert probes.marker_files(marker) == []
    assert probes.survivors(marker) == []
