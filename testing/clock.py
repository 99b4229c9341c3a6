"""An injectable sleep that records each wait and returns at once, for RecoveryContext(sleep=...)."""

from __future__ import annotations

__all__ = ["RecordingSleep"]


class RecordingSleep:
    """`await sleep(seconds)` appends to `waits` and does not wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
