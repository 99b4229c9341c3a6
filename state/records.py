"""Record types: error kinds, layers, verdicts, and the Attempt/Candidate records every layer writes."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from typing_extensions import TypedDict  # pydantic (LangGraph Server's schemas) needs it on 3.11

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Attempt",
    "AttemptRecord",
    "Candidate",
    "CandidateRecord",
    "ErrorKind",
    "Layer",
    "Verdict",
]


class ErrorKind(StrEnum):
    """What went wrong, as classify sees it; decides the first layer."""

    SYNTAX = "syntax"  # malformed JSON or code text
    SCHEMA = "schema"  # well-formed output that does not fit the expected schema
    TRANSIENT = "transient"  # 429, 5xx, timeouts, dropped connections: worth retrying
    PERMANENT = "permanent"  # 400/401/403/404, bad configuration: retrying cannot help
    EXECUTION = "execution"  # generated code crashed or exited non-zero
    UNKNOWN = "unknown"


class Layer(StrEnum):
    """The recovery layers, cheapest first. The value is the graph node name."""

    CLASSIFY = "classify"
    UNICODE_FIX = "unicode_fix"
    PARSER_FIX = "parser_fix"
    LLM_FIX = "llm_fix"
    BACKOFF = "backoff"
    SANDBOX = "sandbox"
    REFINE = "refine"
    VOTE = "vote"
    HUMAN = "human"  # only when escalate_to_human is set: a person supplies the fix


class Verdict(StrEnum):
    """How one try of one layer ended. Only a validator can make it `recovered`."""

    RECOVERED = "recovered"
    DEGRADED = "degraded"  # a fix the policy accepts only with a mark: it changed the data (see `changes`)
    FAILED = "failed"
    SKIPPED = "skipped"  # the layer could not run here (no model, no sandbox, not its kind)
    ERROR = "error"  # the layer itself broke (a bug or broken infrastructure)


class AttemptRecord(TypedDict):
    """One try of one layer, as stored in the checkpointed state (plain data only)."""

    layer: str
    try_no: int
    verdict: str
    reason: str
    validator: str | None
    evidence: dict[str, Any]
    candidate: str | None
    duration_s: float
    llm_calls: int
    tokens: int


class CandidateRecord(TypedDict, total=False):
    """A value some layer proposed and a validator accepted (plain data)."""

    layer: str
    value: Any
    text: str
    changes: list[dict[str, str]]  # what the fix did to the data: {"kind", "path", "detail"}
    degraded: bool  # accepted only as degraded (the policy's word on `changes`)


class Attempt(BaseModel):
    """One try of one layer: what it did, what decided it, and the evidence."""

    model_config = ConfigDict(frozen=True)

    layer: Layer
    try_no: int = Field(ge=1)
    verdict: Verdict
    reason: str
    validator: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    candidate: str | None = None
    duration_s: float = 0.0
    llm_calls: int = 0
    tokens: int = 0

    def to_record(self) -> AttemptRecord:
        return AttemptRecord(**self.model_dump(mode="json"))  # type: ignore[typeddict-item]


class Candidate(BaseModel):
    """A proven value: the layer that produced it, the value and its text."""

    model_config = ConfigDict(frozen=True)

    layer: Layer
    value: Any
    text: str
