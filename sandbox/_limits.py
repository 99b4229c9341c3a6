"""Resource limits for one sandboxed run, as a frozen value object (the original system's defaults)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["Limits", "parse_size"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: float | str) -> int:
    """Bytes from 256m / 1g / 512k / '1048576' / 1048576 (binary units, docker style)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        size = int(value)
    else:
        text = str(value).strip().lower()
        for suffix in ("ib", "b"):
            if text.endswith(suffix) and len(text) > len(suffix):
                text = text[: -len(suffix)]
                break
        unit = text[-1:] if text[-1:] in _UNITS else ""
        number = text[: len(text) - len(unit)].strip()
        try:
            size = int(float(number) * _UNITS[unit])
        except ValueError:
            raise ValueError(f"not a size: {value!r} (use e.g. 256m, 1g or a byte count)") from None
    if size <= 0:
        raise ValueError(f"size must be positive: {value!r}")
    return size


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may use. Sizes accept docker-style strings ("256m") and are stored as bytes.

    timeout       wall-clock seconds before the whole process tree is killed
    memory        RAM (+ swap) for all processes of the run together (cgroup / docker mem_limit)
    cpus          CPU share (0.5 = half a core, a CFS quota)
    pids          processes + threads at once (stops fork and thread bombs)
    output_bytes  kept per stream (stdout, stderr); the rest is read and dropped
    file_size     largest file the code may write (RLIMIT_FSIZE), also each tmpfs' size
    nofile        open file descriptors per process
    """

    timeout: float = 30.0
    memory: int = 256 << 20
    cpus: float = 0.5
    pids: int = 64
    output_bytes: int = 1 << 20
    file_size: int = 64 << 20
    nofile: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "memory", parse_size(self.memory))
        object.__setattr__(self, "output_bytes", parse_size(self.output_bytes))
        object.__setattr__(self, "file_size", parse_size(self.file_size))
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        object.__setattr__(self, "timeout", float(self.timeout))
        if not (isinstance(self.cpus, (int, float)) and 0 < self.cpus <= 1024):
            raise ValueError(f"cpus must be > 0, got {self.cpus!r}")
        object.__setattr__(self, "cpus", float(self.cpus))
        if self.memory < 16 << 20:
            raise ValueError("memory below 16m cannot start Python")
        for name in ("pids", "nofile"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 8:
                raise ValueError(f"{name} must be an integer >= 8, got {value!r}")

    @classmethod
    def of(cls, **values: Any) -> Limits:
        """Limits from keyword values, rejecting unknown names (typos must not silently widen limits)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown sandbox limit(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def with_timeout(self, timeout: float | None) -> Limits:
        """The same limits with another wall timeout (None keeps this one)."""
        return self if timeout is None else replace(self, timeout=timeout)

    @property
    def cpu_seconds(self) -> int:
        """RLIMIT_CPU per process: the most CPU one process can burn inside the wall timeout, plus one."""
        return math.ceil(self.timeout * max(self.cpus, 1.0)) + 1

    @property
    def address_space(self) -> int:
        """RLIMIT_AS per process: a loose second line behind the memory cgroup (threads reserve VM)."""
        return max(self.memory * 4, 1 << 30)
