"""parser_fix: extracts and repairs JSON (fences, think blocks, prose, json-repair, schema coercion) or Python (fences, dedent, ast.parse); never calls the LLM."""

from __future__ import annotations

from langgraph.runtime import Runtime

from kgot_errors.nodes._base import attempt, offload, with_input_damage
from kgot_errors.nodes._json import layer_update
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import ContentKind, Layer, RecoveryState, RecoveryUpdate, Verdict

__all__ = ["parser_fix"]

LAYER = Layer.PARSER_FIX


async def parser_fix(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Repair the content deterministically; recovered only when the parser and schema validators accept it."""
    ctx = context_of(runtime)
    started = ctx.clock()
    text = state["incident"].get("content")
    kind = state.get("content_kind")
    if text is None:
        return {"attempts": [attempt(LAYER, state, Verdict.SKIPPED, "the incident carries no failing content",
                                     started=started, now=ctx.clock())]}
    limits = ctx.settings.syntax_error_management
    if kind == ContentKind.PYTHON:
        from kgot_errors.nodes._code import code_layer

        out = await offload(code_layer, text)
        validator = "ast.parse"
    elif kind == ContentKind.JSON:
        from kgot_errors.repair._layers import parser_layer

        out = await offload(parser_layer, text, state["incident"].get("output_schema"),
                            max_chars=limits.max_content_chars, max_depth=limits.max_depth, policy=limits.changes)
        out = with_input_damage(out, state, limits.changes)
        validator = "json+schema"
    else:
        return {"attempts": [attempt(LAYER, state, Verdict.SKIPPED,
                                     f"content is {kind or 'empty'}: nothing a parser can validate",
                                     started=started, now=ctx.clock())]}
    return layer_update(LAYER, state, out, started=started, now=ctx.clock(), validator=validator)
