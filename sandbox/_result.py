"""The outcome of one sandboxed run, as plain frozen data (JSON-safe via to_dict, for checkpoints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["ExecResult", "KilledBy", "killed_reason"]

KilledBy = Literal["timeout", "memory", "cpu"]


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What the code printed and how it ended. `exit_code` is negative for a signal (-9 = SIGKILL)."""

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

    @property
    def ok(self) -> bool:
        """Exited 0 on its own (not killed, not timed out)."""
        return self.exit_code == 0 and not self.timed_out and self.killed_by is None

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


def killed_reason(*, timed_out: bool, exit_code: int | None, oom: bool) -> KilledBy | None:
    """Why the sandbox (not the code) ended the run: wall timeout, memory limit, CPU-time limit, or None."""
    if timed_out:
        return "timeout"
    if oom and exit_code is not None and exit_code > 128:
        return "memory"
    if exit_code == SIGXCPU_EXIT:
        return "cpu"
    return None
