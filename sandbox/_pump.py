"""Feeds stdin and reads stdout/stderr of a child concurrently, capped, until exit or a wall deadline."""

from __future__ import annotations

import errno
import os
import selectors
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from kgot_errors.sandbox._result import ExecResult, KilledBy

__all__ = ["CappedBuffer", "Captured", "pump"]

_CHUNK = 1 << 16
_AFTER_EXIT_GRACE = 0.25  # pipes still held by leftovers once the main process is gone
_AFTER_KILL_GRACE = 2.0


class CappedBuffer:
    """Keeps the first `cap` bytes, counts the rest and drops it (a flood never grows memory)."""

    __slots__ = ("_cap", "_kept", "_parts", "total")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._parts: list[bytes] = []
        self._kept = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self._cap - self._kept
        if room > 0:
            piece = data[:room]
            self._parts.append(piece)
            self._kept += len(piece)

    @property
    def truncated(self) -> bool:
        return self.total > self._cap

    def data(self) -> bytes:
        return b"".join(self._parts)

    def text(self) -> str:
        return self.data().decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Captured:
    """What `pump` saw: output (decoded, capped), flags, and the main process' wait status."""

    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    returncode: int | None
    raw_stdout: bytes = b""

    def to_result(
        self, *, backend: str, exit_code: int | None, killed_by: KilledBy | None, duration: float,
        peak_memory: int | None,
    ) -> ExecResult:
        return ExecResult(
            stdout=self.stdout,
            stderr=self.stderr,
            exit_code=exit_code,
            timed_out=self.timed_out,
            killed_by=killed_by,
            duration=duration,
            peak_memory=peak_memory,
            stdout_truncated=self.stdout_truncated,
            stderr_truncated=self.stderr_truncated,
            backend=backend,
        )


def pump(
    proc: subprocess.Popen[bytes],
    *,
    stdin: bytes | None,
    cap: int,
    deadline: float,
    kill: Callable[[], None],
) -> Captured:
    """Run the I/O loop in the calling thread (no helper threads are left behind).

    `kill` must stop the whole process tree; it is called once at the deadline. The loop ends
    when both pipes closed and the main process exited, or shortly after the main process
    exited (a detached leftover may hold a pipe; the caller's cleanup kills it).
    """
    out, err = CappedBuffer(cap), CappedBuffer(cap)
    sinks = {}
    sel = selectors.DefaultSelector()
    for stream, buf in ((proc.stdout, out), (proc.stderr, err)):
        if stream is not None:
            os.set_blocking(stream.fileno(), False)
            sel.register(stream.fileno(), selectors.EVENT_READ)
            sinks[stream.fileno()] = buf
    pending = memoryview(stdin or b"")
    if proc.stdin is not None:
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
    timed_out = False
    exited_at: float | None = None
    hard_stop: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _AFTER_EXIT_GRACE:
                break
            if not timed_out and now >= deadline:
                timed_out = True
                kill()
                hard_stop = now + _AFTER_KILL_GRACE
            if hard_stop is not None and now >= hard_stop:
                break
            limit = hard_stop if hard_stop is not None else deadline
            for key, _ in sel.select(max(0.0, min(limit, now + 0.05) - now)):
                fd = key.fd
                if fd in sinks:
                    try:
                        data = os.read(fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        sinks[fd].add(data)
                    else:
                        sel.unregister(fd)
                else:
                    try:
                        pending = pending[os.write(fd, pending[:_CHUNK]) :]
                    except BlockingIOError:
                        continue
                    except OSError as exc:  # the code closed stdin early: not our error
                        if exc.errno not in (errno.EPIPE, errno.EBADF):
                            raise
                        pending = memoryview(b"")
                    if not pending:
                        sel.unregister(fd)
                        proc.stdin.close()  # type: ignore[union-attr]
        remaining = deadline - time.monotonic()
        if proc.poll() is None and remaining > 0 and not timed_out:
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            if not timed_out:
                timed_out = True
                kill()
            proc.wait()
    finally:
        sel.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
    return Captured(out.text(), err.text(), out.truncated, err.truncated, timed_out, proc.returncode, out.data())
