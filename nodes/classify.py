"""classify: maps a failure to an ErrorKind by exception type, then HTTP status, then content; never repairs."""

from __future__ import annotations

import ast
import json
import re
from typing import Literal, NamedTuple

from langgraph.runtime import Runtime

from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import ContentKind, ErrorKind, IncidentData, Layer, RecoveryState, RecoveryUpdate

__all__ = ["BY_STATUS", "TYPE_TABLE", "Classification", "classify", "classify_incident", "status_kind"]

BY_STATUS = "by-status"
"""A TYPE_TABLE entry whose kind depends on the HTTP status code the error carries."""
EXECUTED = "executed-code"
"""A TYPE_TABLE entry for errors that generated code raises: EXECUTION when there is code."""

_Kind = ErrorKind | Literal["by-status", "executed-code"]

# Qualified class name -> (kind, content kind of the failing content). The most specific
# class in the exception's MRO that appears here wins. Keys are the classes' real
# `module.QualName`; tests/unit/test_classify.py checks every row against the real class.
TYPE_TABLE: dict[str, tuple[_Kind, ContentKind | None]] = {
    # malformed output
    "json.decoder.JSONDecodeError": (ErrorKind.SYNTAX, ContentKind.JSON),
    "langchain_core.exceptions.OutputParserException": (ErrorKind.SYNTAX, ContentKind.JSON),
    "openai.LengthFinishReasonError": (ErrorKind.SYNTAX, ContentKind.JSON),
    "SyntaxError": (ErrorKind.SYNTAX, ContentKind.PYTHON),  # IndentationError, TabError inherit
    # output that parses but does not fit
    "pydantic_core._pydantic_core.ValidationError": (ErrorKind.SCHEMA, ContentKind.JSON),
    "jsonschema.exceptions.ValidationError": (ErrorKind.SCHEMA, ContentKind.JSON),
    # provider and network errors
    "openai.APIStatusError": (BY_STATUS, None),
    "openai.RateLimitError": (ErrorKind.TRANSIENT, None),
    "openai.InternalServerError": (ErrorKind.TRANSIENT, None),
    "openai.APIConnectionError": (ErrorKind.TRANSIENT, None),
    "openai.APITimeoutError": (ErrorKind.TRANSIENT, None),
    "openai.AuthenticationError": (ErrorKind.PERMANENT, None),
    "openai.PermissionDeniedError": (ErrorKind.PERMANENT, None),
    "openai.BadRequestError": (ErrorKind.PERMANENT, None),
    "openai.NotFoundError": (ErrorKind.PERMANENT, None),
    "openai.ContentFilterFinishReasonError": (ErrorKind.PERMANENT, None),
    "httpx.HTTPStatusError": (BY_STATUS, None),
    "httpx.TransportError": (ErrorKind.TRANSIENT, None),  # ConnectError, ReadTimeout, RemoteProtocolError...
    "httpx.UnsupportedProtocol": (ErrorKind.PERMANENT, None),
    "httpx.InvalidURL": (ErrorKind.PERMANENT, None),
    "requests.exceptions.HTTPError": (BY_STATUS, None),
    "requests.exceptions.ConnectionError": (ErrorKind.TRANSIENT, None),
    "requests.exceptions.Timeout": (ErrorKind.TRANSIENT, None),
    "ConnectionError": (ErrorKind.TRANSIENT, None),  # ConnectionResetError, BrokenPipeError...
    "TimeoutError": (ErrorKind.TRANSIENT, None),  # also asyncio.TimeoutError
    "PermissionError": (ErrorKind.PERMANENT, None),
    "kgot_errors.errors.ConfigError": (ErrorKind.PERMANENT, None),
    # generated code that ran and failed
    "subprocess.CalledProcessError": (ErrorKind.EXECUTION, ContentKind.PYTHON),
    "subprocess.TimeoutExpired": (ErrorKind.EXECUTION, ContentKind.PYTHON),
    "NameError": (EXECUTED, ContentKind.PYTHON),
    "TypeError": (EXECUTED, ContentKind.PYTHON),
    "AttributeError": (EXECUTED, ContentKind.PYTHON),
    "ArithmeticError": (EXECUTED, ContentKind.PYTHON),  # ZeroDivisionError, OverflowError
    "LookupError": (EXECUTED, ContentKind.PYTHON),  # IndexError, KeyError
    "ImportError": (EXECUTED, ContentKind.PYTHON),
    "AssertionError": (EXECUTED, ContentKind.PYTHON),
    "RecursionError": (EXECUTED, ContentKind.PYTHON),
    "RuntimeError": (EXECUTED, ContentKind.PYTHON),
    "ValueError": (EXECUTED, ContentKind.PYTHON),
    "UnboundLocalError": (EXECUTED, ContentKind.PYTHON),
}

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_PERMANENT_STATUS = frozenset({400, 401, 402, 403, 404, 405, 406, 410, 411, 413, 414, 415, 422, 501})

# Last resort, on the message only; ordered, first match wins.
_MESSAGE_RULES: tuple[tuple[re.Pattern[str], ErrorKind], ...] = (
    (re.compile(r"rate.?limit|too many requests|overloaded|temporarily unavailable|try again", re.I),
     ErrorKind.TRANSIENT),
    (re.compile(r"timed? ?out|connection (reset|refused|aborted)|broken pipe|service unavailable|bad gateway",
                re.I), ErrorKind.TRANSIENT),
    (re.compile(r"unauthori[sz]ed|invalid api.?key|forbidden|permission denied|not found|quota", re.I),
     ErrorKind.PERMANENT),
    (re.compile(r"expecting (value|property name|',' delimiter)|unterminated string|invalid json|json",
                re.I), ErrorKind.SYNTAX),
    (re.compile(r"validation error|does not match|is not of type|required property|field required", re.I),
     ErrorKind.SCHEMA),
    (re.compile(r"traceback \(most recent call last\)|exit(ed)? (status|code) [1-9]", re.I),
     ErrorKind.EXECUTION),
)


def status_kind(status: int | None) -> ErrorKind | None:
    """Transient or permanent from an HTTP status code (None when it says neither)."""
    if status is None:
        return None
    if status in _TRANSIENT_STATUS or 500 <= status <= 599 and status not in _PERMANENT_STATUS:
        return ErrorKind.TRANSIENT
    if status in _PERMANENT_STATUS:
        return ErrorKind.PERMANENT
    return None


_SHORT_NAMES: dict[str, str] = {}
for _name in TYPE_TABLE:
    _SHORT_NAMES.setdefault(_name.rsplit(".", 1)[-1], _name)


def _table_row(names: list[str]) -> tuple[str, tuple[_Kind, ContentKind | None]] | None:
    """The row for the most specific class in `names` (full names first, then bare class names)."""
    for name in names:
        if name in TYPE_TABLE:
            return name, TYPE_TABLE[name]
        full = _SHORT_NAMES.get(name)
        if full is not None and "." not in name:
            return full, TYPE_TABLE[full]
    return None


def sniff_content(content: str | None) -> ContentKind | None:
    """JSON, Python or plain text, judged from the content alone."""
    if content is None or not content.strip():
        return None
    body = content.strip().lstrip("\ufeff")
    if "```python" in body or "```py\n" in body:
        return ContentKind.PYTHON
    if body[:1] in "{[" or "```json" in body or re.search(r"[{\[]\s*\"", body[:2000]):
        return ContentKind.JSON
    if re.search(r"^\s*(def |class |import |from \S+ import |print\(|for .+:|if .+:)", body, re.M):
        return ContentKind.PYTHON
    return ContentKind.TEXT


def _content_fails(content: str, kind: ContentKind) -> bool:
    if kind is ContentKind.JSON:
        try:
            json.loads(content)
        except (ValueError, RecursionError):
            return True
        return False
    if kind is ContentKind.PYTHON:
        try:
            ast.parse(content)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return True
    return False


class Classification(NamedTuple):
    kind: ErrorKind
    content_kind: ContentKind | None
    rule: str  # which rule decided, for the record


def classify_incident(incident: IncidentData, *, max_sniff_chars: int = 1_000_000) -> Classification:
    """Decide the ErrorKind: exception type (most specific first), HTTP status, content, then message text."""
    content = incident.get("content")
    given_kind = incident.get("content_kind")
    sniffed = ContentKind(given_kind) if given_kind else sniff_content((content or "")[:max_sniff_chars])
    names = list(incident.get("error_mro") or []) or [incident["error_type"]]
    status = incident.get("status_code")

    row = _table_row(names)
    if row is not None:
        name, (kind, content_kind) = row
        content_kind = ContentKind(given_kind) if given_kind else (content_kind if content else None) or sniffed
        if kind == BY_STATUS:
            by_status = status_kind(status)
            if by_status is not None:
                return Classification(by_status, content_kind, f"type {name} with status {status}")
            return Classification(ErrorKind.UNKNOWN, content_kind, f"type {name} without a decisive status")
        if kind == EXECUTED:
            if content and content_kind is ContentKind.PYTHON:
                return Classification(ErrorKind.EXECUTION, content_kind, f"type {name} raised by code")
        else:
            if kind in (ErrorKind.SYNTAX, ErrorKind.SCHEMA) and content_kind is ContentKind.TEXT:
                content_kind = ContentKind.JSON if kind is ErrorKind.SCHEMA else sniffed
            return Classification(ErrorKind(kind), content_kind, f"type {name}")

    by_status = status_kind(status)
    if by_status is not None:
        return Classification(by_status, sniffed, f"status {status}")

    if content and sniffed in (ContentKind.JSON, ContentKind.PYTHON):
        if len(content) > max_sniff_chars or _content_fails(content, sniffed):
            return Classification(ErrorKind.SYNTAX, sniffed, f"content does not parse as {sniffed}")
        if sniffed is ContentKind.JSON and incident.get("output_schema"):
            return Classification(ErrorKind.SCHEMA, sniffed, "content parses; checked against the schema")
        if sniffed is ContentKind.PYTHON:
            return Classification(ErrorKind.EXECUTION, sniffed, "content is Python that parses")

    message = incident.get("message") or ""
    for pattern, kind in _MESSAGE_RULES:
        if pattern.search(message[:10_000]):
            return Classification(kind, sniffed, f"message matches {pattern.pattern[:40]!r}")
    return Classification(ErrorKind.UNKNOWN, sniffed, "no rule matched")


HUMAN_ROUNDS = 100
"""With escalate_to_human, how many rejected fixes a thread takes before it ends not recovered."""


def _budgets(ctx: RecoveryContext) -> dict[str, int]:
    s = ctx.settings
    return {
        Layer.LLM_FIX: s.syntax_error_management.max_retries,
        Layer.BACKOFF: s.api_error_management.max_retries,
        Layer.REFINE: s.error_recovery.max_refinement_iterations,
        Layer.HUMAN: HUMAN_ROUNDS if s.error_recovery.escalate_to_human else 0,
    }


async def classify(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Decide the error kind and fix the retry budgets for this incident; never repairs or calls out."""
    ctx = context_of(runtime)
    kind, content_kind, rule = classify_incident(state["incident"])
    return {
        "kind": str(kind),
        "content_kind": str(content_kind) if content_kind else None,
        "classified_by": rule,
        "budgets": {str(k): v for k, v in _budgets(ctx).items()},
    }
