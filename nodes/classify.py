"""classify: maps a failure to an ErrorKind by exception type, then HTTP status, then content; never repairs."""

from __future__ import annotations

from langgraph.runtime import Runtime

from kgot_errors.errors import InvalidIncident
from kgot_errors.repair._classify import classify_incident
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import Incident, IncidentData, Layer, RecoveryState, RecoveryUpdate

__all__ = ["classify"]


HUMAN_ROUNDS = 100
"""With escalate_to_human, how many rejected fixes a thread takes before it ends not recovered."""


def _budgets(ctx: RecoveryContext) -> dict[str, int]:
    s = ctx.settings
    return {
        Layer.LLM_FIX: s.syntax_error_management.max_retries,
        Layer.BACKOFF: s.api_error_management.max_retries,
        Layer.REFINE: s.error_recovery.max_refinement_iterations,
        Layer.HUMAN: HUMAN_ROUNDS if s.error_recovery.escalate_to_human else 0,
    }


def _incident_of(state: RecoveryState) -> IncidentData:
    """The graph's input incident, or InvalidIncident naming what is missing (as recover() would say it)."""
    incident = state.get("incident")
    if isinstance(incident, dict) and incident.get("error_type") and isinstance(incident.get("message"), str):
        return incident
    if incident is None:
        raise InvalidIncident('the graph\'s input is {"incident": {...}}, with error_type and message')
    Incident.parse(incident)  # raises InvalidIncident with the field at fault
    raise InvalidIncident("invalid incident: error_type and message are required")


async def classify(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Decide the error kind and fix the retry budgets for this incident; never repairs or calls out."""
    ctx = context_of(runtime)
    kind, content_kind, rule = classify_incident(_incident_of(state))
    return {
        "kind": str(kind),
        "content_kind": str(content_kind) if content_kind else None,
        "classified_by": rule,
        "budgets": {str(k): v for k, v in _budgets(ctx).items()},
    }
