"""Incident: capturing exceptions as plain data, Retry-After parsing, and cleaning bad input at the edge."""

from __future__ import annotations

import email.utils
import json

import httpx
import openai
import pytest

from kgot_errors.errors import InvalidIncident, InvalidSchema
from kgot_errors.state import Incident
from kgot_errors.state.incident import error_line, parse_retry_after

REQ = httpx.Request("GET", "http://127.0.0.1:9/")


def test_from_exception_captures_type_mro_message_traceback_and_doc():
    try:
        json.loads('{"a": }')
    except json.JSONDecodeError as exc:
        inc = Incident.from_exception(exc)
    assert inc.error_type == "json.decoder.JSONDecodeError"
    assert inc.error_mro[:2] == ["json.decoder.JSONDecodeError", "ValueError"]
    assert inc.message.startswith("Expecting value")
    assert "Traceback (most recent call last)" in inc.traceback
    assert inc.content == '{"a": }'  # JSONDecodeError.doc is the failing text


def test_the_traceback_keeps_every_frame_and_cause_without_column_markers():
    def inner():
        return json.loads('{"a": }')

    try:
        try:
            inner()
        except json.JSONDecodeError as cause:
            raise RuntimeError("wrapped") from cause
    except RuntimeError as exc:
        inc = Incident.from_exception(exc)
    text = inc.traceback
    assert "return json.loads('{\"a\": }')" in text  # the source line of the frame that failed
    assert "The above exception was the direct cause" in text and "RuntimeError: wrapped" in text
    assert "JSONDecodeError: Expecting value" in text
    assert not [line for line in text.splitlines() if set(line.strip()) <= {"^", "~"} and line.strip()]


def test_from_exception_takes_status_and_retry_after_from_the_response():
    resp = httpx.Response(429, headers={"Retry-After": "7"}, request=REQ)
    inc = Incident.from_exception(openai.RateLimitError("slow down", response=resp, body=None))
    assert (inc.status_code, inc.retry_after) == (429, 7.0)
    assert inc.error_mro[1] == "openai.APIStatusError"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12.0), ("0.5", 0.5), (3, 3.0), ("-4", 0.0), ("", None), ("soon", None), (None, None), (True, None)],
)
def test_parse_retry_after_seconds(raw, expected):
    assert parse_retry_after(raw) == expected


def test_parse_retry_after_http_date_is_relative_to_now():
    now = 1_800_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_incident_is_checkpoint_safe_plain_data():
    inc = Incident.from_exception(ValueError("boom"), content=b"{\"a\": 1}", schema={"type": "object"})
    data = inc.to_data()
    assert json.loads(json.dumps(data)) == data  # nothing but JSON types
    assert Incident.parse(data) == inc


def test_invalid_utf8_bytes_are_replaced_and_said_so():
    inc = Incident.parse({"error_type": "E", "message": "m", "content": b'{"a": "caf\xe9"}'})
    assert inc.content == '{"a": "caf\ufffd"}'
    assert inc.input_notes == ["content: 1 invalid UTF-8 byte(s) replaced with U+FFFD"]


def test_lone_surrogates_are_replaced_so_checkpoints_can_store_them():
    inc = Incident.parse({"error_type": "E", "message": "m", "content": '{"a": "\ud800"}'})
    inc.content.encode("utf-8")  # would raise if a surrogate survived
    assert "lone surrogate" in inc.input_notes[0]


def test_an_incident_needs_no_exception():
    """Content alone is an incident; its error line (in prompts and logs) says there was no exception."""
    bare = Incident.parse({"content": "{'a': 1}"})
    assert (bare.error_type, bare.message, bare.content) == ("", "", "{'a': 1}")
    assert error_line(bare.to_data()) == "no exception was given"
    assert error_line({"error_type": "", "message": "the answer was cut off"}) == "the answer was cut off"
    assert error_line(Incident.from_exception(ValueError("bad")).to_data()) == "ValueError: bad"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"error_type": 7, "message": "m"}, "error_type"),
        ({"error_type": "E", "message": ["m"]}, "message"),
        ({"error_type": "E", "message": "m", "status_code": 999}, "status_code"),
        ({"error_type": "E", "message": "m", "severity": "apocalyptic"}, "severity"),
        ({"error_type": "E", "message": "m", "surprise": 1}, "surprise"),
    ],
)
def test_bad_incidents_raise_invalid_incident_naming_the_field(data, field):
    with pytest.raises(InvalidIncident) as info:
        Incident.parse(data)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize("schema", [{"type": "nonsense"}, {"properties": 3}, "not a schema", 42, [1, 2]])
def test_a_schema_that_is_not_a_schema_is_a_typed_error(schema):
    with pytest.raises(InvalidSchema):
        Incident.parse({"error_type": "E", "message": "m", "output_schema": schema})


def test_pydantic_model_class_becomes_its_json_schema():
    import pydantic

    class Review(pydantic.BaseModel):
        title: str
        rating: float

    inc = Incident.parse({"error_type": "E", "message": "m", "output_schema": Review})
    assert inc.output_schema["required"] == ["title", "rating"]


class _BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


class _BrokenStatus(Exception):
    @property
    def status_code(self) -> int:
        raise RuntimeError("no status")

    @property
    def response(self) -> object:
        raise ValueError("no response")


@pytest.mark.parametrize("exc", [_BrokenStr(), _BrokenStatus("x")], ids=["__str__", "status_code"])
def test_an_exception_that_raises_while_read_is_still_recorded(exc: Exception) -> None:
    from kgot_errors import recover

    result = recover(exc, content='{"a": 1,}', checkpointer=None)
    assert result.recovered and result.value == {"a": 1}
    incident = Incident.from_exception(exc)
    assert incident.error_type.endswith(type(exc).__name__) and incident.message
