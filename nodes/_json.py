"""The JSON layers without LangGraph: the record a deterministic layer's try leaves (unicode_fix and parser_fix write it),
and the whole recovery of a JSON incident when no model is configured, which then takes one fixed route. The
workers of `kgot-errors repair --workers` settle such incidents with it: the graph's result, without loading
LangGraph in every worker (tests/unit/test_json_without_graph.py holds the two equal)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kgot_errors.nodes._base import NO_MODEL, attempt, fix_verdict, proven, with_input_damage
from kgot_errors.state import Layer, RecoveryState, RecoveryUpdate, Verdict
from kgot_errors.state.result import RecoveryResult, build_result

if TYPE_CHECKING:
    from kgot_errors.runtime.settings import Settings

__all__ = ["layer_update", "settle_without_model", "without_model"]


def layer_update(layer: Layer, state: RecoveryState, out: Any, *, started: float, now: float,
                 validator: str = "json+schema") -> RecoveryUpdate:
    """The update of one deterministic layer's try from its outcome (a JSON one, or parser_fix's for code, whose
    validator is ast.parse): a failed Attempt, or the proven fix and its Attempt."""
    evidence = {"steps": list(out.steps), "errors": list(out.errors),
                **({"changes": list(out.changes)} if getattr(out, "changes", ()) else {})}
    if not out.ok:
        return {"attempts": [attempt(layer, state, Verdict.FAILED, out.reason or "does not validate",
                                     validator=validator, evidence=evidence, started=started, now=now)]}
    reason = "valid as given" if not out.steps else "valid after " + ", ".join(out.steps)
    return {
        "attempts": [attempt(layer, state, fix_verdict(out), reason, validator=validator, evidence=evidence,
                             candidate=out.text, started=started, now=now)],
        "recovered": proven(layer, out),
    }


def without_model(settings: Settings) -> bool:
    """True if the graph's route for a JSON incident is fixed by these settings: no chat model, LLM correction
    on (it would skip with another reason), no person to ask."""
    from kgot_errors.errors import ConfigError
    from kgot_errors.runtime.model import make_model

    if not settings.syntax_error_management.llm_correction_enabled or settings.error_recovery.escalate_to_human:
        return False
    try:
        return make_model(settings) is None
    except ConfigError:  # a model named but unusable: the graph reports it
        return False


def settle_without_model(state: RecoveryState, settings: Settings,
                         clock: Callable[[], float] = time.monotonic, *, failed: Any = None) -> dict[str, Any]:
    """The result (as data) the graph gives a classified JSON incident (`content_kind` json, kind syntax or schema)
    under settings for which without_model() holds: content over max_content_chars refused before any layer;
    else unicode_fix, then parser_fix, each ending the incident if it proves a fix; else llm_fix, refine and vote
    each record `skipped` (no model) and finish writes the result. `failed` is repair_json's failed result for
    this content, schema and these settings' limits, when the caller has it: its layers' tries are not made again."""
    from kgot_errors.repair._layers import parser_layer, unicode_layer

    limits = settings.syntax_error_management
    incident = state["incident"]
    refused = RecoveryResult.refused_as_too_large(incident["content"], limits.max_content_chars)
    if refused is not None:  # as recover() refuses it: before any layer
        return refused.to_data()
    state = {**state, "attempts": list(state.get("attempts", ()))}
    made = {run.layer: run for run in failed.runs} if failed is not None else {}
    for layer, repair in ((Layer.UNICODE_FIX, unicode_layer), (Layer.PARSER_FIX, parser_layer)):
        started = clock()
        if layer in made:
            out, now = made[layer].outcome, started + made[layer].duration_s
        else:
            out = repair(incident["content"], incident.get("output_schema"), max_chars=limits.max_content_chars,
                         max_depth=limits.max_depth, policy=limits.changes)
            now = clock()
        update = layer_update(layer, state, with_input_damage(out, state, limits.changes), started=started, now=now)
        state["attempts"] += update["attempts"]
        if "recovered" in update:
            return build_result({**state, "recovered": update["recovered"]})
    for layer in (Layer.LLM_FIX, Layer.REFINE, Layer.VOTE):
        now = clock()
        state["attempts"].append(attempt(layer, state, Verdict.SKIPPED, NO_MODEL, started=now, now=now))
    return build_result(state)
