"""The escalation policy: pure functions of the state that pick each layer's successor.

    classify ── syntax/schema ─► unicode_fix ─► parser_fix ─► llm_fix ⟲ ─► refine ⟲ ─► vote ─► finish
                                                      (vote ─Send×N─► vote_sample ─► vote: open, sample, tally)
             ├─ transient ─────► backoff ⟲ ─► finish          (permanent error mid-retry: refine)
             ├─ execution ─────► sandbox ─► refine
             ├─ unknown ───────► refine
             └─ permanent ─────► finish
    Any layer that proves a fix ends the incident (it writes the result itself); `finish`
    writes the result of the unrecovered endings. With escalate_to_human set, every
    ending without a fix goes to `human` instead (it pauses the thread until a person answers).
"""

from __future__ import annotations

from typing import Literal

from langgraph.types import Send

from kgot_errors.state import AttemptRecord, ErrorKind, Layer, RecoveryState, Verdict

__all__ = [
    "after_backoff",
    "after_classify",
    "after_human",
    "after_llm_fix",
    "after_parser_fix",
    "after_refine",
    "after_sandbox",
    "after_unicode_fix",
    "after_vote",
    "retry_budget",
]

FINISH = "finish"
DONE = "__end__"
"""A proven fix ends the incident at once: the layer that proved it already wrote the result."""


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


def _end(state: RecoveryState) -> Literal["human", "finish", "__end__"]:
    """Where an incident ends: done when fixed, `human` when a person should see a failure, else finish."""
    if state.get("recovered"):
        return DONE
    allowed = int(state.get("budgets", {}).get(str(Layer.HUMAN), 0))
    last = _last(state, Layer.HUMAN)
    if allowed and _tries(state, Layer.HUMAN) < allowed and not (last and last["evidence"].get("final")):
        return "human"
    return FINISH


def after_classify(state: RecoveryState) -> Literal["unicode_fix", "backoff", "sandbox", "refine", "human", "finish"]:
    kind = state.get("kind")
    if kind in (ErrorKind.SYNTAX, ErrorKind.SCHEMA):
        return "unicode_fix"
    if kind == ErrorKind.TRANSIENT:
        return "backoff"
    if kind == ErrorKind.EXECUTION:
        return "sandbox"
    if kind == ErrorKind.PERMANENT:
        return _end(state)
    return "refine"


def after_unicode_fix(state: RecoveryState) -> Literal["parser_fix", "__end__"]:
    return DONE if state.get("recovered") else "parser_fix"


def after_parser_fix(state: RecoveryState) -> Literal["llm_fix", "__end__"]:
    return DONE if state.get("recovered") else "llm_fix"


def after_llm_fix(state: RecoveryState) -> Literal["llm_fix", "refine", "__end__"]:
    if state.get("recovered"):
        return DONE
    return "llm_fix" if _may_loop(state, Layer.LLM_FIX) else "refine"


def after_backoff(state: RecoveryState) -> Literal["backoff", "refine", "human", "finish", "__end__"]:
    if state.get("in_flight"):
        return "backoff"  # a call recorded as in flight: the next step makes it
    if state.get("recovered"):
        return DONE
    if _may_loop(state, Layer.BACKOFF):
        return "backoff"
    last = _last(state, Layer.BACKOFF)
    if last is not None and last["evidence"].get("kind") == ErrorKind.PERMANENT and state["incident"].get("arguments"):
        return "refine"  # the operation rejected its arguments: refine may fix them
    return _end(state)


def after_sandbox(state: RecoveryState) -> Literal["refine", "__end__"]:
    return DONE if state.get("recovered") else "refine"


def after_refine(state: RecoveryState) -> Literal["refine", "vote", "__end__"]:
    if state.get("recovered"):
        return DONE
    return "refine" if _may_loop(state, Layer.REFINE) else "vote"


def after_vote(state: RecoveryState) -> list[Send] | Literal["human", "finish", "__end__"]:
    """vote's first pass opens a poll: one `vote_sample` per round (Send fan-out); its second pass decides."""
    poll = state.get("poll")
    if state.get("recovered") or poll is None or _last(state, Layer.VOTE) is not None:
        return _end(state)
    return [Send("vote_sample", {**poll, "index": i}) for i in range(poll["n"])]


def after_human(state: RecoveryState) -> Literal["human", "finish", "__end__"]:
    """A rejected fix asks again (the thread pauses with the reason), until accepted or given up."""
    return _end(state)
