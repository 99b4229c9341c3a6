"""The typed value of a recovery: a RecoveryResult whose `parsed` holds the pydantic model instance the schema names."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from kgot_errors.state import RecoveryResult

__all__ = ["TypedResult", "parse_value", "typed"]


class TypedResult(RecoveryResult):
    """A RecoveryResult with `parsed`: the value as an instance of the pydantic model given as `schema`.

    With a JSON Schema dict (or no schema) `parsed` is the value itself; with nothing recovered
    it is None. `parsed` is not part of `to_data()` (the stored and printed form stays JSON).
    """

    parsed: Any = Field(default=None, exclude=True)


def parse_value(value: Any, schema: Any) -> Any:
    """`value` validated into `schema` when it is a pydantic model class, else `value` unchanged."""
    if isinstance(schema, type) and issubclass(schema, BaseModel) and value is not None:
        try:
            return schema.model_validate(value)
        except ValidationError:
            return None  # a degraded value may not fit the model: there is no instance to offer
    return value


def typed(result: RecoveryResult, schema: Any) -> TypedResult:
    """`result` with `parsed` filled in from `schema` (the model instance the guard returns, too)."""
    if isinstance(result, TypedResult):
        return result
    has_value = result.recovered or result.outcome == "degraded"
    fields = {name: getattr(result, name) for name in type(result).model_fields}
    return TypedResult(**fields, parsed=parse_value(result.value, schema) if has_value else None)
