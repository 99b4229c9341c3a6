"""Sandbox fixtures: a sandbox per backend, and host-side probes (listeners, survivors, files, load)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import pytest
from kgot_errors.errors import SandboxUnavailable
from kgot_errors.sandbox import Sandbox, get_sandbox

GRACE = 3.0  # seconds a run may take beyond its timeout
WATCHED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/root", "/etc", "/opt", "/usr/local", "/srv", "/home", "/mnt", "/")


def docker_required() -> bool:
    """In CI (KGOT_REQUIRE_SERVICES=1, as tests/conftest.py's services) a missing daemon fails, not skips."""
    return os.environ.get("KGOT_REQUIRE_SERVICES") == "1"


_docker_state: dict[str, str | None] = {}


def _docker_unavailable() -> str | None:
    """Why docker tests cannot run here (None: they can). Builds the image when only it is missing."""
    if "reason" in _docker_state:
        return _docker_state["reason"]
    reason = None
    from kgot_errors.sandbox._docker import DockerBackend, docker_configured

    if not docker_configured():
        reason = "no Docker daemon configured (DOCKER_HOST unset, no /var/run/docker.sock); start one with .ci/dockerd.sh"
    else:
        backend = DockerBackend()
        try:
            backend.client().ping()
        except Exception as exc:  # noqa: BLE001
            reason = f"Docker daemon not reachable: {exc}"
        else:
            try:
                backend.check()
            except SandboxUnavailable:
                from kgot_errors.sandbox import build_image

                build_image()
    _docker_state["reason"] = reason
    return reason


def make_sandbox(name: str, **limits: object) -> Sandbox:
    if name == "docker":
        reason = _docker_unavailable()
        if reason:
            if docker_required():
                pytest.fail(reason)
            pytest.skip(reason)
    if name == "bwrap" and os.geteuid() != 0:
        pytest.skip("the bwrap suite runs as root (per-run cgroups)")
    return get_sandbox(name, **limits)  # type: ignore[arg-type]


@pytest.fixture(params=["bwrap", "docker"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """A sandbox with the default limits but a 5 s timeout, once per backend."""
    return make_sandbox(request.param, timeout=5)


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique name to tag files and processes; anything tagged is removed after the test."""
    mark = "kgotmark" + secrets.token_hex(6)
    yield mark
    for line in survivors(mark):
        try:
            os.kill(int(line.split(":")[0]), 9)
        except OSError:
            pass
    with open("/proc/self/mountinfo") as f:  # a mount made from a broken sandbox
        tagged = [line.split()[4] for line in f if mark in line]
    for point in sorted(tagged, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for path in marker_files(mark):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)


# ---------------------------------------------------------------- host-side probes
def survivors(marker: str) -> list[str]:
    """Host processes (any namespace) carrying `marker` in argv or in an open fd's name."""
    hits = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, IndexError):
            continue
        if marker.encode() in cmd:
            hits.append(f"{d}: {cmd[:80]!r}")
            continue
        try:
            for fd in os.listdir(f"/proc/{d}/fd"):
                try:
                    if marker in os.readlink(f"/proc/{d}/fd/{fd}"):
                        hits.append(f"{d}: fd {fd}")
                        break
                except OSError:
                    pass
        except OSError:
            pass
    return hits


def wait_no_survivors(marker: str, within: float = 2.0) -> list[str]:
    end = time.monotonic() + within
    while True:
        left = survivors(marker)
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.1)


def marker_files(marker: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Files or dirs whose name contains `marker` in the watched host dirs (shallow walk)."""
    found = []
    for root in (*WATCHED_DIRS, *extra):
        depth0 = root.rstrip("/").count("/")
        for dirpath, dirnames, filenames in os.walk(root):
            if dirpath.startswith(("/proc", "/sys", "/dev/pts")) or dirpath.count("/") - depth0 >= 3:
                dirnames[:] = []
            found += [os.path.join(dirpath, n) for n in dirnames + filenames if marker in n]
            if root == "/":
                dirnames[:] = []
    return sorted(set(found))


@dataclass
class Listener:
    """TCP and UDP on 127.0.0.1, a unix socket in /tmp and an abstract unix socket; logs every contact."""

    token: str = field(default_factory=lambda: secrets.token_hex(6))
    contacts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._socks: list[socket.socket] = []
        self.tcp_port = self._serve(socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("127.0.0.1", 0), "tcp")
        self.unix_path = f"/tmp/kgot-test-{self.token}.sock"
        self._serve(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), self.unix_path, "unix")
        os.chmod(self.unix_path, 0o777)
        self.abstract = f"kgot-test-{self.token}"
        self._serve(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), "\0" + self.abstract, "abstract")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        self.udp_port = udp.getsockname()[1]
        self._socks.append(udp)
        threading.Thread(target=self._udp, args=(udp,), daemon=True).start()

    def _serve(self, sock: socket.socket, addr: object, kind: str) -> int:
        sock.bind(addr)
        sock.listen(16)
        self._socks.append(sock)

        def loop() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                self.contacts.append(kind)
                try:
                    conn.sendall(b"HOSTSECRET-" + self.token.encode() + b"\n")
                except OSError:
                    pass
                conn.close()

        threading.Thread(target=loop, daemon=True).start()
        return sock.getsockname()[1] if kind == "tcp" else 0

    def _udp(self, sock: socket.socket) -> None:
        while True:
            try:
                sock.recvfrom(2048)
            except OSError:
                return
            self.contacts.append("udp")

    def close(self) -> None:
        for s in self._socks:
            s.close()
        Path(self.unix_path).unlink(missing_ok=True)


@pytest.fixture
def listener() -> Iterator[Listener]:
    li = Listener()
    yield li
    li.close()


class HostLoad(threading.Thread):
    """Samples host processes, threads and MemAvailable while a run goes on; reports the worst deltas."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self._halt = threading.Event()
        self.base = self._sample()
        self.peak_procs = self.peak_threads = 0
        self.min_mem_kb = self.base[2]

    @staticmethod
    def _sample() -> tuple[int, int, int]:
        procs = threads = 0
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat", "rb") as f:
                        threads += int(f.read().rsplit(b")", 1)[1].split()[17])
                    procs += 1
                except (OSError, ValueError, IndexError):
                    pass
        mem = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    mem = int(line.split()[1])
        return procs, threads, mem

    def run(self) -> None:
        while not self._halt.wait(0.05):
            procs, threads, mem = self._sample()
            self.peak_procs = max(self.peak_procs, procs - self.base[0])
            self.peak_threads = max(self.peak_threads, threads - self.base[1])
            self.min_mem_kb = min(self.min_mem_kb, mem)

    @property
    def mem_drop_mib(self) -> float:
        return (self.base[2] - self.min_mem_kb) / 1024

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(2)


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


SPAN_CODE = "import time\nt0 = time.time()\ntime.sleep(0.5)\nprint(t0, time.time())"


def concurrent_spans(sb: Sandbox, runs: int) -> list[tuple[float, float]]:
    """Start `runs` runs of SPAN_CODE from as many threads; the (start, end) each reported."""
    results = []
    threads = [threading.Thread(target=lambda: results.append(sb.run(SPAN_CODE))) for _ in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [tuple(map(float, r.stdout.split())) for r in results]  # type: ignore[misc]


def leftovers() -> dict[str, list[str]]:
    """Run cgroups, host mount points and temp dirs that exist right now (compare before / after)."""
    groups = [str(p) for base in Path("/sys/fs/cgroup").glob("*/kgot-sandbox") for p in base.glob("run-*")]
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line.split()[4] for line in f if "/kgot-dockerd-" not in line)
    temps = sorted(str(p) for p in Path("/tmp").glob("kgot-*") if p.name.startswith(("kgot-unsafe-", "kgot-image-")))
    return {"cgroups": groups, "mounts": mounts, "temps": temps}


class Probes:
    """The host-side checks, handed to tests as the `probes` fixture (tests do not import conftest)."""

    grace = GRACE
    survivors = staticmethod(survivors)
    wait_no_survivors = staticmethod(wait_no_survivors)
    marker_files = staticmethod(marker_files)
    load = HostLoad
    make_sandbox = staticmethod(make_sandbox)
    max_overlap = staticmethod(max_overlap)
    leftovers = staticmethod(leftovers)
    span_code = SPAN_CODE
    concurrent_spans = staticmethod(concurrent_spans)


@pytest.fixture
def probes() -> type[Probes]:
    return Probes
