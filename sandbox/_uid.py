"""The uid a run's program gets: drawn per run from a range of its own (never 65534, never a host account)."""

from __future__ import annotations

import secrets

__all__ = ["UID_RANGE", "run_uid"]

UID_RANGE = range(1_200_000_000, 1_200_000_000 + (1 << 24))


def run_uid() -> int:
    """A fresh uid for one run: concurrent runs share no per-uid state (inotify instances, pipe pages,
    signals, files) with each other or with host `nobody` processes."""
    return UID_RANGE.start + secrets.randbelow(len(UID_RANGE))
