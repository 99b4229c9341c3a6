"""Conservative coercion of a parsed value towards its schema, each change recorded as what it is."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import regex

from kgot_errors.errors import SchemaTimeout
from kgot_errors.repair._outcome import Change, change
from kgot_errors.repair._schema import fits as _fits
from kgot_errors.repair._schema import RefBudget, nodes, pattern_budget, ref_budget, safe_search

__all__ = ["coerce_to_schema"]

_INT_TEXT = regex.compile(r"[-+]?\d+(?:\.0*)?")
_NUMBER_TEXT = regex.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRUE_TEXT = frozenset({"true", "yes", "y", "on"})
_FALSE_TEXT = frozenset({"false", "no", "n", "off"})
_SCALAR_TYPES = ("integer", "number", "boolean", "string", "null")


STEP_BUDGET = 20_000
STEPS_PER_NODE = 20
"""One coercion visits subschemas and validates at most STEP_BUDGET + STEPS_PER_NODE * (the value's nodes) times,
then stops with a SchemaTimeout: trials of union branches and wrappers nest, and a hostile schema could make
their number grow exponentially with depth."""


class _Coercer:
    """One coercion pass over a value; records the steps it takes. Trials share their parent's step budget; inside
    a wrapper object being unwrapped, no further wrapper is (a guess inside a guess, at every level, grows
    exponentially with depth)."""

    def __init__(self, root: dict[str, Any], budget: list[int], refs: RefBudget, unwrapping: bool = True,
                 misfits: _Misfits | None = None) -> None:
        self.root = root
        self.steps: list[Change] = []
        self.budget = budget  # [steps left], shared with every trial
        self.refs = refs  # the ref_budget() every trial's validation spends
        self.unwrapping = unwrapping
        self.misfits = misfits  # where the schema's errors are (None: anywhere, look at everything)

    def trial(self, *, unwrapping: bool | None = None) -> _Coercer:
        return _Coercer(self.root, self.budget, self.refs, self.unwrapping if unwrapping is None else unwrapping,
                        self.misfits)

    def decoded(self, parsed: Any) -> None:
        """A JSON-encoded string in the value was decoded to `parsed`: its nodes join both budgets' work."""
        self.budget[0] += STEPS_PER_NODE * nodes(parsed)
        self.refs.grow(parsed)

    def fits(self, value: Any, schema: Any) -> bool:
        self.spend()
        return _fits(value, schema, self.root)

    def spend(self) -> None:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise SchemaTimeout("coercing this value towards the schema took over the step budget: its unions and "
                                "wrapper objects branch too much to try safely")

    def note(self, path: str, what: str, kind: str = "coerced") -> None:
        self.steps.append(change(kind, path, what))

    def resolve(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
            ref = schema["$ref"]
            if not ref.startswith("#"):
                return schema
            target: Any = self.root
            for part in ref.lstrip("#/").split("/") if ref != "#" else []:
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    return schema
                target = target[part]
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra and isinstance(target, dict) else target
            seen += 1
        return schema

    def coerce(self, value: Any, schema: Any, path: str) -> Any:
        misfits = self.misfits
        if misfits is not None:
            if path not in misfits.around:
                return value  # no error here, above or below: it fits where it is
            if path in misfits.at:  # an error here: any part of it may need work
                self.misfits = None
                try:
                    return self.coerce(value, schema, path)
                finally:
                    self.misfits = misfits
        self.spend()
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or not schema:
            return value
        for sub in schema.get("allOf", ()):
            value = self.coerce(value, sub, path)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                value = self.union(value, schema[key], path)
        types = schema.get("type")
        if isinstance(types, str):
            value = self.by_type(value, types, schema, path)
        elif isinstance(types, list) and types:
            value = self.type_union(value, types, schema, path)
        elif "properties" in schema or "additionalProperties" in schema or "patternProperties" in schema:
            value = self.by_type(value, "object", schema, path)
        elif "items" in schema or "prefixItems" in schema:
            value = self.by_type(value, "array", schema, path)
        return self.enum(value, schema, path)

    def union(self, value: Any, branches: list[Any], path: str) -> Any:
        if any(self.fits(value, self.resolve(b)) for b in branches):
            return value
        for branch in branches:
            trial = self.trial()
            candidate = trial.coerce(value, branch, path)
            if self.fits(candidate, trial.resolve(branch)):
                self.steps.extend(trial.steps)
                return candidate
        return value

    def type_union(self, value: Any, types: list[str], schema: dict[str, Any], path: str) -> Any:
        current = _json_type(value)
        if current in types or (current == "integer" and "number" in types):
            return self.by_type(value, current if current in types else "number", schema, path)
        ordered = sorted(types, key=lambda t: (t in ("string", "null"), types.index(t)))
        for t in ordered:
            trial = self.trial()
            candidate = trial.by_type(value, t, schema, path)
            if _json_type(candidate) == t or (t == "number" and _json_type(candidate) == "integer"):
                self.steps.extend(trial.steps)
                return candidate
        return value

    def by_type(self, value: Any, t: str, schema: dict[str, Any], path: str) -> Any:
        if t == "object":
            return self.to_object(value, schema, path)
        if t == "array":
            return self.to_array(value, schema, path)
        if t in _SCALAR_TYPES:
            return self.to_scalar(value, t, path)
        return value

    def to_object(self, value: Any, schema: dict[str, Any], path: str) -> Any:
        if isinstance(value, str):
            parsed = _parse_container(value, dict)
            if parsed is None:
                return value
            self.note(path, "decoded a JSON-encoded object string")
            self.decoded(parsed)
            value = parsed
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            self.note(path, "unwrapped a one-item array around the object", "removed")
            value = value[0]
        if not isinstance(value, dict):
            return value
        props = schema.get("properties") or {}
        patterns = schema.get("patternProperties") or {}
        extra = schema.get("additionalProperties", True)
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub: Any = props.get(key)
            if sub is None:
                sub = next((s for p, s in patterns.items() if safe_search(p, key)), None)
            if sub is None and extra is False:
                self.note(f"{path}.{key}", "dropped a property the schema does not allow", "removed")
                continue
            if sub is None and isinstance(extra, dict):
                sub = extra
            out[key] = self.coerce(item, sub, f"{path}.{key}") if sub is not None else item
        return self.unwrap(out, schema, path)

    def unwrap(self, value: dict[str, Any], schema: dict[str, Any], path: str) -> Any:
        """Unwrap `{"data": {...}}` when the schema wants the inner object and the wrapper misfits."""
        if not self.unwrapping or len(value) != 1:
            return value
        (key, inner), = value.items()
        if not isinstance(inner, dict) or self.fits(value, schema):  # the cheap test first: fits() is a validation
            return value
        trial = self.trial(unwrapping=False)
        candidate = trial.to_object(inner, schema, path)
        if not self.fits(candidate, schema):
            return value
        self.note(path, f"unwrapped the single-key wrapper object {key!r}", "removed")
        self.steps.extend(trial.steps)
        return candidate

    def to_array(self, value: Any, schema: dict[str, Any], path: str) -> Any:
        if isinstance(value, str):
            parsed = _parse_container(value, list)
            if parsed is not None:
                self.note(path, "decoded a JSON-encoded array string")
                self.decoded(parsed)
                value = parsed
        if not isinstance(value, list):
            self.note(path, "wrapped a single value in an array", "added")
            value = [value]
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems")
        out = []
        for i, item in enumerate(value):
            sub = prefix[i] if isinstance(prefix, list) and i < len(prefix) else items
            out.append(self.coerce(item, sub, f"{path}[{i}]") if isinstance(sub, dict) else item)
        return out

    def to_scalar(self, value: Any, t: str, path: str) -> Any:
        current = _json_type(value)
        if current == t or (t == "number" and current == "integer"):
            return value
        converted = _convert_scalar(value, t)
        if converted is _NO:
            return value
        self.note(path, f"coerced {current} {_short(value)} to {t}")
        return converted

    def enum(self, value: Any, schema: dict[str, Any], path: str) -> Any:
        options = schema.get("enum")
        if "const" in schema:
            options = [schema["const"]]
        if not isinstance(options, list) or not isinstance(value, str) or value in options:
            return value
        wanted = value.strip().casefold()
        matches = [o for o in options if isinstance(o, str) and o.strip().casefold() == wanted]
        if len(matches) != 1:
            return value
        self.note(path, f"matched {_short(value)} to enum value {_short(matches[0])}")
        return matches[0]


class _Misfits:
    """Where a value's schema errors are, as the coercer writes paths (`$.steps[7]`): `at` the errors' own
    places, `around` those and every place above them. A part not around any error fits, and so does
    everything under it: the coercion leaves it alone (a 1,000-item array with one bad item costs one item)."""

    def __init__(self, paths: Iterable[tuple[str | int, ...]]) -> None:
        self.at: set[str] = set()
        self.around: set[str] = set()
        for parts in paths:
            path = "$"
            self.around.add(path)
            for part in parts:
                path += f"[{part}]" if isinstance(part, int) else f".{part}"
                self.around.add(path)
            self.at.add(path)


class _Missing:
    pass


_NO = _Missing()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _convert_scalar(value: Any, t: str) -> Any:
    """The value converted to JSON type `t` without guessing, or _NO."""
    text = value.strip() if isinstance(value, str) else None
    if t == "integer":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if text is not None and _INT_TEXT.fullmatch(text):
            return int(float(text)) if "." in text else int(text)
    elif t == "number":
        if text is not None and _NUMBER_TEXT.fullmatch(text):
            number = float(text)
            return int(text) if _INT_TEXT.fullmatch(text) and "." not in text else number
    elif t == "boolean":
        if text is not None and text.lower() in _TRUE_TEXT | _FALSE_TEXT:
            return text.lower() in _TRUE_TEXT
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
    elif t == "string":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return json.dumps(value)
    elif t == "null":
        if text is not None and text.lower() in ("null", "none"):
            return None
    return _NO


def _parse_container(text: str, kind: type) -> Any:
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        parsed = json.loads(stripped, parse_constant=lambda c: None)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, kind) else None


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def coerce_to_schema(value: Any, schema: dict[str, Any] | bool | None, *,
                     misfits: Iterable[tuple[str | int, ...]] | None = None) -> tuple[Any, list[Change]]:
    """Conservatively coerce `value` towards `schema`; returns (value, the changes made).

    Only parts that do not fit are touched. Lossless coercions (`coerced`): numeric strings become
    numbers, "true"/"false" (and 0/1) booleans, JSON-encoded container strings are decoded, enum values
    are matched ignoring case and surrounding spaces. Changes to the data's shape are listed as what
    they are: a lone value wrapped in an array (`added`), a one-key wrapper object or a one-item array
    around the wanted object unwrapped, properties `additionalProperties: false` forbids dropped
    (`removed`). A value that already fits comes back unchanged with no changes. A coercion that would
    take more than its step budget (STEP_BUDGET) raises SchemaTimeout. `misfits`: the paths of every
    schema error of the value (schema_report's), when known; the value is then known not to fit, and
    only the parts at or above an error are looked at.
    """
    if schema is None or isinstance(schema, bool) or (misfits is None and _fits(value, schema, schema)):
        return value, []
    with pattern_budget(), ref_budget(value, schema) as refs:
        coercer = _Coercer(schema, [STEP_BUDGET + STEPS_PER_NODE * nodes(value)], refs,
                           misfits=_Misfits(misfits) if misfits is not None else None)
        return coercer.coerce(value, schema, "$"), coercer.steps
