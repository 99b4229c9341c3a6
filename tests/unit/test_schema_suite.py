"""The official JSON-Schema-Test-Suite (draft 2020-12 and draft 7) against the repair layers: valid instances come
back unchanged, invalid ones are never "recovered" with a value that fails the schema, and every change is listed.

Data: tests/data/json_schema_test_suite/, copied from github.com/json-schema-org/JSON-Schema-Test-Suite (MIT,
its LICENSE beside the data; files for remote references, vocabularies, formats and content left out: no network).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kgot_errors.errors import InvalidSchema
from kgot_errors.repair import is_strict_json, parser_layer, unicode_layer
from kgot_errors.repair import load_schema, schema_errors

SUITE = Path(__file__).resolve().parents[1] / "data" / "json_schema_test_suite"
DRAFT_URI = {"draft2020-12": "https://json-schema.org/draft/2020-12/schema",
             "draft7": "http://json-schema.org/draft-07/schema#"}


def _cases(draft: str) -> list[tuple[str, Any, Any, bool]]:
    out = []
    for path in sorted((SUITE / draft).glob("*.json")):
        for group in json.loads(path.read_text(encoding="utf-8")):
            for test in group["tests"]:
                out.append((f"{path.stem}: {group['description']}: {test['description']}", group["schema"],
                            test["data"], test["valid"]))
    return out


def _with_dialect(schema: Any, draft: str) -> Any:
    """The suite's schemas name their dialect only by folder: say it in `$schema`, as a user would."""
    if isinstance(schema, dict) and "$schema" not in schema:
        return {"$schema": DRAFT_URI[draft], **schema}
    return schema


def _run(draft: str) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {"changed": [], "false_recovery": [], "unlisted": [], "refused_schema": []}
    for name, schema, data, valid in _cases(draft):
        schema = _with_dialect(schema, draft)
        try:
            loaded = load_schema(schema)
        except InvalidSchema:
            problems["refused_schema"].append(name)
            continue
        text = json.dumps(data, ensure_ascii=False)
        first = unicode_layer(text, loaded)
        out = first if first.ok else parser_layer(text, loaded)
        if valid:
            if not (first.ok and first.text == text and first.steps == () and first.changes == ()):
                problems["changed"].append(f"{name}: {first.reason or first.steps}")
            continue
        if out.ok:
            if not is_strict_json(out.value) or schema_errors(out.value, loaded):
                problems["false_recovery"].append(name)
            elif out.value != data and not out.changes and not out.steps:
                problems["unlisted"].append(name)
    return problems


@pytest.mark.parametrize("draft", ["draft2020-12", "draft7"])
def test_official_suite_valid_instances_unchanged_and_no_false_recovery(draft: str) -> None:
    problems = _run(draft)
    assert problems["changed"] == []
    assert problems["false_recovery"] == []
    assert problems["unlisted"] == []
    # every schema of these files is local: none may be refused
    assert problems["refused_schema"] == []


def test_draft7_idioms_are_validated_as_draft7_without_schema_keyword() -> None:
    tuple_items = {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]}
    assert schema_errors([1, "a"], load_schema(tuple_items)) == []
    assert schema_errors([1, 2], load_schema(tuple_items))
    deps = {"type": "object", "dependencies": {"a": ["b"]}}
    assert schema_errors({"a": 1}, load_schema(deps)), "draft-7 `dependencies` must be honoured"
    assert not unicode_layer('{"a": 1}', deps).ok


@pytest.mark.parametrize(("schema", "text", "ok"), [(True, '{"a": 1}', True), (False, '{"a": 1}', False)])
def test_boolean_schemas_are_schemas(schema: bool, text: str, ok: bool) -> None:
    assert load_schema(schema) is schema
    assert unicode_layer(text, schema).ok is ok
