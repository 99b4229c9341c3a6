"""Tracing: the graph is the root run, each visited layer a child run with incident id, kind, verdict, attempt.

Runs go to a LoopbackRecorder (a real HTTP server on 127.0.0.1 speaking LangSmith's ingestion API)
through the real langsmith client, or to an in-process tracer. No LANGSMITH_* variable from the
environment reaches these tests (tests/conftest.py removes them); nothing leaves loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import langsmith
import pytest

from kgot_errors import recover
from kgot_errors.observability.recorder import LoopbackRecorder
from kgot_errors.observability.tracing import layer_metadata, layer_node, trace_in_process
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings
from kgot_errors.testing import RecordingSleep

FENCED = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": 'Sure: ```json\n{"a": 1,}\n```'}
FLAKY = {"error_type": "TimeoutError", "message": "t", "operation": "flaky", "arguments": {}}
_LAYER_KEYS = ("layer", "incident_id", "kind", "verdict", "attempt")


@pytest.fixture
def recorder(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("LANGSMITH_", "LANGCHAIN_")):
            monkeypatch.delenv(name)
    with LoopbackRecorder() as rec:
        yield rec


def _client(recorder: LoopbackRecorder) -> langsmith.Client:
    return langsmith.Client(api_url=recorder.url, api_key="loopback-key")


def _wait_for_root(recorder: LoopbackRecorder, children: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roots = recorder.roots()
        if roots and len(recorder.children(roots[0]["id"])) >= children and roots[0].get("end_time"):
            return roots[0]
        time.sleep(0.05)
    raise AssertionError(f"no complete trace arrived: {[(r['name'], r.get('parent_run_id')) for r in recorder.all_runs()]}")


def _meta(run: dict) -> dict:
    return {k: (run.get("extra") or {}).get("metadata", {}).get(k) for k in _LAYER_KEYS}


def _require_instrumented_graph():
    from kgot_errors.graph.recover import _graph

    node = _graph(None).builder.nodes["parser_fix"].runnable
    func = getattr(node, "afunc", None) or getattr(node, "func", None)
    assert getattr(func, "__wrapped__", None) is not None, \
        "graph/builder.py does not wrap layer nodes with observability.tracing.layer_node (see the proposed diff)"


def test_wire_format_root_and_one_child_per_visited_layer_in_order(recorder):
    _require_instrumented_graph()
    client = _client(recorder)
    with langsmith.tracing_context(enabled=True, client=client, project_name="kgot-test"):
        result = recover(FENCED, checkpointer="memory", settings=Settings())
    client.flush()
    root = _wait_for_root(recorder, 3)

    assert root["name"] == "kgot-errors" and root.get("parent_run_id") is None
    assert root["session_name"] == "kgot-test"
    assert root["outputs"]["result"]["recovered_by"] == "parser_fix"
    kids = recorder.children(root["id"])
    assert [k["name"] for k in kids] == ["classify", "unicode_fix", "parser_fix"]
    assert all(k["trace_id"] == root["id"] for k in kids)
    tid = result.thread_id
    assert _meta(kids[0]) == {"layer": "classify", "incident_id": tid, "kind": "syntax", "verdict": None,
                              "attempt": None}
    assert _meta(kids[1]) == {"layer": "unicode_fix", "incident_id": tid, "kind": "syntax", "verdict": "failed",
                              "attempt": 1}
    assert _meta(kids[2]) == {"layer": "parser_fix", "incident_id": tid, "kind": "syntax", "verdict": "recovered",
                              "attempt": 1}
    assert ("POST", "/runs/multipart") in recorder.requests


def test_each_retry_is_its_own_child_with_its_attempt_number(recorder):
    _require_instrumented_graph()
    calls = []

    def flaky() -> dict:
        calls.append(1)
        if len(calls) < 2:
            raise TimeoutError("down")
        return {"ok": True}

    ctx = RecoveryContext(settings=Settings(), operations={"flaky": flaky}, sleep=RecordingSleep(),
                          breakers=BreakerStore())
    client = _client(recorder)
    with langsmith.tracing_context(enabled=True, client=client):
        result = recover(FLAKY, checkpointer="memory", runtime_context=ctx)
    client.flush()
    assert result.recovered_by == "backoff"
    kids = recorder.children(_wait_for_root(recorder, 3)["id"])
    # each call is two backoff steps: one records it in flight (no verdict), the next makes it
    assert [k["name"] for k in kids] == ["classify"] + ["backoff"] * 4
    assert [_meta(k)["verdict"] is not None for k in kids[1:]] == [False, True, False, True]
    assert [(_meta(k)["verdict"], _meta(k)["attempt"], _meta(k)["kind"]) for k in kids[2::2]] == \
        [("failed", 1, "transient"), ("recovered", 2, "transient")]


def test_the_standard_langsmith_variables_trace_to_the_configured_endpoint(recorder, tmp_path):
    _require_instrumented_graph()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "OPENAI_"))}
    env.update(LANGSMITH_TRACING="true", LANGSMITH_ENDPOINT=recorder.url, LANGSMITH_API_KEY="loopback-key",
               LANGSMITH_PROJECT="env-project", KGOT_DATA_DIR=str(tmp_path))
    code = ("import json, sys; from kgot_errors import recover; from langchain_core.tracers.langchain import "
            "wait_for_all_tracers; r = recover(json.loads(sys.argv[1]), checkpointer=None); wait_for_all_tracers(); "
            "print(r.recovered_by)")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(FENCED)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "parser_fix"
    root = _wait_for_root(recorder, 3)
    assert root["session_name"] == "env-project"
    assert [k["name"] for k in recorder.children(root["id"])] == ["classify", "unicode_fix", "parser_fix"]
    assert _meta(recorder.children(root["id"])[2])["verdict"] == "recovered"


def test_in_process_tracer_sees_the_same_tree_and_metadata():
    _require_instrumented_graph()
    with trace_in_process() as tracer:
        result = recover(FENCED, checkpointer="memory", settings=Settings())
    (root,) = tracer.roots()
    assert root.name == "kgot-errors" and root.outputs["result"]["recovered"] is True
    kids = tracer.children(root.id)
    assert [k.name for k in kids] == ["classify", "unicode_fix", "parser_fix"]
    meta = kids[2].extra["metadata"]
    assert (meta["layer"], meta["verdict"], meta["attempt"], meta["incident_id"]) == \
        ("parser_fix", "recovered", 1, result.thread_id)


def test_tracing_off_sends_nothing_and_the_wrapper_changes_no_update(recorder):
    result = recover(FENCED, checkpointer=None, settings=Settings())
    assert result.recovered
    time.sleep(0.2)
    assert recorder.requests == []

    async def node(state, runtime=None):
        return {"attempts": [{"layer": "x", "try_no": 1, "verdict": "failed", "reason": "r"}]}

    import asyncio

    wrapped = layer_node(node)
    assert wrapped.__name__ == "node" and wrapped.__wrapped__ is node
    assert asyncio.run(wrapped({"kind": "syntax"})) == asyncio.run(node({"kind": "syntax"}))


def test_layer_metadata_from_state_and_update():
    meta = layer_metadata("llm_fix", {"kind": "schema"},
                          {"attempts": [{"try_no": 2, "verdict": "failed", "reason": "r" * 500, "llm_calls": 1,
                                         "tokens": 42}]}, "t1")
    assert meta == {"layer": "llm_fix", "incident_id": "t1", "kind": "schema", "verdict": "failed", "attempt": 2,
                    "reason": "r" * 200, "llm_calls": 1, "tokens": 42}
