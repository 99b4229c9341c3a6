"""llm_fix: asks the chat model to fix the output with the error fed back; never accepts a fix a validator did not prove."""

from __future__ import annotations

from langgraph.runtime import Runtime

from kgot_errors.nodes._pending import NO_MODEL, skip
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import Layer, RecoveryState, RecoveryUpdate

__all__ = ["llm_fix"]

LAYER = Layer.LLM_FIX


async def llm_fix(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Not built yet: records `skipped` with what is missing; never reports success."""
    ctx = context_of(runtime)
    if ctx.model is None:
        return skip(LAYER, state, ctx, NO_MODEL)
    return skip(LAYER, state, ctx, "llm_fix is not available in this build")
