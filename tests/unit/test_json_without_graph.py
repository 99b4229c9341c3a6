"""settle_without_model gives the compiled graph's result for a JSON incident when no model is configured.

The workers of `kgot-errors repair --workers` use it so that incidents the deterministic layers cannot fix cost
no LangGraph import and no graph run; it encodes the graph's route for that case, so it is held equal to the
graph here, field by field, on every corpus case and on the edge's damaged inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgot_errors import recover
from kgot_errors.nodes._json import settle_without_model, without_model
from kgot_errors.repair import repair_json
from kgot_errors.repair._classify import classify_incident
from kgot_errors.runtime.settings import Settings
from kgot_errors.state import Incident, RecoveryResult

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "corpus" / "json_public.jsonl"
DECODE = "json.decoder.JSONDecodeError"


def _cases() -> list[tuple[str, object]]:
    cases = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(c["input"], c.get("schema")) for c in cases]


EDGE = [
    ('{"a": "x\ud800y"}', None),  # lone surrogates: the edge replaces them, so every fix loses data
    ('{"a": "x\ud800y",}', None),
    ("no JSON here", None),
    ('{"a": 1', {"type": "object", "required": ["b"]}),
    ("", None),
]


def _comparable(data: dict) -> dict:
    data = {k: v for k, v in data.items() if k not in ("duration_s", "thread_id")}
    data["attempts"] = [{k: v for k, v in a.items() if k != "duration_s"} for a in data["attempts"]]
    return data


def _without_graph(incident: Incident, settings: Settings, failed: object = None) -> dict:
    found = classify_incident(incident.to_data())
    state = {"incident": incident.to_data(), "kind": str(found.kind), "content_kind": str(found.content_kind)}
    return RecoveryResult.from_data(settle_without_model(state, settings, failed=failed)).to_data()


def test_every_corpus_case_and_the_damaged_inputs_end_as_the_graph_ends_them() -> None:
    settings = Settings()
    assert without_model(settings)
    compared, reused, seen = 0, 0, set()
    for content, schema in [*_cases(), *EDGE]:
        incident = Incident.parse({"error_type": DECODE, "message": "m", "content": content, "output_schema": schema})
        found = classify_incident(incident.to_data())
        if str(found.content_kind) != "json":
            continue
        graph = recover(incident, checkpointer=None, settings=settings).to_data()
        assert _comparable(_without_graph(incident, settings)) == _comparable(graph), content[:80]
        compared += 1
        seen.add(graph["outcome"])
        repaired = repair_json(content, schema)
        if not repaired.ok and not incident.input_notes:  # its tries stand for the layers' (the CLI's workers)
            assert _comparable(_without_graph(incident, settings, repaired)) == _comparable(graph), content[:80]
            reused += 1
    assert compared > 600 and seen >= {"recovered", "degraded", "not_recovered"}
    assert reused >= 10


@pytest.mark.parametrize("changes", [
    {"syntax_error_management": {"llm_correction_enabled": False}},  # llm_fix would skip with another reason
    {"llm": {"model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1"}},  # never called: only built
    {"llm": {"model": "gpt-4o-mini"}},  # named but unreachable: the graph says so, not a worker's traceback
    {"error_recovery": {"escalate_to_human": True}},
])
def test_settings_that_change_the_route_are_left_to_the_graph(changes: dict) -> None:
    assert not without_model(Settings.model_validate(changes))


def test_content_over_the_size_limit_is_refused_before_any_layer_as_the_graph_refuses_it() -> None:
    settings = Settings.model_validate({"syntax_error_management": {"max_content_chars": 20}})
    incident = Incident.parse({"error_type": DECODE, "message": "m", "content": '{"a": 1, "b": 2, "c": 3,}'})
    graph = recover(incident, checkpointer=None, settings=settings).to_data()
    assert graph["attempts"] == [] and "holds more than max_content_chars (20)" in graph["summary"]
    assert _comparable(_without_graph(incident, settings)) == _comparable(graph)

