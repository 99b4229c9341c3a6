"""Whole paths through the compiled graph, on real checkpointers, with strict msgpack round-trips."""

from __future__ import annotations

import asyncio
import json
import operator
from typing import Annotated, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from kgot_errors import ErrorKind, Layer, Verdict, arecover, build_graph, history, recover, resume
from kgot_errors.errors import InvalidSchema, ThreadNotFound, UnknownOperation
from kgot_errors.graph.recover import run_sync
from kgot_errors.runtime.checkpoint import open_checkpointer
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings
from kgot_errors.state import Incident

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def _json_error(text: str) -> json.JSONDecodeError:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("expected a decode error")


def _layers(result) -> list[tuple[str, str]]:
    return [(str(a.layer), str(a.verdict)) for a in result.attempts]


def test_broken_json_is_recovered_by_parser_fix_with_every_attempt_recorded(tmp_path):
    store = tmp_path / "r.sqlite"
    result = recover(_json_error('Sure: ```json\n{"a": 1,}\n```'), checkpointer=str(store), settings=Settings())
    assert result.recovered and result.value == {"a": 1}
    assert result.recovered_by is Layer.PARSER_FIX and result.kind is ErrorKind.SYNTAX
    assert _layers(result) == [("unicode_fix", "failed"), ("parser_fix", "recovered")]
    assert result.attempts[1].validator == "json+schema"
    assert result.summary.startswith("recovered by parser_fix after 2 attempt(s)")
    # the checkpoint holds the same attempts, readable from a fresh store connection (strict msgpack)
    h = history(result.thread_id, checkpointer=str(store), settings=Settings())
    assert h["finished"] and [a.model_dump() for a in h["attempts"]] == [a.model_dump() for a in result.attempts]
    assert h["result"] == result


def test_valid_input_comes_back_unchanged_from_the_first_layer():
    text = '{"b": [1, 2.5, "x"], "a": {"nested": null}}'
    result = recover({"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": text},
                     checkpointer=None, settings=Settings())
    assert result.recovered_by is Layer.UNICODE_FIX
    assert result.value == json.loads(text)
    assert result.attempts[0].reason == "valid as given"


def test_schema_violation_is_not_recovered_by_making_up_data():
    result = recover({"error_type": "jsonschema.exceptions.ValidationError", "message": "'a' is required",
                      "content": '{"b": 2}'}, schema=SCHEMA, checkpointer=None, settings=Settings())
    assert not result.recovered and result.value is None
    assert result.kind is ErrorKind.SCHEMA
    assert ("parser_fix", "failed") in _layers(result)


def test_unrecoverable_text_ends_not_recovered_and_says_what_is_missing():
    result = recover(_json_error("I'm sorry, I cannot produce that."), checkpointer="memory", settings=Settings())
    assert not result.recovered and result.outcome == "not_recovered"
    assert _layers(result) == [("unicode_fix", "failed"), ("parser_fix", "failed"), ("llm_fix", "skipped"),
                               ("refine", "skipped"), ("vote", "skipped")]
    assert "no chat model configured" in result.summary
    assert result.thread_id  # in-memory threads still have an id


def test_each_kind_takes_its_path_and_no_layer_fakes_success():
    cases = {
        ErrorKind.TRANSIENT: ({"error_type": "openai.RateLimitError", "message": "429", "status_code": 429},
                              [("backoff", "skipped")]),
        ErrorKind.PERMANENT: ({"error_type": "openai.AuthenticationError", "message": "401", "status_code": 401},
                              []),
        ErrorKind.EXECUTION: ({"error_type": "ZeroDivisionError", "message": "division by zero",
                               "content": "print(1/0)", "content_kind": "python"},
                              [("sandbox", "skipped"), ("refine", "skipped"), ("vote", "skipped")]),
        ErrorKind.UNKNOWN: ({"error_type": "Mystery", "message": "?"}, [("refine", "skipped"), ("vote", "skipped")]),
    }
    for kind, (incident, path) in cases.items():
        result = recover(incident, checkpointer=None, settings=Settings(), sandbox=False)
        assert (result.kind, _layers(result), result.recovered) == (kind, path, False), kind
    # code that nothing shows ran (no content_kind, no traceback through it) is never run
    unsaid = recover({**cases[ErrorKind.EXECUTION][0], "content_kind": None}, checkpointer=None, settings=Settings())
    assert unsaid.kind is ErrorKind.UNKNOWN and "sandbox" not in [layer for layer, _ in _layers(unsaid)]
    assert "permanent error" in recover(cases[ErrorKind.PERMANENT][0], checkpointer=None).summary


def test_failing_code_is_run_in_the_default_sandbox_and_a_clean_run_proves_it():
    crashed = recover(ZeroDivisionError("division by zero"), content="print(1/0)", content_kind="python",
                      checkpointer=None, settings=Settings())
    assert _layers(crashed)[0] == ("sandbox", "failed")
    run = crashed.attempts[0].evidence["run"]
    assert run["exit_code"] == 1 and "ZeroDivisionError" in run["stderr"]
    flaky = recover({"error_type": "subprocess.CalledProcessError", "message": "killed by the OOM killer",
                     "content": "print(sum(range(10)))", "content_kind": "python"}, checkpointer=None,
                    settings=Settings())
    assert flaky.recovered and flaky.recovered_by is Layer.SANDBOX
    assert flaky.attempts[0].evidence["run"]["stdout"].strip() == "45"


def test_python_syntax_is_repaired_and_proven_by_ast_parse():
    code = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```"
    result = recover(SyntaxError("invalid syntax"), content=code, checkpointer=None, settings=Settings())
    assert result.recovered and result.recovered_by is Layer.PARSER_FIX
    assert result.value.strip() == "def add(a, b):\n    return a + b"
    assert result.attempts[-1].validator == "ast.parse"


def test_paused_thread_resumes_where_it_stopped_without_rerunning_finished_layers(tmp_path):
    store = str(tmp_path / "pause.sqlite")
    incident = Incident.from_exception(_json_error('{"a": 1,}')).to_data()

    async def start() -> None:
        async with open_checkpointer(store) as saver:
            graph = build_graph(saver)
            await graph.ainvoke({"incident": incident}, {"configurable": {"thread_id": "t-1"}},
                                context=RecoveryContext(), interrupt_before=["parser_fix"], durability="sync")

    run_sync(start)
    paused = history("t-1", checkpointer=store, settings=Settings())
    assert not paused["finished"] and paused["next"] == ["parser_fix"]
    assert [(str(a.layer), str(a.verdict)) for a in paused["attempts"]] == [("unicode_fix", "failed")]

    result = resume("t-1", checkpointer=store, settings=Settings())
    assert result.recovered and result.value == {"a": 1}
    assert [a.layer for a in result.attempts] == [Layer.UNICODE_FIX, Layer.PARSER_FIX]  # unicode_fix ran once
    again = resume("t-1", checkpointer=store, settings=Settings())  # a finished thread just reports
    assert again == result


def test_unknown_thread_and_unknown_operation_are_typed_errors(tmp_path):
    with pytest.raises(ThreadNotFound):
        history("nope", checkpointer=str(tmp_path / "x.sqlite"), settings=Settings())
    with pytest.raises(UnknownOperation, match="'fetch_page'.*known: none registered"):
        recover({"error_type": "TimeoutError", "message": "t", "operation": "fetch_page"}, checkpointer=None)
    with pytest.raises(InvalidSchema):
        recover(_json_error("{"), schema={"type": 12}, checkpointer=None)


def test_default_store_is_a_sqlite_file_under_the_data_dir(data_dir):
    from kgot_errors import load_settings

    result = recover(_json_error('{"a": 1,}'), settings=load_settings())
    assert (data_dir / "recoveries.sqlite").is_file()
    assert history(result.thread_id, settings=load_settings())["finished"]


def test_recover_works_inside_a_running_event_loop_like_jupyter():
    async def notebook_cell():
        return recover(_json_error('{"a": 1,}'), checkpointer=None, settings=Settings())

    assert asyncio.run(notebook_cell()).value == {"a": 1}


async def test_arecover_runs_many_incidents_concurrently():
    texts = [f'{{"a": {i},}}' for i in range(20)]
    results = await asyncio.gather(*(arecover(_json_error(t), checkpointer="memory", settings=Settings())
                                     for t in texts))
    assert [r.value for r in results] == [{"a": i} for i in range(20)]
    assert len({r.thread_id for r in results}) == 20


class Parent(TypedDict, total=False):
    incident: dict
    result: dict
    log: Annotated[list, operator.add]


def test_recovery_graph_works_as_a_subgraph_of_an_agent_graph():
    parent = StateGraph(Parent)
    parent.add_node("recovery", build_graph())
    parent.add_node("after", lambda s: {"log": [s["result"]["recovered_by"]]})
    parent.add_edge(START, "recovery")
    parent.add_edge("recovery", "after")
    parent.add_edge("after", END)
    app = parent.compile()
    out = asyncio.run(app.ainvoke({"incident": Incident.from_exception(_json_error("{'a': 1}")).to_data()}))
    assert out["result"]["value"] == {"a": 1} and out["log"] == [out["result"]["recovered_by"]]


def test_attempt_records_and_results_are_plain_json_data():
    result = recover(_json_error('{"a": 1,}'), checkpointer=None, settings=Settings())
    data = result.to_data()
    assert json.loads(json.dumps(data)) == data
    assert all(a.verdict in (Verdict.FAILED, Verdict.RECOVERED) for a in result.attempts)


def test_a_pydantic_schema_gives_the_model_instance_as_parsed():
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    fixed = recover(_json_error("{'name': 'Ada', 'age': 36,}"), schema=Person, checkpointer=None, settings=Settings())
    assert fixed.recovered and fixed.parsed == Person(name="Ada", age=36) and fixed.value == {"name": "Ada", "age": 36}
    assert "parsed" not in fixed.to_data()  # stored and printed forms stay JSON
    plain = recover(_json_error('{"a": 1,}'), checkpointer=None, settings=Settings())
    assert plain.parsed == {"a": 1}
    refused = recover(_json_error("I cannot do that."), schema=Person, checkpointer=None, settings=Settings())
    assert not refused.recovered and refused.parsed is None
