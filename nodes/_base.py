"""Helpers every layer node uses: counting tries, writing Attempt records, running CPU work off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from kgot_errors.state import AttemptRecord, Layer, RecoveryState, Verdict

__all__ = ["CANDIDATE_CHARS", "attempt", "offload", "tries"]

CANDIDATE_CHARS = 2_000
"""Attempt records keep this much of a candidate; the proven value itself is kept whole."""

_OFFLOAD_CHARS = 64_000
T = TypeVar("T")


def tries(state: RecoveryState, layer: Layer) -> int:
    """How many attempts `layer` has recorded so far (survives checkpoints and resumes)."""
    return sum(1 for a in state.get("attempts", ()) if a["layer"] == layer)


def attempt(
    layer: Layer,
    state: RecoveryState,
    verdict: Verdict,
    reason: str,
    *,
    started: float,
    now: float,
    validator: str | None = None,
    evidence: dict[str, Any] | None = None,
    candidate: str | None = None,
    llm_calls: int = 0,
    tokens: int = 0,
) -> AttemptRecord:
    """One Attempt record for the next try of `layer`."""
    if candidate is not None and len(candidate) > CANDIDATE_CHARS:
        candidate = candidate[:CANDIDATE_CHARS] + f"... [{len(candidate) - CANDIDATE_CHARS} more chars]"
    return AttemptRecord(
        layer=str(layer),
        try_no=tries(state, layer) + 1,
        verdict=str(verdict),
        reason=reason,
        validator=validator,
        evidence=evidence or {},
        candidate=candidate,
        duration_s=round(max(0.0, now - started), 6),
        llm_calls=llm_calls,
        tokens=tokens,
    )


async def offload(fn: Callable[..., T], text: str, *args: Any, **kwargs: Any) -> T:
    """Run CPU-bound repair work inline for small inputs, in a thread for large ones."""
    if len(text) < _OFFLOAD_CHARS:
        return fn(text, *args, **kwargs)
    return await asyncio.to_thread(fn, text, *args, **kwargs)
