"""refine: revises code or operation arguments from external feedback (validator errors, sandbox output); never trusts the model's own verdict."""

from __future__ import annotations

from langgraph.runtime import Runtime

from kgot_errors.nodes._pending import NO_MODEL, skip
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import Layer, RecoveryState, RecoveryUpdate

__all__ = ["refine"]

LAYER = Layer.REFINE


async def refine(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Not built yet: records `skipped` with what is missing; never reports success."""
    ctx = context_of(runtime)
    if ctx.model is None:
        return skip(LAYER, state, ctx, NO_MODEL)
    return skip(LAYER, state, ctx, "refine is not available in this build")
