"""Routing: the escalation policy as pure functions, per error kind and per loop budget."""

from __future__ import annotations

import pytest

from kgot_errors.graph import routing
from kgot_errors.state import ErrorKind, Layer, Verdict


def _a(layer: Layer, verdict: Verdict, **evidence) -> dict:
    return {"layer": str(layer), "try_no": 1, "verdict": str(verdict), "reason": "", "validator": None,
            "evidence": evidence, "candidate": None, "duration_s": 0.0, "llm_calls": 0, "tokens": 0}


def _state(kind=ErrorKind.SYNTAX, attempts=(), recovered=None, arguments=None, **budgets) -> dict:
    return {"incident": {"error_type": "E", "message": "m", "arguments": arguments}, "kind": str(kind),
            "attempts": list(attempts), "recovered": recovered,
            "budgets": {"llm_fix": 3, "backoff": 6, "refine": 3, **budgets}}


@pytest.mark.parametrize(
    ("kind", "first"),
    [(ErrorKind.SYNTAX, "unicode_fix"), (ErrorKind.SCHEMA, "unicode_fix"), (ErrorKind.TRANSIENT, "backoff"),
     (ErrorKind.EXECUTION, "sandbox"), (ErrorKind.PERMANENT, "finish"), (ErrorKind.UNKNOWN, "refine")],
)
def test_classify_sends_each_kind_to_its_first_layer(kind, first):
    assert routing.after_classify(_state(kind)) == first


def test_deterministic_layers_escalate_until_one_proves_a_fix():
    failed = _state(attempts=[_a(Layer.UNICODE_FIX, Verdict.FAILED)])
    assert routing.after_unicode_fix(failed) == "parser_fix"
    assert routing.after_unicode_fix({**failed, "recovered": {"layer": "unicode_fix"}}) == "__end__"
    assert routing.after_parser_fix(_state(attempts=[_a(Layer.PARSER_FIX, Verdict.FAILED)])) == "llm_fix"
    assert routing.after_parser_fix(_state(recovered={"layer": "parser_fix"})) == "__end__"


@pytest.mark.parametrize(("n_failed", "nxt"), [(1, "llm_fix"), (2, "llm_fix"), (3, "refine")])
def test_llm_fix_loops_within_its_budget_of_three(n_failed, nxt):
    assert routing.after_llm_fix(_state(attempts=[_a(Layer.LLM_FIX, Verdict.FAILED)] * n_failed)) == nxt


def test_a_skipped_layer_is_not_retried():
    assert routing.after_llm_fix(_state(attempts=[_a(Layer.LLM_FIX, Verdict.SKIPPED)])) == "refine"
    assert routing.after_refine(_state(attempts=[_a(Layer.REFINE, Verdict.SKIPPED)])) == "vote"


def test_budgets_come_from_state_so_resumed_threads_keep_them():
    attempts = [_a(Layer.LLM_FIX, Verdict.FAILED)] * 3
    assert routing.after_llm_fix(_state(attempts=attempts, llm_fix=5)) == "llm_fix"
    assert routing.after_llm_fix(_state(attempts=attempts[:1], llm_fix=1)) == "refine"


@pytest.mark.parametrize(("n_failed", "nxt"), [(5, "backoff"), (6, "finish")])
def test_backoff_loops_within_six(n_failed, nxt):
    attempts = [_a(Layer.BACKOFF, Verdict.FAILED, kind="transient")] * n_failed
    assert routing.after_backoff(_state(ErrorKind.TRANSIENT, attempts)) == nxt


def test_backoff_stops_on_open_circuit_and_hands_bad_arguments_to_refine():
    open_circuit = [_a(Layer.BACKOFF, Verdict.FAILED, final=True, kind="transient")]
    assert routing.after_backoff(_state(ErrorKind.TRANSIENT, open_circuit)) == "finish"
    permanent = [_a(Layer.BACKOFF, Verdict.FAILED, kind="permanent", final=True)]
    assert routing.after_backoff(_state(ErrorKind.TRANSIENT, permanent, arguments={"q": 1})) == "refine"
    assert routing.after_backoff(_state(ErrorKind.TRANSIENT, permanent)) == "finish"
    assert routing.after_backoff(_state(ErrorKind.TRANSIENT, recovered={"layer": "backoff"})) == "__end__"


def test_refine_stops_on_no_progress_then_votes():
    assert routing.after_refine(_state(attempts=[_a(Layer.REFINE, Verdict.FAILED)])) == "refine"
    assert routing.after_refine(_state(attempts=[_a(Layer.REFINE, Verdict.FAILED, no_progress=True)])) == "vote"
    assert routing.after_refine(_state(attempts=[_a(Layer.REFINE, Verdict.FAILED)] * 3)) == "vote"


def test_sandbox_failure_goes_to_refine():
    assert routing.after_sandbox(_state(ErrorKind.EXECUTION, [_a(Layer.SANDBOX, Verdict.FAILED)])) == "refine"
    assert routing.after_sandbox(_state(ErrorKind.EXECUTION, recovered={"layer": "sandbox"})) == "__end__"


def test_a_proven_fix_ends_the_incident_and_escalation_only_takes_failures():
    recovered = _state(recovered={"layer": "llm_fix"}, human=100)
    assert routing.after_llm_fix(recovered) == "__end__"
    failed = _state(ErrorKind.PERMANENT, human=100)
    assert routing.after_classify(failed) == "human"
    assert routing.after_classify(_state(ErrorKind.PERMANENT)) == "finish"
    gave_up = _state(attempts=[_a(Layer.HUMAN, Verdict.FAILED, final=True)], human=100)
    assert routing.after_human(gave_up) == "finish"
    rejected = _state(attempts=[_a(Layer.HUMAN, Verdict.FAILED)], human=100)
    assert routing.after_human(rejected) == "human"
