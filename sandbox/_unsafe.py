"""The explicitly chosen, non-isolating backend: a plain subprocess with rlimits, warned about on every run."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping

from kgot_errors.errors import SandboxError
from kgot_errors.sandbox._bwrap import exit_status
from kgot_errors.sandbox._code import check_files, python_argv
from kgot_errors.sandbox._limits import Limits
from kgot_errors.sandbox._pump import pump
from kgot_errors.sandbox._result import ExecResult, killed_reason

__all__ = ["UNSAFE_WARNING", "UnsafeSubprocessBackend"]

log = logging.getLogger(__name__)

UNSAFE_WARNING = (
    "sandbox backend 'unsafe-subprocess' runs code WITHOUT isolation (host network, files and "
    "secrets are reachable); use it only for code you trust"
)


class UnsafeSubprocessBackend:
    """`python -I -S` in a temp dir with a scrubbed environment and a wall timeout. Not a sandbox."""

    name = "unsafe-subprocess"
    isolating = False

    def __init__(self, *, python: str | None = None) -> None:
        self._python = python or sys.executable

    def check(self) -> None:
        return None

    def cleanup(self) -> int:
        return 0

    def execute(self, code: str, limits: Limits, *, stdin: bytes | None, files: Mapping[str, bytes]) -> ExecResult:
        warnings.warn(UNSAFE_WARNING, RuntimeWarning, stacklevel=3)
        log.warning(UNSAFE_WARNING)
        check_files(dict(files))
        scratch = tempfile.mkdtemp(prefix="kgot-unsafe-")
        start = time.monotonic()
        try:
            for name, data in files.items():
                path = os.path.join(scratch, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            try:
                proc = subprocess.Popen(
                    python_argv(self._python, code),
                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=scratch,
                    env={"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"},
                    close_fds=True,
                    start_new_session=True,
                )
            except OSError as exc:
                raise SandboxError(f"cannot start {self._python}: {exc}") from exc

            def kill() -> None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass

            cap = pump(proc, stdin=stdin, cap=limits.output_bytes, deadline=start + limits.timeout, kill=kill)
            kill()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        code_ = exit_status(cap.returncode)
        killed = killed_reason(timed_out=cap.timed_out, exit_code=code_, oom=False,
                               signaled=cap.returncode is not None and cap.returncode < 0)
        return cap.to_result(backend=self.name, exit_code=code_, killed_by=killed,
                             duration=time.monotonic() - start, peak_memory=None)
