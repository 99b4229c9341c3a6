"""vote: samples several candidates and accepts the majority only above the consensus threshold; never accepts a tie."""

from __future__ import annotations

from langgraph.runtime import Runtime

from kgot_errors.nodes._pending import NO_MODEL, skip
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import Layer, RecoveryState, RecoveryUpdate

__all__ = ["vote"]

LAYER = Layer.VOTE


async def vote(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Not built yet: records `skipped` with what is missing; never reports success."""
    ctx = context_of(runtime)
    if ctx.model is None:
        return skip(LAYER, state, ctx, NO_MODEL)
    return skip(LAYER, state, ctx, "vote is not available in this build")
