"""sandbox: runs code in an isolated backend and accepts it only on exit 0 (and expected output); never runs code unisolated."""

from __future__ import annotations

from langgraph.runtime import Runtime

from kgot_errors.nodes._pending import skip
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import Layer, RecoveryState, RecoveryUpdate

__all__ = ["sandbox"]

LAYER = Layer.SANDBOX


async def sandbox(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Not built yet: records `skipped` with what is missing; never reports success."""
    ctx = context_of(runtime)
    if ctx.sandbox is None:
        return skip(LAYER, state, ctx, "no sandbox backend configured: code is never run unisolated")
    return skip(LAYER, state, ctx, "sandbox is not available in this build")
