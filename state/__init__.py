"""State: the Incident input, the graph state, the RecoveryResult output and the records."""

from kgot_errors.state.graph_state import RecoveryInput, RecoveryOutput, RecoveryState, RecoveryUpdate
from kgot_errors.state.incident import ContentKind, Incident, IncidentData, Severity
from kgot_errors.state.records import Attempt, AttemptRecord, Candidate, CandidateRecord, ErrorKind, Layer, Verdict
from kgot_errors.state.result import RecoveryResult

__all__ = [
    "Attempt",
    "AttemptRecord",
    "Candidate",
    "CandidateRecord",
    "ContentKind",
    "ErrorKind",
    "Incident",
    "IncidentData",
    "Layer",
    "RecoveryInput",
    "RecoveryOutput",
    "RecoveryResult",
    "RecoveryState",
    "RecoveryUpdate",
    "Severity",
    "Verdict",
]
