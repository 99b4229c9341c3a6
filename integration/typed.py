"""The typed value of a recovery: `RecoveryResult.parsed`, the pydantic model instance the schema names."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from kgot_errors.state import RecoveryResult

__all__ = ["parse_value", "typed"]


def parse_value(value: Any, schema: Any) -> Any:
    """`value` validated into `schema` when it is a pydantic model class, else `value` unchanged."""
    if isinstance(schema, type) and issubclass(schema, BaseModel) and value is not None:
        try:
            return schema.model_validate(value)
        except ValidationError:
            return None  # a degraded value may not fit the model: there is no instance to offer
    return value


def typed(result: RecoveryResult, schema: Any) -> RecoveryResult:
    """`result` with `parsed` the instance of `schema` when it is a pydantic model (the guard returns it, too)."""
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)) or result.parsed is None:
        return result
    return result.with_parsed(parse_value(result.value, schema))
