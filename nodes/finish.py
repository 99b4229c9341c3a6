"""finish: writes the RecoveryResult from the attempt records; never repairs anything itself."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.state import AttemptRecord, ErrorKind, RecoveryState, RecoveryUpdate, Verdict

__all__ = ["build_result", "finish", "paused_result"]


def _last_per_layer(attempts: list[AttemptRecord]) -> list[AttemptRecord]:
    last: dict[str, AttemptRecord] = {}
    for a in attempts:
        last.pop(a["layer"], None)
        last[a["layer"]] = a
    return list(last.values())


def _grouped(attempts: list[AttemptRecord]) -> dict[tuple[str, str], list[str]]:
    """Layers that ended the same way, together: "llm_fix, refine, vote skipped: no chat model..."."""
    groups: dict[tuple[str, str], list[str]] = {}
    for a in attempts:
        groups.setdefault((a["verdict"], a["reason"]), []).append(a["layer"])
    return groups


def _summary(state: RecoveryState, attempts: list[AttemptRecord]) -> tuple[str, str]:
    kind = state.get("kind", ErrorKind.UNKNOWN)
    recovered = state.get("recovered")
    if recovered:
        proof = next((a for a in reversed(attempts) if a["verdict"] in (Verdict.RECOVERED, Verdict.DEGRADED)), None)
        how = f": {proof['reason']} ({proof['validator']})" if proof else ""
        if recovered.get("degraded"):
            kinds = ", ".join(sorted({c["kind"] for c in recovered.get("changes", ())}))
            return "degraded", f"degraded fix by {recovered['layer']} after {len(attempts)} attempt(s), it changes " \
                               f"the data ({kinds}; see changes){how}"
        return "recovered", f"recovered by {recovered['layer']} after {len(attempts)} attempt(s){how}"
    escalated = any(a["evidence"].get("escalated") for a in attempts)
    if kind == ErrorKind.PERMANENT and not attempts:
        return "not_recovered", f"not recovered: permanent error ({state.get('classified_by', 'classified')}); " \
                                "retrying cannot help"
    tried = "; ".join(f"{', '.join(layers)} {verdict}: {reason}" for (verdict, reason), layers in
                      _grouped(_last_per_layer(attempts)).items())
    outcome = "escalated" if escalated else "not_recovered"
    return outcome, f"not recovered ({kind}): {tried or 'no layer applied'}"


def build_result(state: RecoveryState) -> dict[str, Any]:
    """The RecoveryResult as plain data, derived from the state alone."""
    attempts = list(state.get("attempts", ()))
    recovered = state.get("recovered")
    outcome, summary = _summary(state, attempts)
    notes = state["incident"].get("input_notes") or []
    if notes:
        summary += " [input: " + "; ".join(notes) + "]"
    return {
        "recovered": bool(recovered) and not recovered.get("degraded"),
        "value": recovered["value"] if recovered else None,
        "text": recovered["text"] if recovered else None,
        "recovered_by": recovered["layer"] if recovered else None,
        "kind": state.get("kind", ErrorKind.UNKNOWN),
        "outcome": outcome,
        "summary": summary,
        "changes": list(recovered.get("changes", ())) if recovered else [],
        "attempts": attempts,
        "llm_calls": sum(a["llm_calls"] for a in attempts),
        "tokens": sum(a["tokens"] for a in attempts),
        "duration_s": round(sum(a["duration_s"] for a in attempts), 6),
    }


def paused_result(state: RecoveryState, thread_id: str | None) -> dict[str, Any]:
    """The result of a thread paused for a person: not recovered (yet), outcome `escalated`."""
    result = build_result(state)
    how = f"kgot-errors resume {thread_id} --value FILE" if thread_id else "resume it with a value"
    result.update(outcome="escalated", summary=f"waiting for a person's fix ({how}): {result['summary']}")
    return result


async def finish(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Write the result every caller reads: recovered, value, layer, summary, the attempts."""
    return {"result": build_result(state)}
