"""Nasty input: every case ends as a result or a typed error, in bounded time; recovered values always validate."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgot_errors import RecoveryResult, recover
from kgot_errors.errors import InvalidSchema
from kgot_errors.runtime.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "corpus" / "json_public.jsonl"
HANG_GUARD_S = 120  # not a speed target (see bench/): only proof that nothing hangs


def _recover_json(content, schema=None, settings: Settings | None = None) -> RecoveryResult:
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = recover({"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value",
                                     "content": content}, schema=schema, checkpointer=None, settings=settings or Settings())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG_GUARD_S)
    assert not worker.is_alive(), "recover() did not return"
    if "error" in box:
        raise box["error"]
    return box["result"]


def _assert_proven(result: RecoveryResult, schema=None) -> None:
    """A recovered value is strict JSON (no NaN/Infinity) and fits the schema."""
    if not result.recovered:
        return
    text = json.dumps(result.value, allow_nan=False)  # raises on NaN/Infinity
    assert json.loads(text) == result.value
    if schema is not None:
        jsonschema.validate(result.value, schema)


@pytest.mark.parametrize(
    ("name", "content", "reason_part"),
    [
        ("empty", "", None),
        ("whitespace", " \n\t ", None),
        ("prose only", "I'm sorry, but I can't help with that request.", None),
        ("nul bytes", '{"a": "x\x00y"}\x00\x00', None),
        ("deep arrays", "[" * 100_000 + "]" * 100_000, "deep"),
        ("deep objects", '{"a":' * 100_000 + "1" + "}" * 100_000, "deep"),
        ("deep unclosed", "[" * 100_000, "deep"),
        ("huge", '{"k": "' + "x" * 20_000_000 + '"}', "limit"),
    ],
)
def test_nasty_input_ends_as_a_result_never_a_crash(name, content, reason_part):
    result = _recover_json(content)
    assert isinstance(result, RecoveryResult)
    _assert_proven(result)
    if reason_part is not None:
        assert not result.recovered
        assert reason_part in result.summary.lower(), result.summary


def test_nul_bytes_inside_strings_survive_when_the_json_is_otherwise_fixable():
    result = _recover_json('{"a": "x\\u0000y", "b": [1, 2,]}')
    assert result.recovered and result.value == {"a": "x\x00y", "b": [1, 2]}


def test_invalid_utf8_ends_not_recovered_and_the_summary_says_so():
    result = _recover_json(b'{"city": "S\xe3o Paulo", "ok": true,}')
    assert not result.recovered and result.outcome == "not_recovered" and result.value is None
    assert "invalid UTF-8" in result.summary and "damaged" in result.summary
    lenient = _recover_json(b'{"city": "S\xe3o Paulo"}', settings=Settings(syntax_error_management={
        "changes": {"removed": "degrade"}}))
    assert lenient.outcome == "degraded" and lenient.value == {"city": "S\ufffdo Paulo"}
    assert any("invalid UTF-8" in c["detail"] for c in lenient.changes)


@pytest.mark.parametrize("schema", [{"type": "integer", "minimum": "zero"}, {"required": "name"}, ["type"]])
def test_a_schema_that_is_not_a_schema_is_a_typed_error(schema):
    with pytest.raises(InvalidSchema):
        _recover_json("{}", schema)


def _corpus() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


_CASES = _corpus()


@st.composite
def _mutated_corpus_input(draw) -> tuple[str, dict | None]:
    case = draw(st.sampled_from(_CASES))
    text: str = case["input"]
    for _ in range(draw(st.integers(0, 3))):
        if not text:
            break
        op = draw(st.sampled_from(["cut", "insert", "delete", "dup"]))
        i = draw(st.integers(0, len(text)))
        if op == "cut":
            text = text[:i]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(list('{}[]",:\'`\\/\n') + ["NaN", "\ufeff", "\u201c", "//"])) \
                + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + text[i:i + 20] + text[i:]
    return text, case.get("schema")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_corpus_input())
def test_mutated_corpus_inputs_always_give_a_result_and_recovered_values_validate(case):
    text, schema = case
    result = recover({"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": text},
                     schema=schema, checkpointer=None, settings=Settings())
    _assert_proven(result, schema)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                              max_leaves=20).map(lambda v: json.dumps(v)[:-1])))
def test_random_text_and_truncated_json_always_give_a_result(content):
    result = recover({"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": content},
                     checkpointer=None, settings=Settings())
    _assert_proven(result)
    if result.recovered and isinstance(result.value, float):
        assert math.isfinite(result.value)


@pytest.mark.parametrize("graph_input, field", [
    ({"incident": {"error_type": 5, "message": "m", "content": '{"a": 1,}'}}, "error_type"),
    ({"incident": {"error_type": "ValueError", "message": None, "content": '{"a": 1,}'}}, "message"),
    ({"incident": {"content": '{"a": 1,}', "status_code": 42}}, "status_code"),
    ({"incident": {"content": '{"a": 1,}', "colour": "red"}}, "colour"),
    ({"incident": ["not", "a", "mapping"]}, None),
    ({}, None),
])
def test_the_compiled_graph_refuses_a_malformed_incident_with_a_typed_error(graph_input, field):
    """Invoked directly (as a subgraph, say), the graph names what its input lacks; it never crashes
    with a KeyError from inside a node."""
    import asyncio

    from kgot_errors import build_graph
    from kgot_errors.errors import InvalidIncident

    with pytest.raises(InvalidIncident) as caught:
        asyncio.run(build_graph().ainvoke(graph_input))
    assert caught.value.field == field if field else "incident" in str(caught.value)


@pytest.mark.parametrize("incident", [
    {"content": "Sure! ```json\n{'city': 'Oslo', 'days': 2,}\n```"},
    {"content": "Sure! ```json\n{'city': 'Oslo', 'days': 2,}\n```", "error_type": "", "message": ""},
])
def test_an_incident_of_content_alone_is_recovered_from_its_evidence(incident):
    """No exception at all (as a subgraph's caller may hand it over): the content says what it is."""
    import asyncio

    from kgot_errors import build_graph

    out = asyncio.run(build_graph().ainvoke({"incident": incident}))
    result = out["result"]
    assert (result["outcome"], result["kind"], result["value"]) == ("recovered", "syntax", {"city": "Oslo", "days": 2})


def test_recover_takes_none_or_a_mapping_without_an_exception():
    """Valid content with no exception comes back byte for byte; Python code with no exception is not run; broken
    JSON against a schema is repaired to fit it."""
    ran = []

    class Sandbox:
        name = "counting"

        async def arun(self, code, **_):
            ran.append(code)
            raise AssertionError("code with no evidence that it ran must not be run")

    valid = '{"b": 1,  "a": [1.0, 2]}'
    same = recover(None, content=valid, checkpointer=None, settings=Settings())
    assert same.recovered and same.outcome == "recovered" and same.text == valid
    code = recover({"content": "import os\nprint(os.getcwd())"}, checkpointer=None, settings=Settings(),
                   sandbox=Sandbox())
    assert not code.recovered and code.kind == "unknown" and ran == []
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fitted = recover({"content": '{"n": "7",}', "output_schema": schema}, checkpointer=None, settings=Settings())
    assert fitted.recovered and fitted.value == {"n": 7} and fitted.kind in ("syntax", "schema")
