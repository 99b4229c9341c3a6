"""SIGKILL at every layer boundary, then resume in a new process: nothing re-run, lost or duplicated."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kgot_errors import history, recover, resume
from kgot_errors.runtime.settings import Settings
from kgot_errors.state import Incident

CHILD = Path(__file__).with_name("crash_child.py")

PATHS = {
    "recovered": Incident.parse({"error_type": "json.decoder.JSONDecodeError", "message": "m",
                                 "content": "Here: ```json\n{'a': 1, 'b': [1, 2,],}\n```"}).to_data(),
    "not_recovered": Incident.parse({"error_type": "json.decoder.JSONDecodeError", "message": "m",
                                     "content": "I am sorry, I cannot answer that."}).to_data(),
}


def _trail(result) -> list[tuple]:
    return [(a.layer, a.try_no, a.verdict, a.reason, a.validator) for a in result.attempts]


def _reference(incident: dict):
    return recover(incident, checkpointer="memory", settings=Settings())


def _boundaries(result) -> list[str]:
    """The layers visited, in order, each once: every one of them is a place to crash."""
    seen: list[str] = ["classify"]
    for a in result.attempts:
        if str(a.layer) not in seen:
            seen.append(str(a.layer))
    return seen


def _crash_after(store: str, thread_id: str, layer: str, incident: dict) -> None:
    proc = subprocess.run([sys.executable, str(CHILD), store, thread_id, layer, json.dumps(incident)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert f"stopped after {layer}" in proc.stdout


def _resume_in_new_process(store: str, thread_id: str) -> dict:
    code = ("import json, sys; from kgot_errors import resume; from kgot_errors.runtime.settings import Settings; "
            "print(json.dumps(resume(sys.argv[1], checkpointer=sys.argv[2], settings=Settings()).to_data()))")
    proc = subprocess.run([sys.executable, "-c", code, thread_id, store], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _check_every_boundary(store: str, path: str) -> None:
    incident = PATHS[path]
    reference = _reference(incident)
    for layer in _boundaries(reference):
        tid = f"crash-{path}-{layer}-{uuid.uuid4().hex[:6]}"
        _crash_after(store, tid, layer, incident)
        before = history(tid, checkpointer=store, settings=Settings())
        if before["finished"]:  # killed right after the last step: the result was already durable
            assert _trail(before["result"]) == _trail(reference) and layer == _boundaries(reference)[-1]
            continue
        done_layers = [str(a.layer) for a in before["attempts"]]
        resumed = _resume_in_new_process(store, tid)
        trail = [(a["layer"], a["try_no"], a["verdict"], a["reason"], a["validator"]) for a in resumed["attempts"]]
        assert trail == [(str(x[0]), x[1], str(x[2]), x[3], x[4]) for x in _trail(reference)], layer
        assert [a["layer"] for a in resumed["attempts"]][:len(done_layers)] == done_layers  # finished ones kept
        assert (resumed["recovered"], resumed["value"]) == (reference.recovered, reference.value)
        again = resume(tid, checkpointer=store, settings=Settings())  # a finished thread is not re-run
        assert _trail(again) == _trail(reference)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_sigkill_at_every_layer_boundary_on_sqlite(tmp_path, path):
    _check_every_boundary(str(tmp_path / "crash.sqlite"), path)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_sigkill_at_every_layer_boundary_on_postgres(postgres_url, path):
    _check_every_boundary(postgres_url, path)
