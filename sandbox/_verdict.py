"""How a run ended, decided from what the supervisor and the host observed (never from the program's word alone)."""

from __future__ import annotations

import ast
import os
import signal
from dataclasses import dataclass
from typing import Any

from kgot_errors.sandbox._result import Ending, KilledBy

__all__ = ["Decision", "decide"]

_CPU_SLACK = 0.05  # RLIMIT_CPU fires on whole ticks


@dataclass(frozen=True, slots=True)
class Decision:
    exit_code: int | None
    signal: int | None
    exception: str | None
    killed_by: KilledBy | None
    timed_out: bool
    ending: Ending


def _records(raw: bytes) -> list[tuple[Any, ...]] | None:
    """The runner's record(s); None when they are not what the runner writes (the program wrote there)."""
    if not raw:
        return []
    found = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            item = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        if not isinstance(item, tuple) or not item or item[0] not in ("return", "exit", "exception"):
            return None
        found.append(item)
    return found


def decide(verdict: dict[str, Any] | None, *, host_timed_out: bool, host_status: int | None, oom: bool) -> Decision:
    """Combine the supervisor's verdict with the host's view.

    `verdict` is the supervisor's (None when it never came: the supervisor died or was cut off);
    `host_status` is the outer exit status (bwrap's or the container's), `oom` whether the run's cgroup
    saw an OOM kill. exit_code is the wait status', except that a non-zero SystemExit the runner saw is
    kept (the kernel keeps 8 bits of it); an uncaught exception is reported as `exception` even when
    something later forced status 0. A record can only turn a success into a failure, never back.
    """
    if verdict is None:
        timed_out = host_timed_out
        killed: KilledBy | None = "timeout" if timed_out else ("memory" if oom else None)
        return Decision(None if host_status in (None, 0) else host_status, None, None, killed, timed_out,
                        "timeout" if timed_out else ("memory" if oom else "lost"))
    status = verdict.get("status")
    timed_out = bool(verdict.get("timed_out")) or host_timed_out
    sig = exit_code = None
    if isinstance(status, int) and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        exit_code = 128 + sig
    elif isinstance(status, int) and os.WIFEXITED(status):
        exit_code = os.WEXITSTATUS(status)
    records = _records(verdict.get("record") or b"")
    exception = None
    if records is None or len(records) > 1:
        exception = "<forged ending record>"
    elif records:
        rec = records[0]
        if rec[0] == "exception":
            exception = str(rec[1]) if len(rec) > 1 else "<unknown>"
        elif rec[0] == "exit" and len(rec) > 1 and sig is None and exit_code is not None and rec[1] != 0:
            value = rec[1]  # a failure the runner saw stays one: sys.exit(256) is 256, not the kernel's 0
            exit_code = value if isinstance(value, int) and not isinstance(value, bool) else (exit_code or 1)
    cpu = float(verdict.get("cpu") or 0.0)
    limit = float(verdict.get("cpu_limit") or 0.0)
    killed = None
    if timed_out:
        killed = "timeout"
    elif sig == signal.SIGKILL and (oom or (verdict.get("oom") or 0) > 0):
        killed = "memory"
    elif sig in (signal.SIGXCPU, signal.SIGKILL) and limit > 0 and cpu >= limit - _CPU_SLACK:
        killed = "cpu"
    if killed:
        ending: Ending = killed
    elif exception:
        ending = "exception"
    elif sig is not None:
        ending = "signal"
    elif exit_code is None:
        ending = "lost"
    else:
        ending = "exit"
    return Decision(exit_code, sig, exception, killed, timed_out, ending)
