"""The input record: an Incident describes one failure, as plain checkpoint-safe data."""

from __future__ import annotations

import email.utils
import time
import traceback as tb
from enum import StrEnum
from typing import Any

from typing_extensions import TypedDict  # pydantic (LangGraph Server's schemas) needs it on 3.11

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kgot_errors.errors import InvalidIncident, InvalidSchema

__all__ = ["ContentKind", "Incident", "IncidentData", "Severity", "parse_retry_after", "qualified_name"]

_MAX_TRACEBACK_CHARS = 20_000


class ContentKind(StrEnum):
    JSON = "json"
    PYTHON = "python"
    TEXT = "text"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class IncidentData(TypedDict, total=False):
    """An Incident as it sits in graph state (see Incident for the meaning of each field)."""

    error_type: str
    error_mro: list[str]
    message: str
    traceback: str | None
    status_code: int | None
    retry_after: float | None
    content: str | None
    content_kind: str | None
    output_schema: dict[str, Any] | bool | None
    prompt: str | None
    expected_output: str | None
    operation: str | None
    arguments: dict[str, Any] | None
    context: str
    severity: str
    input_notes: list[str]


def qualified_name(cls: type) -> str:
    """`module.QualName` of a class, e.g. `json.decoder.JSONDecodeError`."""
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def parse_retry_after(value: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: a number of seconds or an HTTP-date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    text = str(value).strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _clean_text(value: Any, notes: list[str], field: str) -> Any:
    """Bytes decode as UTF-8 (invalid bytes replaced, and said so); lone surrogates likewise."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - bytes(value).count("\ufffd".encode())
        if bad:
            notes.append(f"{field}: {bad} invalid UTF-8 byte(s) replaced with U+FFFD")
        return text
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            notes.append(f"{field}: lone surrogate code points replaced with U+FFFD")
            return value.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
    return value


class Incident(BaseModel):
    """One failure handed to the recovery graph.

    Every field is optional: `error_type` and `message` describe the exception caught, empty when there
    was none (a mapping of content alone is an incident: its kind then comes from the content and
    schema). `content` is the failing text or code;
    `output_schema` the JSON Schema the repaired value must fit; `operation`/`arguments`
    name a registered callable that backoff may re-run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_type: str = Field(default="", description="qualified exception class name; empty: no exception given")
    message: str = ""
    error_mro: list[str] = Field(default_factory=list, description="class names, most specific first")
    traceback: str | None = None
    status_code: int | None = Field(default=None, ge=100, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    content: str | None = None
    content_kind: ContentKind | None = None
    output_schema: dict[str, Any] | bool | None = None
    prompt: str | None = None
    expected_output: str | None = None
    operation: str | None = None
    arguments: dict[str, Any] | None = None
    context: str = ""
    severity: Severity = Severity.MEDIUM
    input_notes: list[str] = Field(default_factory=list, description="what the edge changed in the input")

    @field_validator("output_schema", mode="before")
    @classmethod
    def _schema_to_dict(cls, value: Any) -> Any:
        from kgot_errors.repair._schema import load_schema

        return load_schema(value)

    @classmethod
    def parse(cls, data: Any) -> Incident:
        """Validate plain data (e.g. from HTTP or a checkpoint); raise InvalidIncident with the field."""
        if isinstance(data, Incident):
            return data
        if not isinstance(data, dict):
            raise InvalidIncident(f"an incident is a mapping, not {type(data).__name__}")
        notes = list(data.get("input_notes") or [])
        cleaned = {k: _clean_text(v, notes, k) for k, v in data.items()}
        cleaned["input_notes"] = notes
        if cleaned.get("retry_after") is not None:
            cleaned["retry_after"] = parse_retry_after(cleaned["retry_after"])
        try:
            return cls.model_validate(cleaned)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or None
            if field == "output_schema":
                raise InvalidSchema(str(first["msg"]).removeprefix("Value error, ")) from None
            raise InvalidIncident(f"invalid incident field {field!r}: {first['msg']}", field=field) from None

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        content: str | bytes | None = None,
        schema: Any = None,
        **fields: Any,
    ) -> Incident:
        """Capture an exception as plain data: type and MRO names, message, traceback, HTTP status, Retry-After."""
        mro = [qualified_name(c) for c in type(exc).__mro__ if issubclass(c, BaseException)]
        data: dict[str, Any] = {
            "error_type": mro[0],
            "error_mro": mro,
            "message": _safe(lambda: str(exc), "") or type(exc).__name__,
            "traceback": _safe(lambda: _traceback_text(exc)[-_MAX_TRACEBACK_CHARS:], None),
            "status_code": _status_code(exc),
            "retry_after": _retry_after(exc),
            "content": content if content is not None else _exception_content(exc),
            "output_schema": schema,
        }
        data.update(fields)
        return cls.parse(data)

    def to_data(self) -> IncidentData:
        return self.model_dump(mode="json")  # type: ignore[return-value]


def error_line(incident: IncidentData) -> str:
    """`type: message` of the exception an incident carries, for prompts and logs ("no exception was given")."""
    error_type, message = incident.get("error_type") or "", incident.get("message") or ""
    if error_type and message:
        return f"{error_type}: {message}"
    return error_type or message or "no exception was given"


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _traceback_text(exc: BaseException) -> str:
    """The exception's traceback as Python prints it, causes and contexts included, without the `^^^^`
    column markers: finding them walks each frame's code positions and re-parses its line (two thirds of
    the cost of recording an incident), and a reader of the record, person or model, has the line itself."""
    if isinstance(exc, BaseExceptionGroup):  # rare: Python's own formatting, for the nested groups
        return "".join(tb.format_exception(exc))
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        part = "".join(tb.format_exception_only(type(current), current))
        if current.__traceback__ is not None:
            frames = tb.StackSummary.extract(tb.walk_tb(current.__traceback__))
            part = "Traceback (most recent call last):\n" + "".join(frames.format()) + part
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current, link = None, ""
        parts.append(link + part if current is not None and id(current) not in seen else part)
    return "".join(reversed(parts))


def _safe(read: Any, default: Any) -> Any:
    """What `read()` gives, or `default` when the caller's exception object raises while being read (a broken
    `__str__`, a property that raises): the incident is still recorded."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - any error of the caller's object: the field is left out
        return default


def _response(exc: BaseException) -> Any:
    try:
        return getattr(exc, "response", None)
    except Exception:  # noqa: BLE001 - httpx raises RuntimeError when no response is attached
        return None


def _status_code(exc: BaseException) -> int | None:
    response = _response(exc)
    for candidate in (_safe(lambda: getattr(exc, "status_code", None), None),
                      _safe(lambda: getattr(response, "status_code", None), None),
                      _safe(lambda: getattr(exc, "status", None), None)):
        if isinstance(candidate, int) and not isinstance(candidate, bool) and 100 <= candidate <= 599:
            return candidate
    return None


def _retry_after(exc: BaseException) -> float | None:
    for holder in (_response(exc), exc):
        headers = _safe(lambda h=holder: getattr(h, "headers", None), None)
        if headers is None:
            continue
        raw = _safe(lambda h=headers: h.get("retry-after") or h.get("Retry-After"), None)
        if raw is not None:
            return parse_retry_after(raw)
    return None


def _exception_content(exc: BaseException) -> str | None:
    """The failing text some exceptions carry: JSONDecodeError.doc, OutputParserException.llm_output."""
    for attr in ("doc", "llm_output"):
        value = _safe(lambda a=attr: getattr(exc, a, None), None)
        if isinstance(value, str):
            return value
    return None
