"""repair_json, the pure repair API: no LangGraph imported, the graph's verdicts on the whole corpus, the CLI's
--no-checkpoint path printing what the graph would print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kgot_errors import recover
from kgot_errors.errors import InvalidSchema
from kgot_errors.repair import DEFAULT_MAX_CHARS, DEFAULT_MAX_DEPTH, DEFAULT_POLICY, RepairResult, repair_json
from kgot_errors.runtime.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "bench" / "corpus" / "json_public.jsonl"
EXAMPLE, EXAMPLE_SCHEMA = ROOT / "examples" / "broken_output.txt", ROOT / "examples" / "review.schema.json"
HEAVY = ("langgraph", "langchain", "langsmith")
OUTCOME = {"recovered": "recovered", "degraded": "degraded", "failed": "not_recovered"}


def _cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KGOT_", "OPENAI_", "LANGSMITH_"))}


def test_importing_and_running_repair_json_loads_no_langgraph_nor_langchain() -> None:
    code = ("import sys\nfrom kgot_errors.repair import repair_json\n"
            "r = repair_json(\"```json\\n{'a': 1,}\\n```\", {'type': 'object'})\n"
            "assert r.verdict == 'recovered' and r.value == {'a': 1}, r\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize(("text", "schema", "verdict", "value"), [
    ('{"a": 1}', None, "recovered", {"a": 1}),
    ("{'a': 1, 'b': [1, 2,],}", None, "recovered", {"a": 1, "b": [1, 2]}),
    ('{"n": "3"}', {"type": "object", "properties": {"n": {"type": "integer"}}}, "recovered", {"n": 3}),
    ('{"a": [1, 2', None, "degraded", {"a": [1, 2]}),
    ('{"a": 1}', {"type": "object", "required": ["b"]}, "failed", None),
    ("", None, "failed", None),
])
def test_repair_json_verdicts(text: str, schema: Any, verdict: str, value: Any) -> None:
    result = repair_json(text, schema)
    assert isinstance(result, RepairResult)
    assert (result.verdict, result.value) == (verdict, value)
    assert result.ok is (verdict != "failed")
    assert [run.layer for run in result.runs][:1] == ["unicode_fix"]
    if verdict == "failed":
        assert result.reason and result.layer is None
    if verdict == "degraded":
        assert {c["kind"] for c in result.changes} == {"truncated"}


def test_valid_input_comes_back_byte_for_byte_from_unicode_fix() -> None:
    text = '{ "b" : 1.50,\n  "a": "\\u00e9" }'
    result = repair_json(text, {"type": "object"})
    assert (result.verdict, result.text, result.layer, result.steps) == ("recovered", text, "unicode_fix", ())


def test_a_closed_json_fence_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The text around a closed ```json fence leaves its contents to the fence's own segment (ranked higher):
    the normaliser reads the fenced object once, not once as part of the text and again as the fence."""
    import importlib

    extract = importlib.import_module("kgot_errors.repair._extract")
    body = "{\n  'a': 1,\n  'b': [1, 2,],\n}"
    text = f"Here it is:\n```json\n{body}\n```\nAnything else?"
    reads: list[str] = []
    real = extract._read_stream

    def counted(s: str, start: int) -> Any:
        reads.append(s[start:start + len(body)])
        return real(s, start)

    monkeypatch.setattr(extract, "_read_stream", counted)
    result = repair_json(text)
    assert (result.verdict, result.value) == ("recovered", {"a": 1, "b": [1, 2]})
    assert result.steps[0] == "extracted from ```json block"
    assert reads.count(body) == 1, reads
    reads.clear()  # a fence holding a stray fence line is read both ways, as before
    assert repair_json(f"Here:\n```json\n{body}\n```js\n[3]\n```").verdict == "recovered"
    assert reads.count(body) == 2, reads


def test_the_policy_decides_what_a_change_is_worth() -> None:
    assert repair_json('{"a": [1, 2', policy={"truncated": "accept"}).verdict == "recovered"
    refused = repair_json('{"a": [1, 2', policy={"truncated": "refuse"})
    assert refused.verdict == "failed" and "refuses" in (refused.reason or "")


def test_lone_surrogates_are_a_removed_change_as_at_the_graphs_edge() -> None:
    result = repair_json('{"a": "x\ud800"}')
    assert result.verdict == "failed" and "damaged before recovery" in (result.reason or "")
    accepted = repair_json('{"a": "x\ud800"}', policy={"removed": "degrade"})
    replaced = "x\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace")  # as Incident does it
    assert accepted.verdict == "degraded" and accepted.value == {"a": replaced}
    assert {c["kind"] for c in accepted.changes} == {"removed"}


def test_an_unusable_schema_raises_invalid_schema() -> None:
    with pytest.raises(InvalidSchema):
        repair_json("{}", {"type": "no such type"})


def test_the_settings_defaults_are_the_engines_defaults() -> None:
    syntax = load_settings(environ={}).syntax_error_management
    assert (syntax.max_content_chars, syntax.max_depth, dict(syntax.changes)) == (
        DEFAULT_MAX_CHARS, DEFAULT_MAX_DEPTH, DEFAULT_POLICY)


def test_the_graph_gives_the_same_verdict_value_and_layer_on_the_whole_corpus() -> None:
    settings = load_settings(environ={})  # no model: the deterministic layers alone decide
    differ = []
    for case in _cases():
        mine = repair_json(case["input"], case.get("schema"))
        graph = recover({"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": case["input"],
                         "output_schema": case.get("schema")}, checkpointer=None, settings=settings)
        if (OUTCOME[mine.verdict], mine.value, mine.text, mine.layer, list(mine.changes) if mine.ok else []) != (
                graph.outcome, graph.value, graph.text, graph.recovered_by, graph.changes):
            differ.append((case["id"], mine.verdict, graph.outcome))
    assert not differ, differ[:10]


def _cli(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    program = ("import sys\nfrom kgot_errors.cli import main\nrc = main(sys.argv[1:])\n" + code +
               "sys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, timeout=120,
                          env=_clean_env())


def test_cli_repair_no_checkpoint_runs_without_langgraph() -> None:
    check = f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\nprint(heavy, file=sys.stderr)\n"
    done = _cli("repair", str(EXAMPLE), "--schema", str(EXAMPLE_SCHEMA), "--no-checkpoint", code=check)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["title"] == "Shipping Service Model"
    assert done.stderr.splitlines()[0].startswith("recovered by parser_fix after 2 attempt(s)")
    assert done.stderr.splitlines()[-1] == "[]"


def _without_durations(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "duration_s": 0, "attempts": [{**a, "duration_s": 0} for a in data["attempts"]]}


@pytest.mark.parametrize("name", ["example", "truncated", "valid", "schema"])
def test_cli_no_checkpoint_prints_what_the_graph_prints(tmp_path: Path, name: str) -> None:
    content, schema = {
        "example": (EXAMPLE.read_text(encoding="utf-8"), json.loads(EXAMPLE_SCHEMA.read_text(encoding="utf-8"))),
        "truncated": ('Here: {"a": [1, 2', None),
        "valid": ('{"a": 1}', None),
        "schema": ('{"n": "3", "x": "y"}', {"type": "object", "properties": {"n": {"type": "integer"}}}),
    }[name]
    src, schema_file = tmp_path / "in.txt", tmp_path / "schema.json"
    src.write_text(content, encoding="utf-8")
    args = ["repair", str(src), "--json"]
    if schema is not None:
        schema_file.write_text(json.dumps(schema), encoding="utf-8")
        args += ["--schema", str(schema_file)]
    pure = _cli(*args, "--no-checkpoint")
    graph = _cli(*args, "--checkpoint", str(tmp_path / "store.sqlite"))
    assert pure.returncode == graph.returncode, (pure.stderr, graph.stderr)
    mine, theirs = json.loads(pure.stdout), json.loads(graph.stdout)
    assert mine["thread_id"] is None and theirs["thread_id"]
    assert _without_durations(mine) == _without_durations({**theirs, "thread_id": None})
    assert pure.stderr.splitlines()[0] == graph.stderr.splitlines()[0].split(" [thread ")[0]


def test_cli_no_checkpoint_falls_back_to_the_graph_when_the_engine_finds_no_fix(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("no JSON here at all, just words.", encoding="utf-8")
    done = _cli("repair", str(src), "--no-checkpoint", "--json",
                code="assert 'langgraph' in sys.modules\n")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    layers = [a["layer"] for a in result["attempts"]]
    assert result["outcome"] == "not_recovered" and layers[:3] == ["unicode_fix", "parser_fix", "llm_fix"]
