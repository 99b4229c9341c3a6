"""The output record: RecoveryResult, built from the final state by the finish node."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from kgot_errors.state.records import Attempt, ErrorKind, Layer

__all__ = ["RecoveryResult"]


class RecoveryResult(BaseModel):
    """How one incident ended.

    `recovered` is True only when a validator proved the fix and it kept the data as it was
    (lossless coercions aside); `value` is then the repaired value (a JSON value, code text, or
    an operation's return value) and `recovered_by` the layer that proved it. A fix the policy
    accepts only as `degraded` (by default: a completed truncated document) has `recovered=False`,
    `outcome="degraded"`, its `value`, and `changes` listing what it did to the data (kind
    `coerced`/`added`/`removed`/`truncated`, the JSON path, a detail). `summary` says in one line
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
    def from_data(cls, data: dict[str, Any], *, thread_id: str | None = None) -> RecoveryResult:
        if thread_id is not None:
            data = {**data, "thread_id": thread_id}
        return cls.model_validate(data)

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def attempts_by(self, layer: Layer | str) -> list[Attempt]:
        return [a for a in self.attempts if a.layer == layer]
