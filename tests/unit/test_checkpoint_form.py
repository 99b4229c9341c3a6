"""The stored form of channel values (runtime/serde.py): each piece of data once, read back exactly as written."""

from __future__ import annotations

import json

import pytest

from kgot_errors.runtime.serde import SHARED, checkpoint_serde, compact_values, expand_values, short_version

TEXT = '{"a": 1, "b": [1.5, true, null], "c": {"d": "x"}}'
VALUE = json.loads(TEXT)


def _state(value=VALUE, text=TEXT, changes=()) -> dict:
    proving = {"layer": "parser_fix", "try_no": 1, "verdict": "recovered", "reason": "valid", "validator": "json",
               "evidence": {"steps": ["removed trailing commas"]}, "candidate": text, "duration_s": 0.001,
               "llm_calls": 0, "tokens": 0}
    first = {**proving, "layer": "unicode_fix", "verdict": "failed", "candidate": None}
    attempts = [first, proving]
    recovered = {"layer": "parser_fix", "value": value, "text": text, "changes": list(changes), "degraded": False}
    result = {"recovered": True, "value": value, "text": text, "recovered_by": "parser_fix", "kind": "syntax",
              "outcome": "recovered", "summary": "recovered by parser_fix", "changes": list(changes),
              "attempts": attempts, "llm_calls": 0, "tokens": 0, "duration_s": 0.002}
    return {"incident": {"content": "x"}, "kind": "syntax", "attempts": attempts, "recovered": recovered,
            "result": result}


SAME_STEP = {"attempts": "7.a", "recovered": "7.a", "result": "7.a", "incident": "2.b", "kind": "3.c"}


def _size(values: dict) -> int:
    return sum(len(checkpoint_serde().dumps_typed(v)[1]) for v in values.values())


def test_a_finished_state_stores_its_attempts_value_and_text_once_and_reads_back_equal():
    values = _state()
    stored = compact_values(values, SAME_STEP)
    assert "attempts" not in stored["result"] and "value" not in stored["result"] and "text" not in stored["result"]
    assert "value" not in stored["recovered"] and "candidate" not in stored["attempts"][-1]
    assert stored["attempts"][0] == values["attempts"][0]  # attempts that proposed nothing are kept whole
    assert values == _state()  # the graph's own values are not touched
    roundtrip = {k: checkpoint_serde().loads_typed(checkpoint_serde().dumps_typed(v)) for k, v in stored.items()}
    assert expand_values(roundtrip) == values
    assert _size(stored) < _size(values) - 3 * len(TEXT)


@pytest.mark.parametrize("why, values, versions", [
    ("result written in a later step", _state(), {**SAME_STEP, "result": "8.d"}),
    ("value is not what the text reads as (1 vs 1.0)", _state(value={"a": 1.0}, text='{"a": 1}'), SAME_STEP),
    ("keys in another order than the text", _state(value={"b": 2, "a": 1}, text='{"a": 1, "b": 2}'), SAME_STEP),
    ("text is code, not JSON", _state(value="print(1)", text="print(1)"), SAME_STEP),
])
def test_nothing_is_left_out_that_could_not_be_read_back_exactly(why, values, versions):
    stored = compact_values(values, versions)
    assert expand_values(stored) == values, why


def test_a_result_in_a_later_step_keeps_its_own_copies():
    stored = compact_values(_state(), {**SAME_STEP, "result": "8.d"})
    assert stored["result"]["attempts"] == _state()["attempts"] and stored["result"]["value"] == VALUE


def test_values_stored_before_the_form_existed_read_back_unchanged():
    legacy = _state()
    assert expand_values(legacy) is legacy
    assert expand_values({"incident": {"content": "x"}}) == {"incident": {"content": "x"}}


def test_a_replaced_fix_is_never_read_as_the_candidate_an_attempt_proposed():
    stored = compact_values(_state(), SAME_STEP)
    stored["recovered"] = {**stored["recovered"], "text": '{"other": 2}'}  # e.g. a later state update
    assert expand_values(stored)["attempts"][-1]["candidate"] is None
    assert SHARED not in expand_values(stored)["attempts"][-1]


@pytest.mark.parametrize("old", [None, 5, "00000000000000000000000000000005.0.5512793214470389", "0000000005.0a1b2c3d"])
def test_short_versions_count_on_and_sort_after_every_earlier_form(old):
    new = short_version(old)
    assert new.startswith("0000000006." if old is not None else "0000000001.") and len(new) == 19
    if isinstance(old, str):
        assert new > old
    assert short_version(new) > new
