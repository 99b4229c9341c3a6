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


def _incident_of(state: RecoveryState) -> tuple[IncidentData, bool]:
    """The graph's input incident and whether it had to be completed (a mapping of some Incident fields, e.g.
    content alone, is validated and given the defaults of the rest); InvalidIncident names a field at fault."""
    incident = state.get("incident")
    if isinstance(incident, dict) and isinstance(incident.get("error_type"), str) \
            and isinstance(incident.get("message"), str):
        return incident, False
    if incident is None:
        raise InvalidIncident('the graph\'s input is {"incident": {...}} (Incident fields: content, output_schema, '
                              'error_type, message, ...)')
    return Incident.parse(incident).to_data(), True


async def classify(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Decide the error kind and fix the retry budgets for this incident; never repairs or calls out."""
    ctx = context_of(runtime)
    incident, completed = _incident_of(state)
    kind, content_kind, rule = classify_incident(incident)
    return {
        **({"incident": incident} if completed else {}),
        "kind": str(kind),
        "content_kind": str(content_kind) if content_kind else None,
        "classified_by": rule,
        "budgets": {str(k): v for k, v in _budgets(ctx).items()},
    }
