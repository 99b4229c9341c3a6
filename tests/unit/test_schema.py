"""Output schemas: loading, validation messages with JSON paths, conservative coercion."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from kgot_errors.errors import InvalidSchema
from kgot_errors.repair import coerce_to_schema, load_schema, schema_errors

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "active": {"type": "boolean"},
        "skills": {"type": "array", "items": {"type": "string"}},
        "score": {"type": ["number", "null"]},
        "label": {"type": "string", "enum": ["positive", "negative"]},
    },
    "required": ["name", "age"],
}


class Review(BaseModel):
    title: str
    rating: float
    tags: list[str] = []


def test_load_schema_accepts_none_dicts_and_pydantic_models() -> None:
    assert load_schema(None) is None
    assert load_schema(PERSON) is PERSON
    schema = load_schema(Review)
    assert schema is not None and schema["required"] == ["title", "rating"]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (3, "got int"),
        ("{}", "got str"),
        (Exception, "got type"),
        ({"type": 3}, "not a valid JSON Schema"),
        ({"type": "object", "required": "name"}, "not a valid JSON Schema"),
        ({"x": {1, 2}}, "not a JSON-serialisable schema"),
    ],
)
def test_load_schema_rejects_anything_else_with_invalid_schema(schema: object, message: str) -> None:
    with pytest.raises(InvalidSchema, match=message) as caught:
        load_schema(schema)
    assert isinstance(caught.value, ValueError)
    assert caught.value.field == "output_schema"


ERRORS = [
    ({"name": "a", "age": 3}, []),
    ({"name": "a", "age": "x"}, ["$.age: 'x' is not of type 'integer'"]),
    ({"name": "a"}, ["$: 'age' is a required property"]),
    ({"name": "a", "age": 1, "skills": ["x", 2]}, ["$.skills[1]: 2 is not of type 'string'"]),
    ({"name": "a", "age": 1, "label": "Neutral"}, ["$.label: 'Neutral' is not one of ['positive', 'negative']"]),
]


@pytest.mark.parametrize(("value", "expected"), ERRORS)
def test_schema_errors_name_the_json_path(value: object, expected: list[str]) -> None:
    assert schema_errors(value, PERSON) == expected


def test_schema_errors_are_empty_without_schema_and_capped() -> None:
    assert schema_errors({"anything": 1}, None) == []
    many = {"type": "array", "items": {"type": "integer"}}
    assert len(schema_errors(["x"] * 50, many)) == 10
    assert len(schema_errors(["x"] * 50, many, limit=3)) == 3


COERCE = [
    # (value, schema, expected value, number of steps)
    ({"name": "a", "age": "41"}, PERSON, {"name": "a", "age": 41}, 1),
    ({"name": "a", "age": "41.0"}, PERSON, {"name": "a", "age": 41}, 1),
    ({"name": "a", "age": 41.0}, PERSON, {"name": "a", "age": 41.0}, 0),  # already an integer
    ({"name": "a", "age": 1, "active": "false"}, PERSON, {"name": "a", "age": 1, "active": False}, 1),
    ({"name": "a", "age": 1, "active": "Yes"}, PERSON, {"name": "a", "age": 1, "active": True}, 1),
    ({"name": "a", "age": 1, "active": 0}, PERSON, {"name": "a", "age": 1, "active": False}, 1),
    ({"name": "a", "age": 1, "skills": "go"}, PERSON, {"name": "a", "age": 1, "skills": ["go"]}, 1),
    ({"name": "a", "age": 1, "skills": '["a", "b"]'}, PERSON, {"name": "a", "age": 1, "skills": ["a", "b"]}, 1),
    ({"name": "a", "age": 1, "score": "0.5"}, PERSON, {"name": "a", "age": 1, "score": 0.5}, 1),
    ({"name": "a", "age": 1, "label": "Negative"}, PERSON, {"name": "a", "age": 1, "label": "negative"}, 1),
    ({"name": "a", "age": 1, "label": " POSITIVE "}, PERSON, {"name": "a", "age": 1, "label": "positive"}, 1),
    ({"name": 42, "age": 1}, PERSON, {"name": "42", "age": 1}, 1),
    ({"data": {"name": "a", "age": 1}}, PERSON, {"name": "a", "age": 1}, 1),
    ({"result": {"name": "a", "age": "2"}}, PERSON, {"name": "a", "age": 2}, 2),
    ([{"name": "a", "age": 1}], PERSON, {"name": "a", "age": 1}, 1),
    ('{"name": "a", "age": 1}', PERSON, {"name": "a", "age": 1}, 1),
    ({"a": 1, "extra": "x"}, {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}, {"a": 1}, 1),
    ({"x1": "2"}, {"type": "object", "patternProperties": {"^x": {"type": "integer"}}}, {"x1": 2}, 1),
    ({"a": "2"}, {"type": "object", "additionalProperties": {"type": "integer"}}, {"a": 2}, 1),
    ("1", {"type": "integer"}, 1, 1),
    ("null", {"type": "null"}, None, 1),
    ({"v": "3"}, {"type": "object", "properties": {"v": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}, {"v": 3}, 1),
    (
        {"item": {"n": "2"}},
        {"$defs": {"I": {"type": "object", "properties": {"n": {"type": "integer"}}}}, "type": "object",
         "properties": {"item": {"$ref": "#/$defs/I"}}},
        {"item": {"n": 2}},
        1,
    ),
]


@pytest.mark.parametrize(("value", "schema", "expected", "n_steps"), COERCE)
def test_coerce_to_schema_converts_only_what_does_not_fit(value: object, schema: dict, expected: object, n_steps: int) -> None:
    coerced, steps = coerce_to_schema(value, schema)
    assert coerced == expected
    assert len(steps) == n_steps
    assert all(step["path"].startswith("$") and step["kind"] in ("coerced", "added", "removed") for step in steps)


NEVER_INVENTS = [
    ({"name": "a"}, PERSON),  # a missing required field stays missing
    ({"name": "a", "age": "forty"}, PERSON),  # words are not numbers
    ({"name": "a", "age": 1, "label": "meh"}, PERSON),  # no enum member matches
    ({"name": "a", "age": 1.5}, PERSON),  # not integral
    ({"name": "a", "age": 1, "active": "maybe"}, PERSON),
]


@pytest.mark.parametrize(("value", "schema"), NEVER_INVENTS)
def test_coerce_to_schema_never_invents_data(value: object, schema: dict) -> None:
    coerced, _ = coerce_to_schema(value, schema)
    assert coerced == value
    assert schema_errors(coerced, schema)


def test_coerce_to_schema_is_identity_on_fitting_values_and_without_schema() -> None:
    value = {"name": "a", "age": 3}
    assert coerce_to_schema(value, PERSON) == (value, [])
    assert coerce_to_schema("x", None) == ("x", [])


def test_coerce_to_schema_works_with_pydantic_schemas() -> None:
    schema = load_schema(Review)
    coerced, steps = coerce_to_schema({"title": "t", "rating": "4.5", "tags": "a"}, schema)
    assert coerced == {"title": "t", "rating": 4.5, "tags": ["a"]}
    assert len(steps) == 2
    Review.model_validate(coerced)
