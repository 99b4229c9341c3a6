"""The outcome of one sandboxed run, as plain frozen data (JSON-safe via to_dict, for checkpoints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Ending", "ExecResult", "KilledBy", "killed_reason"]

KilledBy = Literal["timeout", "memory", "cpu"]
# How the program ended: it exited (exit_code), raised (exception), died of a signal it did not get from the
# sandbox, was killed by a limit, or the sandbox lost track of it (never counted as a success).
Ending = Literal["exit", "exception", "signal", "timeout", "memory", "cpu", "lost"]


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What the code printed and how it ended.

    `exit_code` is the program's own exit value (sys.exit(256) is 256), 128+N for a signal N (then `signal`
    is N); `exception` names an uncaught exception; `ending` says which of these it was. The supervisor
    inside the sandbox records them, not the program: nothing the code prints can change them.
    """

    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool
    killed_by: KilledBy | None
    duration: float
    peak_memory: int | None
    stdout_truncated: bool
    stderr_truncated: bool
    backend: str
    signal: int | None = None
    exception: str | None = None
    ending: Ending | None = None

    @property
    def ok(self) -> bool:
        """Exited 0 on its own (not killed, not timed out, no uncaught exception, not lost)."""
        return (self.exit_code == 0 and not self.timed_out and self.killed_by is None and self.exception is None
                and self.ending in (None, "exit"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (str, int, float, bool, None), including `ok`."""
        data = asdict(self)
        data["ok"] = self.ok
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecResult:
        """Inverse of to_dict (extra keys such as `ok` are ignored)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


SIGXCPU_EXIT = 128 + 24  # RLIMIT_CPU's SIGXCPU, as a shell / docker exit status


def killed_reason(*, timed_out: bool, exit_code: int | None, oom: bool, signaled: bool = False) -> KilledBy | None:
    """Why the sandbox (not the code) ended the run, for the unsafe backend (no supervisor): wall timeout,
    memory limit, SIGXCPU seen as a signal (an exit(152) is the program's own), or None."""
    if timed_out:
        return "timeout"
    if oom and exit_code is not None and exit_code > 128:
        return "memory"
    if signaled and exit_code == SIGXCPU_EXIT:
        return "cpu"
    return None
