"""Valid data always fits a checkpoint: integers beyond 64 bits, nesting up to max_depth and odd unicode round-trip
through real SQLite and PostgreSQL stores under strict msgpack, in the content, the value and an operation's result."""

from __future__ import annotations

import json

import pytest

from kgot_errors import history, recover

BIG = 18446744073709551616  # 2**64
VALUES = [
    {"id": BIG, "neg": -(2**80), "small": 1},
    [[[[1, BIG]]]],
    {"text": "\x00\x1f\x80\x9f\u2028\u2029\ufeff\U0001f600 \\u00e9 C:\\users\\u1234"},
]
DEEP = "[" * 512 + "1" + "]" * 512  # max_depth, the documented limit


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "values.sqlite")
    return request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("value", VALUES + [json.loads(DEEP)], ids=["bigint", "nested-bigint", "unicode", "deep"])
def test_valid_json_round_trips_through_the_store(store, value) -> None:
    text = json.dumps(value, ensure_ascii=False)
    result = recover(ValueError("the answer did not parse"), content=text, checkpointer=store)
    assert result.recovered and result.text == text and result.value == value
    assert history(result.thread_id, checkpointer=store)["result"].value == value


def test_a_repaired_value_with_a_big_integer_stores(store) -> None:
    result = recover(ValueError("bad json"), content='{"id": 18446744073709551616, "n": [1, 2,],}', checkpointer=store)
    assert result.recovered and result.value == {"id": BIG, "n": [1, 2]}
    assert history(result.thread_id, checkpointer=store)["result"].value == {"id": BIG, "n": [1, 2]}


def test_an_operation_result_and_arguments_beyond_64_bits_store(store) -> None:
    async def fetch(n: int) -> dict:
        return {"got": n * 2, "deep": json.loads("[" * 300 + "]" * 300)}

    result = recover({"error_type": "TimeoutError", "message": "timed out", "operation": "fetch",
                      "arguments": {"n": BIG}}, operations={"fetch": fetch}, checkpointer=store)
    assert result.recovered and result.value["got"] == 2 * BIG
    assert history(result.thread_id, checkpointer=store)["result"].value["got"] == 2 * BIG
