"""Helpers every layer node uses: counting tries, writing Attempt records, skipping, running CPU work off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kgot_errors.state import AttemptRecord, CandidateRecord, Layer, RecoveryState, RecoveryUpdate, Verdict

if TYPE_CHECKING:
    from kgot_errors.runtime.context import RecoveryContext

__all__ = ["CANDIDATE_CHARS", "NO_MODEL", "attempt", "fix_verdict", "offload", "proven", "recorder", "skip", "tries",
           "with_input_damage"]

NO_MODEL = "no chat model configured (set KGOT_MODEL with OPENAI_API_KEY or OPENAI_BASE_URL, or pass model=)"

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


def recorder(layer: Layer, state: RecoveryState, ctx: RecoveryContext,
             started: float | None = None) -> Callable[..., RecoveryUpdate]:
    """`record(verdict, reason, **fields)`: the update that appends this try's one Attempt, timed from now."""
    begun = ctx.clock() if started is None else started

    def record(verdict: Verdict, reason: str, **fields: Any) -> RecoveryUpdate:
        return {"attempts": [attempt(layer, state, verdict, reason, started=begun, now=ctx.clock(), **fields)]}

    return record


def proven(layer: Layer, out: Any) -> CandidateRecord:
    """The `recovered` entry of a validated fix (an Outcome or Proof): value, text and its changes to the data."""
    changes = list(getattr(out, "changes", ()) or ())
    return CandidateRecord(layer=str(layer), value=out.value, text=out.text or "", changes=changes,
                           degraded=bool(getattr(out, "degraded", False)))


def with_input_damage(out: Any, state: RecoveryState, policy: dict[str, str] | None) -> Any:
    """A fix read from content whose bytes the edge had to replace (invalid UTF-8, lone surrogates) carries that
    loss as a `removed` change, which the policy then judges (by default: no fix, the original data is gone)."""
    from kgot_errors.repair._outcome import with_input_damage as judged

    notes = [n for n in state["incident"].get("input_notes") or () if n.startswith("content:")]
    return judged(out, notes, policy)


def fix_verdict(out: Any) -> Verdict:
    """`recovered`, or `degraded` for a fix the policy accepts only with a mark."""
    return Verdict.DEGRADED if getattr(out, "degraded", False) else Verdict.RECOVERED


def skip(layer: Layer, state: RecoveryState, ctx: RecoveryContext, reason: str) -> RecoveryUpdate:
    """The layer cannot run here: one `skipped` Attempt saying why (never a pretended success)."""
    return recorder(layer, state, ctx)(Verdict.SKIPPED, reason)


async def offload(fn: Callable[..., T], text: str, *args: Any, **kwargs: Any) -> T:
    """Run CPU-bound repair work inline for small inputs, in a thread for large ones."""
    if len(text) < _OFFLOAD_CHARS:
        return fn(text, *args, **kwargs)
    return await asyncio.to_thread(fn, text, *args, **kwargs)
