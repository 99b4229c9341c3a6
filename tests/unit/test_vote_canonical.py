"""Vote canonical forms and the tally: what counts as the same answer, shares over valid votes, ties."""

from __future__ import annotations

import pytest

from kgot_errors.nodes.vote import canonical_code, canonical_json, canonical_run, tally

SAME_JSON = [
    ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}),  # key order
    ({"n": 2}, {"n": 2.0}),  # int and integral float
    ({"n": 100}, {"n": 1e2}),
    ({"n": 0}, {"n": -0.0}),
    ({"s": "New York"}, {"s": "  New   York "}),  # whitespace runs in strings
    ({"s": "caf\u00e9"}, {"s": "cafe\u0301"}),  # NFC
    ({"k\u00e9y": 1}, {"ke\u0301y": 1}),
    ([{"x": [1.0, {"y": 3}]}], [{"x": [1, {"y": 3.0}]}]),
]

DIFFERENT_JSON = [
    ({"a": True}, {"a": 1}),  # bool is not a number
    ({"a": None}, {"a": 0}),
    ({"a": 0.1}, {"a": 0.10000001}),
    ({"a": [1, 2]}, {"a": [2, 1]}),  # list order counts
    ({"a": "x"}, {"a": "X"}),
    ({"a": 1}, {"a": 1, "b": None}),
    ({"n": 2**53}, {"n": 2**53 + 1}),
]


@pytest.mark.parametrize(("left", "right"), SAME_JSON)
def test_equivalent_json_answers_share_one_canonical_form(left, right):
    assert canonical_json(left) == canonical_json(right)


@pytest.mark.parametrize(("left", "right"), DIFFERENT_JSON)
def test_different_json_answers_keep_different_canonical_forms(left, right):
    assert canonical_json(left) != canonical_json(right)


def test_canonical_json_is_compact_sorted_json():
    assert canonical_json({"b": 1.5, "a": [True, None, "x"]}) == '{"a":[true,null,"x"],"b":1.5}'


RUNS = [
    ({"exit_code": 0, "stdout": "4\n", "timed_out": False},
     {"exit_code": 0, "stdout": "4   \r\n\n", "timed_out": False}, True),
    ({"exit_code": 0, "stdout": "4\n"}, {"exit_code": 0, "stdout": "5\n"}, False),
    ({"exit_code": 0, "stdout": ""}, {"exit_code": 1, "stdout": "", "stderr": "boom"}, False),
    ({"exit_code": 1, "stdout": "a", "stderr": 'Traceback...\n  File "<string>", line 1\nZeroDivisionError: x\n'},
     {"exit_code": 1, "stdout": "b", "stderr": 'Traceback...\n  File "<string>", line 3\nZeroDivisionError: x'},
     True),  # two crashes with the same error are the same answer
    ({"exit_code": None, "timed_out": True, "stdout": "1"}, {"exit_code": -9, "timed_out": True, "stdout": "2"}, True),
]


@pytest.mark.parametrize(("left", "right", "same"), RUNS)
def test_code_answers_are_compared_by_how_they_ran(left, right, same):
    assert (canonical_run(left) == canonical_run(right)) is same


def test_code_without_a_sandbox_is_compared_by_syntax_tree_not_layout():
    assert canonical_code("x = 1 + 2  # three\nprint(x)\n") == canonical_code("x=1+2\n\nprint( x )")
    assert canonical_code("print(1)") != canonical_code("print(2)")
    assert canonical_code("def f(:") is None


def ballot(index: int, key: str | None, *, valid: bool = True, reason: str = "") -> dict:
    return {"index": index, "key": key, "valid": valid, "reason": reason or ("abstains: x" if key is None else "ok")}


def test_a_two_of_three_majority_wins_with_its_share_over_valid_votes():
    count = tally([ballot(2, "A"), ballot(0, "B"), ballot(1, "A")])
    assert (count.winner, count.valid_votes, round(count.share, 4), count.tie) == ("A", 3, 0.6667, False)
    assert [(r["key"], r["votes"], r["samples"]) for r in count.table] == [("A", 2, [1, 2]), ("B", 1, [0])]


def test_abstentions_do_not_count_toward_the_share():
    count = tally([ballot(0, None, reason="abstains: provider failed"), ballot(1, "A"), ballot(2, "A")])
    assert (count.winner, count.valid_votes, count.share) == ("A", 2, 1.0)
    assert count.abstained == [{"sample": 0, "reason": "abstains: provider failed"}]


@pytest.mark.parametrize("keys", [["A", "B"], ["A", "B", "C"], ["A", "A", "B", "B", "C"]])
def test_a_tie_at_the_top_has_no_winner(keys):
    count = tally([ballot(i, k) for i, k in enumerate(keys)])
    assert count.tie and count.winner is None


def test_no_valid_vote_gives_an_empty_table_and_zero_share():
    count = tally([ballot(0, None), ballot(1, None)])
    assert (count.table, count.valid_votes, count.share, count.winner) == ([], 0, 0.0, None)


def test_the_evidence_table_previews_answers_and_keeps_validity():
    long_key = "x" * 1000
    ev = tally([ballot(0, long_key, valid=False), ballot(1, long_key, valid=False)]).evidence()
    assert ev["table"] == [{"answer": "x" * 200, "votes": 2, "samples": [0, 1], "valid": False}]
    assert (ev["valid_votes"], ev["share"], ev["tie"], ev["abstained"]) == (2, 1.0, False, [])
