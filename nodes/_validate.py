"""One rule for judging a proposed fix (from a model, a vote or a person): the validators decide, never the proposer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kgot_errors.state import ContentKind

if TYPE_CHECKING:  # the repair engine loads on first use, not with the graph
    from kgot_errors.repair._outcome import Outcome
    from kgot_errors.runtime.settings import SyntaxSettings

__all__ = ["json_text", "validate_candidate"]


def json_text(text: str, schema: dict[str, Any] | bool | None, *, max_chars: int, max_depth: int,
              policy: dict[str, str] | None = None) -> Outcome:
    """unicode_fix's, then parser_fix's validators on proposed text (the cheap strict path first; then
    extraction from fences and prose, repair, schema coercion); ok only for strict JSON that fits the schema
    and whose changes to the data the policy does not refuse."""
    from kgot_errors.repair._layers import parser_layer, unicode_layer

    strict = unicode_layer(text, schema, max_chars=max_chars, max_depth=max_depth)
    return strict if strict.ok else parser_layer(text, schema, max_chars=max_chars, max_depth=max_depth,
                                                 policy=policy)


def validate_candidate(candidate: Any, *, content_kind: str | None, schema: dict[str, Any] | None,
                       limits: SyntaxSettings) -> tuple[Outcome, str]:
    """(outcome, validator name) for a candidate: text goes through the same layer parser_fix uses;
    a JSON value must be strict JSON and fit the schema; code must parse."""
    if content_kind == ContentKind.PYTHON:
        from kgot_errors.nodes._code import code_layer

        if not isinstance(candidate, str):
            return _rejected(f"code must be text, not {type(candidate).__name__}"), "ast.parse"
        return code_layer(candidate), "ast.parse"
    if isinstance(candidate, str) and (content_kind == ContentKind.JSON or schema is not None):
        return json_text(candidate, schema, max_chars=limits.max_content_chars, max_depth=limits.max_depth,
                         policy=limits.changes), "json+schema"
    from kgot_errors.repair._outcome import Outcome
    from kgot_errors.repair._strict import is_strict_json

    if not is_strict_json(candidate):
        return _rejected("not a strict JSON value (NaN, Infinity, lone surrogates or non-JSON types)"), "json"
    try:
        text = json.dumps(candidate, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return _rejected(f"not a JSON value: {exc}"), "json"
    if schema is not None:
        from kgot_errors.errors import InvalidSchema
        from kgot_errors.repair._schema import schema_errors

        try:
            errors = schema_errors(candidate, schema)
        except InvalidSchema as exc:
            return _rejected(str(exc)), "json+schema"
        if errors:
            return _rejected("does not fit the schema: " + errors[0], tuple(errors)), "json+schema"
        return Outcome(ok=True, value=candidate, text=text), "json+schema"
    return Outcome(ok=True, value=candidate, text=text), "json"


def _rejected(reason: str, errors: tuple[str, ...] = ()) -> Outcome:
    from kgot_errors.repair._outcome import Outcome

    return Outcome(ok=False, reason=reason, errors=errors)
