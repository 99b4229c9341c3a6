"""unicode_fix: repairs encoding damage in JSON text (BOM, invisible characters, smart quotes, mojibake, double escapes); never changes structure, never calls out."""

from __future__ import annotations

from langgraph.runtime import Runtime

from kgot_errors.nodes._base import attempt, offload, with_input_damage
from kgot_errors.nodes._json import layer_update
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import ContentKind, Layer, RecoveryState, RecoveryUpdate, Verdict

__all__ = ["unicode_fix"]

LAYER = Layer.UNICODE_FIX


async def unicode_fix(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Normalise the text and accept it only if it then parses as strict JSON and fits the schema."""
    from kgot_errors.repair._layers import unicode_layer

    ctx = context_of(runtime)
    started = ctx.clock()
    text = state["incident"].get("content")
    if text is None:
        return {"attempts": [attempt(LAYER, state, Verdict.SKIPPED, "the incident carries no failing content",
                                     started=started, now=ctx.clock())]}
    if state.get("content_kind") != ContentKind.JSON:
        return {"attempts": [attempt(LAYER, state, Verdict.SKIPPED,
                                     f"content is {state.get('content_kind') or 'empty'}, not JSON",
                                     started=started, now=ctx.clock())]}
    limits = ctx.settings.syntax_error_management
    out = await offload(unicode_layer, text, state["incident"].get("output_schema"),
                        max_chars=limits.max_content_chars, max_depth=limits.max_depth, policy=limits.changes)
    out = with_input_damage(out, state, limits.changes)
    return layer_update(LAYER, state, out, started=started, now=ctx.clock())
