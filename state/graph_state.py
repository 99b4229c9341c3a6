"""The graph's state, input and output schemas: plain data, append-only attempt log."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from typing_extensions import TypedDict  # pydantic (LangGraph Server's schemas) needs it on 3.11

from kgot_errors.state.incident import IncidentData
from kgot_errors.state.records import AttemptRecord, CandidateRecord

__all__ = ["RecoveryInput", "RecoveryOutput", "RecoveryState", "RecoveryUpdate"]


class RecoveryInput(TypedDict):
    """What callers send: `{"incident": {...}}` (see Incident for the fields)."""

    incident: IncidentData


class RecoveryOutput(TypedDict):
    """What callers get back: `{"result": {...}}` (see RecoveryResult for the fields)."""

    result: dict[str, Any]


class RecoveryState(TypedDict, total=False):
    """Everything a recovery carries between layers and across checkpoints.

    Counters (tries per layer, LLM calls) are derived from `attempts`, never stored twice,
    so a resumed thread continues its budgets instead of resetting them.
    """

    incident: IncidentData
    kind: str  # ErrorKind, set by classify
    content_kind: str | None  # ContentKind of the failing content, set by classify
    classified_by: str  # the classify rule that decided `kind`
    budgets: dict[str, int]  # tries allowed per looping layer, fixed at classify time
    attempts: Annotated[list[AttemptRecord], operator.add]
    recovered: CandidateRecord | None  # the proven fix, set by the layer that proved it
    poll: dict[str, Any] | None  # the open vote (target, rounds, temperature, request), set by vote's first pass
    ballots: Annotated[list[dict[str, Any]], operator.add]  # one per vote sample, tallied by vote's second pass
    in_flight: dict[str, Any] | None  # the operation call backoff recorded before making it (see nodes/backoff.py)
    result: dict[str, Any]


RecoveryUpdate = dict[str, Any]
"""A node's partial update: only the keys it changes."""
