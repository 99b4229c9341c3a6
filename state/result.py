"""The output record: RecoveryResult, and build_result, which derives it from a final state (the finish node's
work, and that of every layer that proves a fix)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from kgot_errors.state.records import Attempt, AttemptRecord, ErrorKind, Layer, Verdict

if TYPE_CHECKING:
    from kgot_errors.state.graph_state import RecoveryState

__all__ = ["RecoveryResult", "build_result"]


class RecoveryResult(BaseModel):
    """How one incident ended.

    `recovered` is True only when a validator proved the fix and it kept the data as it was
    (lossless coercions aside); `value` is then the repaired value (a JSON value, code text, or
    an operation's return value) and `recovered_by` the layer that proved it. A fix the policy
    accepts only as `degraded` (by default: a completed truncated document) has `recovered=False`,
    `outcome="degraded"`, its `value`, and `changes` listing what it did to the data (kind
    `coerced`/`added`/`removed`/`truncated`/`restructured`, the JSON path, a detail). `summary` says in one line
    what happened; `attempts` is the whole audit trail. `parsed` is the value as an instance of the
    pydantic model given as `schema` (the value itself for a JSON Schema dict; None with no value,
    or a degraded value the model refuses); it is not part of `to_data()`, so a result read back
    from the store has none.
    """

    model_config = ConfigDict(frozen=True)

    recovered: bool
    value: Any = None
    text: str | None = None
    recovered_by: Layer | None = None
    kind: ErrorKind
    outcome: str  # "recovered" | "degraded" | "not_recovered" | "escalated"
    summary: str
    attempts: list[Attempt]
    changes: list[dict[str, str]] = []
    thread_id: str | None = None
    llm_calls: int = 0
    tokens: int = 0
    duration_s: float = 0.0
    _parsed: Any = PrivateAttr(default=None)
    _typed: bool = PrivateAttr(default=False)

    @property
    def parsed(self) -> Any:
        if self._typed:
            return self._parsed
        return self.value if self.recovered or self.outcome == "degraded" else None

    def with_parsed(self, instance: Any) -> RecoveryResult:
        """This result with `parsed` set to `instance` (the model instance; None: the model refused the value)."""
        copy = self.model_copy()
        copy._parsed, copy._typed = instance, True
        return copy

    @classmethod
    def too_large(cls, described: str, limit: int) -> RecoveryResult:
        """Content over `max_content_chars` (`described`: e.g. "the content (9,000,000 characters)"): refused
        before any layer, so nothing is parsed, run or stored."""
        return cls(recovered=False, kind=ErrorKind.SYNTAX, outcome="not_recovered", attempts=[],
                   summary=f"not recovered (syntax): {described} holds more than max_content_chars ({limit:,}) "
                           "characters, the size limit; it was neither parsed nor stored")

    @classmethod
    def refused_as_too_large(cls, content: str | None, limit: int) -> RecoveryResult | None:
        """too_large's result for content over `limit` characters (max_content_chars); None when it is within."""
        size = len(content or "")
        return cls.too_large(f"the content ({size:,} characters)", limit) if size > limit else None

    @classmethod
    def from_data(cls, data: dict[str, Any], *, thread_id: str | None = None) -> RecoveryResult:
        if thread_id is not None:
            data = {**data, "thread_id": thread_id}
        return cls.model_validate(data)

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def attempts_by(self, layer: Layer | str) -> list[Attempt]:
        return [a for a in self.attempts if a.layer == layer]


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
