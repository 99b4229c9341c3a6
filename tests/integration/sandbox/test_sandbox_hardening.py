"""The red-team's channels, each judged from the host: seccomp policy, per-run uids, no argv payloads, output floods, socket memory."""

from __future__ import annotations

import ctypes
import mmap
import os
import random
import resource
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest
from kgot_errors.sandbox import Sandbox
from kgot_errors.sandbox._root import PREFIX
from kgot_errors.sandbox._uid import UID_RANGE

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox suites run as root (host-side checks)")


def _in_background(sb: Sandbox, code: str, **kw: object) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(sb.run(code, **kw)))  # type: ignore[arg-type]
    thread.start()
    return thread, out


# ------------------------------------------------------------------ sockets
def _host_can_vsock() -> bool:
    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
        return True
    except (OSError, AttributeError):
        return False


def test_vsock_ports_cannot_be_taken_from_inside(sandbox: Sandbox):
    port = random.randint(40000, 60000)
    code = textwrap.dedent(f"""
        import socket, time
        try:
            s = socket.socket(40, socket.SOCK_STREAM)
            s.bind((0xFFFFFFFF, {port})); s.listen(1)
            print("BOUND", flush=True)
        except OSError as e:
            print("refused", e.errno, flush=True)
        time.sleep(2)
    """)
    thread, out = _in_background(sandbox, code)
    time.sleep(1.2)
    host_bind = None
    if _host_can_vsock():
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        try:
            s.bind((socket.VMADDR_CID_ANY, port))
            host_bind = "ok"
        except OSError as exc:
            host_bind = exc.errno
        finally:
            s.close()
    thread.join()
    res = out[0]
    assert "BOUND" not in res.stdout and "refused 97" in res.stdout, res
    assert host_bind in (None, "ok"), f"the host could not bind vsock port {port}: errno {host_bind}"


def test_only_local_sockets_exist_inside(sandbox: Sandbox):
    code = textwrap.dedent("""
        import socket
        for fam, kind in ((2, 1), (2, 2), (10, 1), (16, 3), (17, 3), (40, 1), (38, 5)):
            try:
                socket.socket(fam, kind); print("OPEN", fam)
            except OSError as e:
                print("refused", fam, e.errno)
        a, b = socket.socketpair(); a.sendall(b"unix ok"); print(b.recv(10).decode())
        u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); print("unix dgram ok")
    """)
    res = sandbox.run(code)
    assert "OPEN" not in res.stdout, res.stdout
    assert res.stdout.count("refused") == 7 and "unix ok" in res.stdout and "unix dgram ok" in res.stdout


def test_loopback_tcp_buffers_cannot_hoard_host_memory(sandbox: Sandbox, probes):
    # the red-team parked 512 MiB in loopback TCP buffers: TCP is refused, so nothing is parked
    code = textwrap.dedent("""
        import socket
        try:
            srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(64)
            print("TCP OPEN")
        except OSError as e:
            print("tcp refused", e.errno)
        print("done")
    """)
    res = sandbox.run(code)
    assert "tcp refused 97" in res.stdout and "TCP OPEN" not in res.stdout
    assert res.peak_memory is not None and res.peak_memory < sandbox.limits.memory


# ------------------------------------------------------------------ calls the policy closes
def test_io_uring_inotify_flock_and_the_extra_calls_are_refused(sandbox: Sandbox, tmp_path: Path):
    code = textwrap.dedent("""
        import ctypes, fcntl, os, platform, sys
        libc = ctypes.CDLL(None, use_errno=True)
        def call(name, nr, *args):
            r = libc.syscall(nr, *args); print(name, r, ctypes.get_errno() if r < 0 else 0)
        x86 = platform.machine() == "x86_64"
        params = ctypes.create_string_buffer(120)
        call("io_uring_setup", 425, 4, params)
        call("inotify_init1", 294 if x86 else 26, 0)
        call("personality", 135 if x86 else 92, 0x0040000)
        call("set_mempolicy", 238 if x86 else 237, 0, 0, 0)
        call("mbind", 237 if x86 else 235, 0, 4096, 0, 0, 0, 0)
        call("kcmp", 312 if x86 else 272, os.getpid(), os.getpid(), 0, 0, 0)
        call("memfd_secret", 447, 0)
        if x86:
            buf = ctypes.create_string_buffer(16); call("modify_ldt", 154, 0, buf, 16)
        call("beyond_review", 500, 0)
        fd = os.open(sys.executable, os.O_RDONLY)  # a file every root has (bwrap's has no /usr, no shell)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print("flock 0 0")
        except OSError as e:
            print("flock -1", e.errno)
        try:
            os.preadv(fd, [bytearray(64)], 0, os.RWF_NOWAIT); print("preadv2_nowait 0 0")
        except OSError as e:
            print("preadv2_nowait -1", e.errno)
        print("preadv2_plain", os.preadv(fd, [bytearray(64)], 0, 0))
    """)
    res = sandbox.run(code)
    lines = dict((ln.split()[0], ln.split()[1:]) for ln in res.stdout.splitlines() if ln)
    for name in ("io_uring_setup", "inotify_init1", "personality", "set_mempolicy", "mbind", "kcmp", "memfd_secret",
                 "beyond_review", "flock", "preadv2_nowait", *(["modify_ldt"] if "modify_ldt" in lines else [])):
        assert lines[name][0] == "-1", (name, res.stdout, res.stderr)
    assert lines["preadv2_plain"] == ["64"]  # plain reads work


def _resident(path: str) -> float:
    """Share of `path`'s pages in the page cache, seen from the host (mmap + mincore, nothing read)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = os.path.getsize(path)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        vec = (ctypes.c_ubyte * pages)()
        try:
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) / pages


def _host_file_seen_inside(sandbox: Sandbox) -> tuple[str, str]:
    """A stdlib file the run never imports: (path inside the run, the same file's pages on the host)."""
    import sys

    inside = os.path.join(os.path.realpath(sys.base_prefix), "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                          "pydoc_data", "topics.py")
    if sandbox.name == "bwrap":  # its private root's copy (the host's own file is not in the run at all)
        root = sandbox.backend.private_root()  # type: ignore[attr-defined]
        rel = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/pydoc_data/topics.py"
        return f"{PREFIX}/{rel}", os.path.join(dict((b, a) for a, b in root.binds)[PREFIX], rel)
    client = sandbox.backend.client()  # type: ignore[attr-defined]
    layer = client.images.get(sandbox.backend.image).attrs["GraphDriver"]["Data"]  # type: ignore[attr-defined]
    host = layer.get("UpperDir", "") + inside
    if not os.path.exists(host):
        pytest.skip(f"the image layer is not on this host's filesystem ({layer})")
    return inside, host


def test_fadvise_cannot_evict_host_files_from_the_page_cache(sandbox: Sandbox):
    inside, host = _host_file_seen_inside(sandbox)
    Path(host).read_bytes()  # warm it
    assert _resident(host) > 0.9
    code = textwrap.dedent(f"""
        import os
        fd = os.open({inside!r}, os.O_RDONLY)
        print("fadvise", os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED))
    """)
    res = sandbox.run(code)
    assert "fadvise None" in res.stdout, res
    assert _resident(host) > 0.9, "the run evicted a host file from the page cache"


# ------------------------------------------------------------------ identities
def test_concurrent_runs_get_their_own_uids_never_65534(sandbox: Sandbox):
    code = "import os, time\nprint(os.getuid(), os.getgid(), os.geteuid())\ntime.sleep(0.5)"
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(sandbox.run(code))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    uids = [tuple(map(int, r.stdout.split())) for r in results]
    assert all(u == g == e and u in UID_RANGE for u, g, e in uids), uids
    assert len({u for u, _, _ in uids}) == 3 and all(u != 65534 for u, _, _ in uids)


def test_the_program_has_no_capabilities_and_no_new_privileges(sandbox: Sandbox):
    res = sandbox.run("print(open('/proc/self/status').read())")
    status = dict(line.split(":\t", 1) for line in res.stdout.splitlines() if ":\t" in line)
    assert status["CapEff"].strip() == status["CapPrm"].strip() == status["CapAmb"].strip() == "0" * 16
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"


# ------------------------------------------------------------------ what travels in argv
def test_code_stdin_and_files_never_appear_in_argv_or_the_container_config(sandbox: Sandbox, marker: str):
    code = f"import time\n# {marker}-code\nprint(open('data.txt').read(), input())\ntime.sleep(1.5)"
    thread, out = _in_background(sandbox, code, stdin=f"{marker}-stdin\n", files={"data.txt": f"{marker}-file"})
    time.sleep(0.8)
    seen = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        seen.append(d)
            except OSError:
                pass
    config = ""
    if sandbox.name == "docker":
        client = sandbox.backend.client()  # type: ignore[attr-defined]
        from kgot_errors.sandbox._docker import LABEL

        for c in client.containers.list(filters={"label": LABEL}):
            config += repr(client.api.inspect_container(c.id))
    thread.join()
    assert f"{marker}-file {marker}-stdin" in out[0].stdout, out[0]
    assert seen == [], "code, stdin or files are readable in /proc/*/cmdline"
    assert marker not in config, "code, stdin or files are in the container's config (docker inspect)"


# ------------------------------------------------------------------ output floods
def _daemon_cpu() -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            if name.startswith(("dockerd", "containerd")):
                rest = fields[1].split()
                total += (int(rest[11]) + int(rest[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def test_the_host_pays_little_cpu_for_an_output_flood(sandbox: Sandbox):
    code = "import os\nchunk = b'A' * 65536\nwhile True: os.write(1, chunk)"
    me, daemons = resource.getrusage(resource.RUSAGE_SELF), _daemon_cpu()
    res = sandbox.run(code, timeout=3)
    after = resource.getrusage(resource.RUSAGE_SELF)
    caller = (after.ru_utime - me.ru_utime) + (after.ru_stime - me.ru_stime)
    daemon = _daemon_cpu() - daemons
    assert res.timed_out and res.stdout_truncated and len(res.stdout) == sandbox.limits.output_bytes
    assert caller < 0.4, f"the caller spent {caller:.2f} CPU s reading a 3 s flood"
    if sandbox.name == "docker":
        assert daemon < 1.5, f"dockerd/containerd spent {daemon:.2f} CPU s on a 3 s flood"


def test_local_socket_buffers_count_against_the_memory_limit_and_peak_memory(probes):
    # the only sockets left (AF_UNIX): what they park is charged to the run's cgroup and reported
    code = textwrap.dedent("""
        import socket, time
        pairs, total = [], 0
        for i in range(120):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            a.setblocking(False)
            try:
                while True:
                    total += a.send(b"x" * 65536)
            except BlockingIOError:
                pass
            pairs.append((a, b))
        print(total)
    """)
    for backend in ("bwrap", "docker"):
        sb = probes.make_sandbox(backend, timeout=10, memory="64m")
        idle = sb.run("print(0)")
        res = sb.run(code)
        parked = int(res.stdout)
        assert parked > 16 << 20, res
        assert res.peak_memory is not None and idle.peak_memory is not None
        assert res.peak_memory - idle.peak_memory > parked * 0.8, (backend, res.peak_memory, idle.peak_memory, parked)
