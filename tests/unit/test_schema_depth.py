"""Schemas are refused at load time with the true reason: nesting past MAX_SCHEMA_DEPTH (never a bare RecursionError),
and a remote reference under a property that happens to be named like a data keyword (`default`, `enum`, ...)."""

from __future__ import annotations

import time

import pytest

from kgot_errors import recover
from kgot_errors.errors import InvalidSchema
from kgot_errors.repair import load_schema, repair_json
from kgot_errors.repair._schema import MAX_SCHEMA_DEPTH


def _nested(levels: int) -> dict:
    """`levels` subschemas, each under the one before's `properties`: 2 * levels + 1 levels of objects."""
    schema: dict = {"type": "integer"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def _value(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


@pytest.mark.parametrize("levels", [MAX_SCHEMA_DEPTH // 2, 100, 450, 500, 1000, 5000])
def test_a_schema_nested_past_the_limit_is_invalid_at_load_time_and_says_so(levels: int) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidSchema, match=f"nests deeper than {MAX_SCHEMA_DEPTH} levels") as raised:
        load_schema(_nested(levels))
    assert "reference" not in str(raised.value)  # there are none
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("call", [
    lambda s: repair_json(_value(3), s),
    lambda s: repair_json(_value(3)[:-1], s),
    lambda s: recover(ValueError("x"), content=_value(3), schema=s, checkpointer=None),
    lambda s: recover(ValueError("x"), content=_value(3)[:-1], schema=s, checkpointer=None),
], ids=["engine", "engine-truncated", "recover", "recover-truncated"])
def test_entry_points_raise_invalid_schema_for_a_deep_schema_never_recursion_error(call) -> None:
    for levels in (300, 1000):
        with pytest.raises(InvalidSchema, match="nests deeper than"):
            call(_nested(levels))


def test_a_schema_just_within_the_limit_loads_and_validates_a_value_as_deep() -> None:
    levels = (MAX_SCHEMA_DEPTH - 1) // 2  # 2 * levels + 1 == MAX_SCHEMA_DEPTH - 1 or MAX_SCHEMA_DEPTH
    schema = _nested(levels)
    assert load_schema(schema) is schema
    fixed = repair_json(_value(levels), schema)
    assert fixed.verdict == "recovered" and fixed.text == _value(levels)
    wrong = repair_json(_value(levels).replace("1", '"x"'), schema)
    assert wrong.verdict == "failed" and "is not of type 'integer'" in (wrong.reason or "")


def test_nesting_counts_arrays_and_objects_wherever_they_are() -> None:
    deep_enum: dict = {"enum": [[[[]]]]}
    for _ in range(MAX_SCHEMA_DEPTH):
        deep_enum = {"allOf": [deep_enum]}  # two levels each: allOf's array and the subschema
    with pytest.raises(InvalidSchema, match="nests deeper than"):
        load_schema(deep_enum)


def test_a_schema_that_contains_itself_is_still_refused_as_not_serialisable() -> None:
    schema: dict = {"type": "object", "properties": {}}
    schema["properties"]["self"] = schema
    with pytest.raises(InvalidSchema, match="not a JSON-serialisable schema"):
        load_schema(schema)


# --- remote references under a property named like a data keyword ----------------------------------------------


@pytest.mark.parametrize("name", ["default", "enum", "const", "examples"])
@pytest.mark.parametrize("where", ["properties", "$defs", "patternProperties", "dependentSchemas"])
def test_a_remote_ref_under_a_name_like_a_data_keyword_is_invalid_at_load_time(listener, name: str,
                                                                                where: str) -> None:
    base, hits = listener
    schema = {where: {name: {"$ref": f"{base}/q.json"}}}
    with pytest.raises(InvalidSchema, match="points outside the schema; remote references are never fetched"):
        load_schema(schema)
    with pytest.raises(InvalidSchema, match="points outside the schema"):
        repair_json('{"%s": "x"}' % name, schema)
    assert hits == []


def test_a_remote_ref_nested_under_a_property_named_default_is_invalid_too(listener) -> None:
    base, hits = listener
    schema = {"properties": {"default": {"properties": {"enum": {"items": {"$ref": f"{base}/q.json"}}}}}}
    with pytest.raises(InvalidSchema, match="points outside the schema"):
        recover(ValueError("x"), content='{"default": {"enum": ["x"]}}', schema=schema, checkpointer=None)
    assert hits == []


def test_a_local_ref_under_a_property_named_default_resolves_and_validates() -> None:
    schema = {"$defs": {"s": {"type": "string"}}, "type": "object",
              "properties": {"default": {"$ref": "#/$defs/s"}, "const": {"$ref": "#/$defs/missing"}}}
    with pytest.raises(InvalidSchema, match="points to nothing"):
        load_schema(schema)
    del schema["properties"]["const"]
    assert load_schema(schema) is schema
    assert repair_json('{"default": "x"}', schema).verdict == "recovered"
    assert repair_json('{"default": [1]}', schema).verdict == "failed"


def test_a_ref_inside_a_default_value_is_data_and_never_checked_or_fetched(listener) -> None:
    base, hits = listener
    schema = {"type": "object", "default": {"$ref": f"{base}/q.json"}, "examples": [{"$ref": f"{base}/e.json"}]}
    assert load_schema(schema) is schema
    assert repair_json('{"a": 1}', schema).verdict == "recovered"
    assert hits == []
