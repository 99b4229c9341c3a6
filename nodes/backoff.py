"""backoff: re-runs the failed operation after a jittered exponential wait; never retries permanent errors."""

from __future__ import annotations

from langgraph.runtime import Runtime

from kgot_errors.nodes._pending import skip
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import Layer, RecoveryState, RecoveryUpdate

__all__ = ["backoff"]

LAYER = Layer.BACKOFF


async def backoff(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Not built yet: records `skipped` with what is missing; never reports success."""
    ctx = context_of(runtime)
    name = state["incident"].get("operation")
    if not name:
        return skip(LAYER, state, ctx, "the incident names no operation to re-run")
    if name not in ctx.operations:
        return skip(LAYER, state, ctx, f"operation {name!r} is not registered in the runtime context")
    return skip(LAYER, state, ctx, "backoff is not available in this build")
