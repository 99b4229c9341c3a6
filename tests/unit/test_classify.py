"""classify: every TYPE_TABLE row against the real exception class, then status, content and message rules."""

from __future__ import annotations

import ast
import json
import subprocess

import httpx
import jsonschema
import openai
import pydantic
import pytest
import requests
from langchain_core.exceptions import OutputParserException

from kgot_errors.errors import ConfigError
from kgot_errors.repair._classify import TYPE_TABLE, classify_incident, status_kind
from kgot_errors.state import ContentKind, ErrorKind, Incident

REQ = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def _resp(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=REQ)


def _openai(cls: type, status: int) -> Exception:
    return cls("provider said no", response=_resp(status), body=None)


def _json_error() -> Exception:
    try:
        json.loads('{"a": 1,}')
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError


def _syntax_error(code: str = "def f(:\n  pass") -> Exception:
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return exc
    raise AssertionError


def _pydantic_error() -> Exception:
    class M(pydantic.BaseModel):
        n: int

    try:
        M.model_validate({"n": "many"})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError


def _raised(code: str) -> Exception:
    try:
        exec(compile(code, "<generated>", "exec"), {})  # noqa: S102 - test input we wrote
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError


def _httpx_status(status: int) -> Exception:
    return httpx.HTTPStatusError("bad status", request=REQ, response=_resp(status))


def _requests_status(status: int) -> Exception:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError("bad status", response=response)


CASES = [
    # (name, exception, content, expected kind, expected content kind)
    ("json decode", _json_error(), '{"a": 1,}', ErrorKind.SYNTAX, ContentKind.JSON),
    ("output parser", OutputParserException("bad", llm_output="{oops"), None, ErrorKind.SYNTAX, ContentKind.JSON),
    ("ast syntax", _syntax_error(), "def f(:\n  pass", ErrorKind.SYNTAX, ContentKind.PYTHON),
    ("indentation", _syntax_error("x = 1\n  y = 2"), "x = 1\n  y = 2", ErrorKind.SYNTAX, ContentKind.PYTHON),
    ("compile", SyntaxError("invalid syntax"), "print(1", ErrorKind.SYNTAX, ContentKind.PYTHON),
    ("pydantic", _pydantic_error(), '{"n": "many"}', ErrorKind.SCHEMA, ContentKind.JSON),
    ("jsonschema", jsonschema.ValidationError("'many' is not of type 'integer'"), '{"n": "many"}',
     ErrorKind.SCHEMA, ContentKind.JSON),
    ("openai 429", _openai(openai.RateLimitError, 429), None, ErrorKind.TRANSIENT, None),
    ("openai 500", _openai(openai.InternalServerError, 500), None, ErrorKind.TRANSIENT, None),
    ("openai 502 status", _openai(openai.APIStatusError, 502), None, ErrorKind.TRANSIENT, None),
    ("openai 503 status", _openai(openai.APIStatusError, 503), None, ErrorKind.TRANSIENT, None),
    ("openai 504 status", _openai(openai.APIStatusError, 504), None, ErrorKind.TRANSIENT, None),
    ("openai 400", _openai(openai.BadRequestError, 400), None, ErrorKind.PERMANENT, None),
    ("openai 401", _openai(openai.AuthenticationError, 401), None, ErrorKind.PERMANENT, None),
    ("openai 403", _openai(openai.PermissionDeniedError, 403), None, ErrorKind.PERMANENT, None),
    ("openai 404", _openai(openai.NotFoundError, 404), None, ErrorKind.PERMANENT, None),
    ("openai connection", openai.APIConnectionError(request=REQ), None, ErrorKind.TRANSIENT, None),
    ("openai timeout", openai.APITimeoutError(request=REQ), None, ErrorKind.TRANSIENT, None),
    ("httpx connect", httpx.ConnectError("refused", request=REQ), None, ErrorKind.TRANSIENT, None),
    ("httpx read timeout", httpx.ReadTimeout("slow", request=REQ), None, ErrorKind.TRANSIENT, None),
    ("httpx 503", _httpx_status(503), None, ErrorKind.TRANSIENT, None),
    ("httpx 401", _httpx_status(401), None, ErrorKind.PERMANENT, None),
    ("requests 429", _requests_status(429), None, ErrorKind.TRANSIENT, None),
    ("requests 404", _requests_status(404), None, ErrorKind.PERMANENT, None),
    ("requests connection", requests.ConnectionError("reset"), None, ErrorKind.TRANSIENT, None),
    ("requests timeout", requests.Timeout("slow"), None, ErrorKind.TRANSIENT, None),
    ("builtin connection reset", ConnectionResetError("reset by peer"), None, ErrorKind.TRANSIENT, None),
    ("builtin timeout", TimeoutError("timed out"), None, ErrorKind.TRANSIENT, None),
    ("permission", PermissionError("denied"), None, ErrorKind.PERMANENT, None),
    ("config", ConfigError("bad setting"), None, ErrorKind.PERMANENT, None),
    ("called process", subprocess.CalledProcessError(1, ["python", "gen.py"]), "import sys; sys.exit(1)",
     ErrorKind.EXECUTION, ContentKind.PYTHON),
    ("zero division in code", _raised("1/0"), "print(1/0)", ErrorKind.EXECUTION, ContentKind.PYTHON),
    ("name error in code", _raised("undefined_name"), "print(undefined_name)", ErrorKind.EXECUTION,
     ContentKind.PYTHON),
    ("key error in code", _raised("{}['k']"), "d = {}\nd['k']", ErrorKind.EXECUTION, ContentKind.PYTHON),
]


@pytest.mark.parametrize(("name", "exc", "content", "kind", "content_kind"), CASES, ids=[c[0] for c in CASES])
def test_exception_types_map_to_their_kind(name, exc, content, kind, content_kind):
    got = classify_incident(Incident.from_exception(exc, content=content).to_data())
    assert got.kind is kind, got.rule
    assert got.content_kind == content_kind


def test_every_table_row_names_a_real_class():
    import importlib

    for name in TYPE_TABLE:
        module, _, cls = name.rpartition(".")
        obj = importlib.import_module(module or "builtins")
        for part in cls.split("."):
            obj = getattr(obj, part)
        assert isinstance(obj, type) and issubclass(obj, BaseException), name


def test_most_specific_class_wins_over_its_base():
    # RateLimitError is an APIStatusError; its own row must decide even with a misleading status.
    exc = openai.RateLimitError("slow", response=_resp(400), body=None)
    assert classify_incident(Incident.from_exception(exc).to_data()).kind is ErrorKind.TRANSIENT


def test_runtime_errors_without_code_are_unknown_not_execution():
    got = classify_incident(Incident.from_exception(KeyError("missing")).to_data())
    assert got.kind is ErrorKind.UNKNOWN


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, ErrorKind.TRANSIENT), (500, ErrorKind.TRANSIENT), (501, ErrorKind.PERMANENT), (502, ErrorKind.TRANSIENT),
     (503, ErrorKind.TRANSIENT), (504, ErrorKind.TRANSIENT), (408, ErrorKind.TRANSIENT), (400, ErrorKind.PERMANENT),
     (401, ErrorKind.PERMANENT), (403, ErrorKind.PERMANENT), (404, ErrorKind.PERMANENT), (200, None), (302, None)],
)
def test_status_codes(status, kind):
    assert status_kind(status) is kind


@pytest.mark.parametrize(
    ("incident", "kind", "rule_start"),
    [
        ({"error_type": "SomeSDKError", "message": "failed", "status_code": 503}, ErrorKind.TRANSIENT, "status"),
        ({"error_type": "Whatever", "message": "bad", "content": '{"a": 1,,}'}, ErrorKind.SYNTAX, "content"),
        ({"error_type": "Whatever", "message": "bad", "content": '{"a": 1}', "output_schema": {"type": "array"}},
         ErrorKind.SCHEMA, "content"),
        ({"error_type": "Whatever", "message": "bad", "content": "def f(:\n pass"}, ErrorKind.SYNTAX, "content"),
        ({"error_type": "ProviderError", "message": "Rate limit reached, try again in 2s"}, ErrorKind.TRANSIENT,
         "message"),
        ({"error_type": "ProviderError", "message": "Invalid API key provided"}, ErrorKind.PERMANENT, "message"),
        ({"error_type": "Mystery", "message": "something odd"}, ErrorKind.UNKNOWN, "no rule"),
        # short class names (e.g. from another language's client over HTTP) use the same table
        ({"error_type": "RateLimitError", "message": "x"}, ErrorKind.TRANSIENT, "type openai.RateLimitError"),
        ({"error_type": "JSONDecodeError", "message": "x", "content": "{"}, ErrorKind.SYNTAX, "type json"),
    ],
)
def test_status_content_and_message_rules_apply_in_order(incident, kind, rule_start):
    got = classify_incident(Incident.parse(incident).to_data())
    assert got.kind is kind
    assert got.rule.startswith(rule_start)


def _agent_raised(exc: Exception) -> Exception:
    try:  # the agent's own `raise ValueError(...)` after a failed parse: its traceback shows agent code
        raise exc
    except Exception as caught:  # noqa: BLE001
        return caught


AGE = {"type": "object", "properties": {"age": {"type": "integer"}}}


@pytest.mark.parametrize(
    ("exc", "content", "schema", "kind", "content_kind"),
    [
        (ValueError("could not parse the model's answer"), '{"age": "thirty"}', AGE, ErrorKind.SCHEMA,
         ContentKind.JSON),
        (ValueError("bad json"), '{"a": 1,}', None, ErrorKind.SYNTAX, ContentKind.JSON),
        (RuntimeError("tool returned garbage"), '[1, 2,', None, ErrorKind.SYNTAX, ContentKind.JSON),
        (TypeError("expected a dict"), 'Sure! {"a": 1}', None, ErrorKind.SYNTAX, ContentKind.JSON),
        (KeyError("answer"), '{"steps": ["for x in items:", "if x: print(x)"]}', None, ErrorKind.SYNTAX,
         ContentKind.JSON),
        (Exception("oops"), '{"code": "```python\\nprint(1)\\n```"}', None, ErrorKind.SYNTAX, ContentKind.JSON),
        (Exception("oops"), 'Here you go:\n```json\n{"a": 1,}\n```', None, ErrorKind.SYNTAX, ContentKind.JSON),
        (ValueError("bad"), "anything at all", {"type": "object"}, ErrorKind.SYNTAX, ContentKind.JSON),
    ],
)
def test_generic_exceptions_never_make_json_code(exc, content, schema, kind, content_kind):
    got = classify_incident(Incident.from_exception(_agent_raised(exc), content=content, schema=schema).to_data())
    assert (got.kind, got.content_kind) == (kind, content_kind), got.rule


def test_code_with_its_own_traceback_is_an_execution_incident():
    code = "items = [1, 2]\ntotal = items[5]\n"
    got = classify_incident(Incident.from_exception(_raised(code), content=code).to_data())
    assert (got.kind, got.content_kind) == (ErrorKind.EXECUTION, ContentKind.PYTHON)
    said = classify_incident(Incident.from_exception(_agent_raised(ValueError("x")), content=code,
                                                     content_kind="python").to_data())
    assert said.kind is ErrorKind.EXECUTION  # the caller says it is code


def test_a_python_fence_with_code_is_python_and_a_bare_literal_is_not():
    from kgot_errors.repair._classify import sniff_content

    assert sniff_content("Fixed:\n```python\nfor i in range(3):\n    print(i)\n```") is ContentKind.PYTHON
    assert sniff_content("```python\n{'a': 1}\n```") is ContentKind.JSON
    assert sniff_content('"just a string"') is ContentKind.JSON
    assert sniff_content("I cannot help with that.") is ContentKind.TEXT


@pytest.mark.parametrize("content", ["here is the ", "Thought: I ", "callbck_123(null);allback_123(null);",
                                     'NuberLoNaN/ng("2")', "import os\nos.remove('x')\n"])
@pytest.mark.parametrize("exc", [RuntimeError("tool failed"), ValueError("bad"), Exception("oops"), None])
def test_text_that_merely_parses_as_python_is_never_an_execution_incident(content, exc):
    """Found by bench/bench_fuzz.py: prose such as `here is the` (a comparison) or `Thought: I` (an annotation)
    parses as Python; without the caller saying it is code, or a traceback through it, nothing is run."""
    if exc is None:
        data = Incident.parse({"error_type": "AgentError", "message": "unusable", "content": content}).to_data()
    else:
        data = Incident.from_exception(_agent_raised(exc), content=content).to_data()
    got = classify_incident(data)
    assert got.kind is not ErrorKind.EXECUTION, got.rule
