"""human: pauses the thread for a person's fix (a LangGraph interrupt) and accepts it only if the validators do; never guesses."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from kgot_errors.nodes._base import attempt, fix_verdict, proven
from kgot_errors.nodes._validate import validate_candidate
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import Layer, RecoveryState, RecoveryUpdate, Verdict

__all__ = ["GIVE_UP", "escalation_request", "human"]

LAYER = Layer.HUMAN
GIVE_UP = {"__give_up__": True}
"""Resume value that ends the thread not recovered (LangGraph cannot resume with a bare None)."""
_CONTENT_CHARS = 4_000


def escalation_request(state: RecoveryState) -> dict[str, Any]:
    """What the person sees: the error, the content, what each layer tried, the best candidates, the vote table.

    Pure: the node re-runs from its top when resumed, so this must not change anything.
    """
    from kgot_errors.state.result import build_result

    incident = state["incident"]
    attempts = state.get("attempts", [])
    content = incident.get("content")
    last_human = next((a for a in reversed(attempts) if a["layer"] == LAYER), None)
    return {
        "question": "No layer could prove a fix. Resume with the corrected value, "
                    'or with {"__give_up__": true} to end it not recovered.',
        "summary": build_result(state)["summary"],
        "kind": state.get("kind"),
        "error": {"type": incident.get("error_type") or None, "message": (incident.get("message") or "")[:2000]},
        "content": content[:_CONTENT_CHARS] if content else None,
        "content_kind": state.get("content_kind"),
        "output_schema": incident.get("output_schema"),
        "attempts": [{k: a[k] for k in ("layer", "try_no", "verdict", "reason")} for a in attempts],
        "best_candidates": [a["candidate"] for a in attempts if a["candidate"]][-3:],
        "vote_table": next((a["evidence"]["votes"] for a in reversed(attempts) if "votes" in a["evidence"]), None),
        "rejected": last_human["reason"] if last_human else None,
    }


async def human(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Ask a person for the fix; validate it like any other candidate before accepting it."""
    answer = interrupt(escalation_request(state))
    ctx = context_of(runtime)
    started = ctx.clock()
    if answer is None or answer == GIVE_UP:
        return {"attempts": [attempt(LAYER, state, Verdict.FAILED, "the person gave up", evidence={"final": True},
                                     started=started, now=ctx.clock())]}
    outcome, validator = validate_candidate(answer, content_kind=state.get("content_kind"),
                                            schema=state["incident"].get("output_schema"),
                                            limits=ctx.settings.syntax_error_management)
    evidence = {"steps": list(outcome.steps), "errors": list(outcome.errors)}
    if not outcome.ok:
        return {"attempts": [attempt(LAYER, state, Verdict.FAILED, f"fix rejected: {outcome.reason}",
                                     validator=validator, evidence=evidence, started=started, now=ctx.clock())]}
    return {
        "attempts": [attempt(LAYER, state, fix_verdict(outcome), "fix supplied by a person and validated",
                             validator=validator, evidence=evidence, candidate=outcome.text, started=started,
                             now=ctx.clock())],
        "recovered": proven(LAYER, outcome),
    }
