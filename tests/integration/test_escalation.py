"""Human escalation: the failure pauses as an interrupt; a person's fix is validated before it counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from langgraph.types import Command

from kgot_errors import Layer, build_graph, history, pending, recover, resume
from kgot_errors.errors import ConfigError, ThreadNotPaused
from kgot_errors.runtime.checkpoint import open_checkpointer
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import load_settings
from kgot_errors.graph.recover import run_sync

SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
REFUSAL = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value",
           "content": "Sorry, I cannot do that."}
HUMAN = load_settings(environ={}, error_recovery={"escalate_to_human": True})


def test_failure_pauses_for_a_person_and_a_rejected_fix_keeps_it_paused_with_the_reason(tmp_path):
    store = str(tmp_path / "h.sqlite")
    paused = recover(REFUSAL, schema=SCHEMA, checkpointer=store, settings=HUMAN)
    assert (paused.recovered, paused.outcome) == (False, "escalated")
    assert paused.summary.startswith("waiting for a person's fix")
    listed = pending(checkpointer=store, settings=HUMAN)
    assert [p["thread_id"] for p in listed] == [paused.thread_id] and listed[0]["rejected"] is None

    rejected = resume(paused.thread_id, value='{"answer": "forty-two"}', checkpointer=store, settings=HUMAN)
    assert rejected.outcome == "escalated" and not rejected.recovered
    again = pending(checkpointer=store, settings=HUMAN)
    assert again[0]["rejected"].startswith("fix rejected:") and "answer" in again[0]["rejected"]
    assert history(paused.thread_id, checkpointer=store, settings=HUMAN)["next"] == ["human"]

    fixed = resume(paused.thread_id, value={"answer": 42}, checkpointer=store, settings=HUMAN)
    assert fixed.recovered and fixed.value == {"answer": 42} and fixed.recovered_by is Layer.HUMAN
    humans = fixed.attempts_by(Layer.HUMAN)
    assert [(a.try_no, str(a.verdict)) for a in humans] == [(1, "failed"), (2, "recovered")]
    assert pending(checkpointer=store, settings=HUMAN) == []


def test_giving_up_ends_not_recovered(tmp_path):
    store = str(tmp_path / "g.sqlite")
    paused = recover(REFUSAL, checkpointer=store, settings=HUMAN)
    ended = resume(paused.thread_id, value=None, checkpointer=store, settings=HUMAN)
    assert (ended.recovered, ended.outcome) == (False, "not_recovered")
    assert "the person gave up" in ended.summary
    with pytest.raises(ThreadNotPaused):
        resume(paused.thread_id, value={"x": 1}, checkpointer=store, settings=HUMAN)


def test_escalation_needs_a_store():
    with pytest.raises(ConfigError, match="escalate_to_human"):
        recover(REFUSAL, checkpointer=None, settings=HUMAN)


def test_command_resume_from_python_on_the_graph_itself(tmp_path):
    store = str(tmp_path / "c.sqlite")
    incident = {"incident": {**REFUSAL, "output_schema": SCHEMA}}
    config = {"configurable": {"thread_id": "t-cmd"}}

    async def flow():
        async with open_checkpointer(store) as saver:
            graph = build_graph(saver)
            ctx = RecoveryContext(settings=HUMAN)
            first = await graph.ainvoke(incident, config, context=ctx, durability="sync")
            request = first["__interrupt__"][0].value
            done = await graph.ainvoke(Command(resume='```json\n{"answer": 7}\n```'), config, context=ctx,
                                       durability="sync")
            return request, done

    request, done = run_sync(flow)
    assert request["content"] == REFUSAL["content"] and request["output_schema"] == SCHEMA
    assert [a["layer"] for a in request["attempts"]][:2] == ["unicode_fix", "parser_fix"]
    assert done["result"]["recovered"] and done["result"]["value"] == {"answer": 7}  # fences handled by the validator


def _cli(*args, env, stdin=None):
    return subprocess.run([sys.executable, "-m", "kgot_errors.cli", *args], capture_output=True, env=env,
                          input=stdin, timeout=120)


def test_cli_round_trip_pending_and_resume_with_a_value_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGOT_")}
    env.update(KGOT_DATA_DIR=str(tmp_path / "data"), KGOT_ESCALATE_TO_HUMAN="true")
    first = _cli("repair", "-", "--json", env=env, stdin=b"no json here, sorry")
    assert first.returncode == 1
    thread = json.loads(first.stdout)["thread_id"]
    listed = _cli("pending", env=env)
    assert listed.returncode == 0 and listed.stdout.decode().startswith(thread)
    fix = tmp_path / "fix.json"
    fix.write_text('{"ok": true}')
    done = _cli("resume", thread, "--value", str(fix), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": True}
    assert "recovered by human" in done.stderr.decode()
    assert _cli("pending", env=env).stdout == b""
