"""The ways agents hand a failure over (a JSONDecodeError, their own ValueError, a bare Exception, a mapping...),
for checking that a verdict does not depend on the handover: each builds an Incident from the failing text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kgot_errors.state import Incident, IncidentData

__all__ = ["HANDOVERS", "incident_for"]


def _raised(exc: BaseException) -> BaseException:
    try:  # raised by the agent's own code, so it carries that code's traceback, as a caught exception does
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def _decode_error(text: str) -> BaseException:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return exc
    return _raised(json.JSONDecodeError("the answer did not fit", text, 0))


def _output_parser(text: str) -> BaseException:
    from langchain_core.exceptions import OutputParserException

    return _raised(OutputParserException("Invalid json output", llm_output=text))


def _validation_error(text: str) -> BaseException:
    import pydantic

    class Answer(pydantic.BaseModel):
        answer: int

    try:
        Answer.model_validate_json(text)
    except pydantic.ValidationError as exc:
        return exc
    return _raised(ValueError("the answer did not fit"))


HANDOVERS: dict[str, Callable[[str], BaseException | None]] = {
    "JSONDecodeError": _decode_error,
    "ValueError": lambda text: _raised(ValueError("could not parse the model's answer")),
    "RuntimeError": lambda text: _raised(RuntimeError("tool returned bad output")),
    "TypeError": lambda text: _raised(TypeError("expected a dict")),
    "Exception": lambda text: _raised(Exception("something went wrong")),
    "OutputParserException": _output_parser,
    "ValidationError": _validation_error,
    "mapping": lambda text: None,
    "content only": lambda text: None,
}
"""Handover name -> the exception an agent would hold for this text (None: a mapping, no exception: "mapping" names
an error of the agent's own, "content only" holds nothing but the content and schema)."""


def incident_for(handover: str, text: str, schema: Any = None) -> IncidentData:
    """The incident `recover()` would build from this handover of `text` (and `schema`)."""
    exc = HANDOVERS[handover](text)
    if exc is None:
        named = {"error_type": "AgentError", "message": "the answer was not usable"} if handover == "mapping" else {}
        return Incident.parse({**named, "content": text, "output_schema": schema}).to_data()
    return Incident.from_exception(exc, content=text, schema=schema).to_data()
