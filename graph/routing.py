"""The escalation policy: pure functions of the state that pick each layer's successor.

    classify ── syntax/schema ─► unicode_fix ─► parser_fix ─► llm_fix ⟲ ─► refine ⟲ ─► vote ─► finish
             ├─ transient ─────► backoff ⟲ ─► finish          (permanent error mid-retry: refine)
             ├─ execution ─────► sandbox ─► refine
             ├─ unknown ───────► refine
             └─ permanent ─────► finish
    Any layer that proves a fix goes straight to finish.
"""

from __future__ import annotations

from typing import Literal

from kgot_errors.state import AttemptRecord, ErrorKind, Layer, RecoveryState, Verdict

__all__ = [
    "after_backoff",
    "after_classify",
    "after_llm_fix",
    "after_parser_fix",
    "after_refine",
    "after_sandbox",
    "after_unicode_fix",
    "retry_budget",
]

FINISH = "finish"


def _last(state: RecoveryState, layer: Layer) -> AttemptRecord | None:
    for a in reversed(state.get("attempts", ())):
        if a["layer"] == layer:
            return a
    return None


def _tries(state: RecoveryState, layer: Layer) -> int:
    return sum(1 for a in state.get("attempts", ()) if a["layer"] == layer)


def retry_budget(state: RecoveryState, layer: Layer) -> int:
    """Tries allowed for a looping layer, as fixed by classify for this incident."""
    return int(state.get("budgets", {}).get(str(layer), 1))


def _may_loop(state: RecoveryState, layer: Layer) -> bool:
    """Another try of `layer` is worth it: the last one failed (not skipped), budget left, progress made."""
    last = _last(state, layer)
    if last is None or last["verdict"] != Verdict.FAILED:
        return False
    if last["evidence"].get("no_progress") or last["evidence"].get("final"):
        return False
    return _tries(state, layer) < retry_budget(state, layer)


def after_classify(state: RecoveryState) -> Literal["unicode_fix", "backoff", "sandbox", "refine", "finish"]:
    kind = state.get("kind")
    if kind in (ErrorKind.SYNTAX, ErrorKind.SCHEMA):
        return "unicode_fix"
    if kind == ErrorKind.TRANSIENT:
        return "backoff"
    if kind == ErrorKind.EXECUTION:
        return "sandbox"
    if kind == ErrorKind.PERMANENT:
        return FINISH
    return "refine"


def after_unicode_fix(state: RecoveryState) -> Literal["parser_fix", "finish"]:
    return FINISH if state.get("recovered") else "parser_fix"


def after_parser_fix(state: RecoveryState) -> Literal["llm_fix", "finish"]:
    return FINISH if state.get("recovered") else "llm_fix"


def after_llm_fix(state: RecoveryState) -> Literal["llm_fix", "refine", "finish"]:
    if state.get("recovered"):
        return FINISH
    return "llm_fix" if _may_loop(state, Layer.LLM_FIX) else "refine"


def after_backoff(state: RecoveryState) -> Literal["backoff", "refine", "finish"]:
    if state.get("recovered"):
        return FINISH
    if _may_loop(state, Layer.BACKOFF):
        return "backoff"
    last = _last(state, Layer.BACKOFF)
    if last is not None and last["evidence"].get("kind") == ErrorKind.PERMANENT and state["incident"].get("arguments"):
        return "refine"  # the operation rejected its arguments: refine may fix them
    return FINISH


def after_sandbox(state: RecoveryState) -> Literal["refine", "finish"]:
    return FINISH if state.get("recovered") else "refine"


def after_refine(state: RecoveryState) -> Literal["refine", "vote", "finish"]:
    if state.get("recovered"):
        return FINISH
    return "refine" if _may_loop(state, Layer.REFINE) else "vote"
