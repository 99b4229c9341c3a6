"""Output schemas for repairs: loading (dict, boolean or pydantic model), dialects, bounded validation, coercion."""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import urllib.parse

import jsonschema
import regex
import referencing.exceptions
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema_specifications import REGISTRY as _META_REGISTRY
from referencing import Registry

from kgot_errors.errors import InvalidSchema, SchemaTimeout

__all__ = ["Change", "change", "coerce_to_schema", "describe", "load_schema", "safe_search", "schema_errors",
           "validator_class"]

MAX_ERRORS = 10
MAX_STEPS = 20
PATTERN_TIMEOUT_S = 0.1
"""Longest a schema `pattern` may take on one string before the schema counts as unsafe to evaluate."""
_INT_TEXT = regex.compile(r"[-+]?\d+(?:\.0*)?")
_NUMBER_TEXT = regex.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRUE_TEXT = frozenset({"true", "yes", "y", "on"})
_FALSE_TEXT = frozenset({"false", "no", "n", "off"})
_SCALAR_TYPES = ("integer", "number", "boolean", "string", "null")
_DRAFT7_IDIOMS = ("dependencies", "definitions", "additionalItems")

Change = dict[str, str]
"""One change a repair made to the data, as plain data: `{"kind", "path", "detail"}`. Kinds: `coerced`
(lossless: `"1"` -> 1), `added` (a value or structure not in the text), `removed` (data not kept),
`truncated` (a cut-off document completed)."""


def change(kind: str, path: str, detail: str) -> Change:
    return {"kind": kind, "path": path, "detail": detail}


# --------------------------------------------------------------------------------------
# Bounded evaluation: patterns under a deadline, references never fetched
# --------------------------------------------------------------------------------------


_UNSAFE: set[str] = set()
"""Patterns that once ran past their deadline: refused at once afterwards (a batch pays for one, not each)."""


def safe_search(pattern: str, text: str) -> bool:
    """`pattern` searched in `text` under a deadline (the `regex` engine); SchemaTimeout past it, and at once
    for a pattern that ran past it before."""
    try:
        if pattern in _UNSAFE:
            raise TimeoutError
        return regex.search(pattern, text, timeout=PATTERN_TIMEOUT_S) is not None
    except TimeoutError:
        if len(_UNSAFE) > 1024:
            _UNSAFE.clear()
        _UNSAFE.add(pattern)
        raise SchemaTimeout(
            f"the schema's pattern {pattern[:80]!r} took over {PATTERN_TIMEOUT_S} s on a {len(text):,}-character "
            "string: it cannot be evaluated safely (rewrite it without nested quantifiers)", pattern=pattern
        ) from None
    except regex.error as exc:
        raise InvalidSchema(f"the schema's pattern {pattern[:80]!r} is not a regular expression: {exc}") from None


def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not safe_search(patrn, instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if safe_search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _extra_keys(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    props = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    return [k for k in instance if k not in props and not any(safe_search(p, k) for p in patterns)]


def _additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    keys = _extra_keys(instance, schema)
    if validator.is_type(extra, "object"):
        for key in keys:
            yield from validator.descend(instance[key], extra, path=key)
    elif not extra and keys:
        listed = ", ".join(repr(k) for k in sorted(keys)[:5])
        yield ValidationError(f"Additional properties are not allowed ({listed} {'was' if len(keys) == 1 else 'were'} "
                              "unexpected)")


def _refuse_retrieval(uri: str) -> Any:
    raise referencing.exceptions.NoSuchResource(ref=uri)


_REGISTRY: Registry[Any] = _META_REGISTRY.combine(Registry(retrieve=_refuse_retrieval))  # type: ignore[call-arg]
"""References resolve inside the schema or to the dialects' own meta-schemas; anything else is never fetched."""
_META_URIS = frozenset(uri.rstrip("#") for uri in _META_REGISTRY)
_REGEX_FORMAT = FormatChecker(())
_REGEX_FORMAT.checks("regex", raises=regex.error)(lambda text: not isinstance(text, str) or bool(regex.compile(text)))


def _check_schema(cls: Any, schema: Any) -> None:
    """The schema against its dialect's meta-schema, patterns compiled by the engine that will run them."""
    meta = cls(cls.META_SCHEMA, format_checker=_REGEX_FORMAT, registry=_REGISTRY)
    error = jsonschema.exceptions.best_match(meta.iter_errors(schema))
    if error is not None:
        raise jsonschema.SchemaError.create_from(error)
_SAFE_KEYWORDS = {"pattern": _pattern, "patternProperties": _pattern_properties,
                  "additionalProperties": _additional_properties}
_SAFE: dict[type, type] = {}


def validator_class(schema: Any) -> type:
    """The dialect's validator class: `$schema` when given; else draft 7 when the schema uses its idioms
    (array-form `items`, `dependencies`, `definitions`, `additionalItems`), else draft 2020-12."""
    base: type
    if isinstance(schema, dict) and isinstance(schema.get("$schema"), str):
        known = jsonschema.validators._META_SCHEMAS  # noqa: SLF001 - the dialect table, keyed by $schema URI
        base = known.get(schema["$schema"].rstrip("#")) or known.get(schema["$schema"])
        if base is None:
            raise InvalidSchema(f"unknown JSON Schema dialect {schema['$schema'][:100]!r}")
    else:
        base = Draft7Validator if _uses_draft7(schema) else Draft202012Validator
    if base not in _SAFE:
        _SAFE[base] = validators.extend(base, _SAFE_KEYWORDS)
    return _SAFE[base]


def _uses_draft7(schema: Any) -> bool:
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if isinstance(node.get("items"), list) or any(k in node for k in _DRAFT7_IDIOMS):
                return True
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return False


_ROOT = "http://kgot.invalid/schema.json"  # stands for a schema without `$id`: only ever joined, never fetched
_SKIP = frozenset({"enum", "const", "examples", "default"})


def _join(base: str, ref: str) -> str:
    """`ref` resolved against `base` (URNs too, which urljoin leaves alone)."""
    if ref.startswith("#"):
        return base.partition("#")[0] + ref
    if regex.match(r"[A-Za-z][A-Za-z0-9+.-]*:", ref):
        return ref
    return urllib.parse.urljoin(base, ref)


def _check_refs(schema: dict[str, Any]) -> None:
    """Every `$ref` resolves inside the schema (against its resources' `$id`, anchors and JSON pointers) or to a
    dialect's meta-schema; a reference elsewhere is refused, never fetched."""
    resources: dict[str, Any] = {}
    anchors: set[str] = set()
    refs: list[tuple[str, str]] = []
    todo: list[tuple[Any, str]] = [(schema, _ROOT)]
    while todo:
        node, base = todo.pop()
        if isinstance(node, list):
            todo.extend((v, base) for v in node)
            continue
        if not isinstance(node, dict):
            continue
        own = node.get("$id")
        if isinstance(own, str):
            joined = _join(base, own)
            uri, _, frag = joined.partition("#")
            if frag:  # draft 7: `"$id": "#foo"` names an anchor
                anchors.add(f"{uri}#{frag}")
            else:
                base = uri
        resources.setdefault(base, node) if base != _ROOT or node is schema else None
        for key in ("$anchor", "$dynamicAnchor"):
            if isinstance(node.get(key), str):
                anchors.add(f"{base}#{node[key]}")
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                refs.append((base, value))
            elif key not in _SKIP:
                todo.append((value, base))
    for base, ref in refs:
        uri, _, fragment = _join(base, ref).partition("#")
        fragment = urllib.parse.unquote(fragment)
        if uri.rstrip("/") in _META_URIS or uri in _META_URIS:
            continue
        if uri not in resources:
            raise InvalidSchema(f"$ref {ref[:200]!r} points outside the schema; remote references are never "
                                "fetched (inline the referenced schema under $defs)")
        if fragment and not fragment.startswith("/"):
            if f"{uri}#{fragment}" not in anchors:
                raise InvalidSchema(f"$ref {ref[:200]!r} names an anchor the schema does not define")
            continue
        target: Any = resources[uri]
        for part in fragment.lstrip("/").split("/") if fragment else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            elif isinstance(target, dict) and part in target:
                target = target[part]
            else:
                raise InvalidSchema(f"$ref {ref[:200]!r} points to nothing in the schema")


# --------------------------------------------------------------------------------------
# Loading and validating
# --------------------------------------------------------------------------------------


def load_schema(schema: Any) -> dict[str, Any] | bool | None:
    """A checked JSON Schema (dict or boolean) for None, a JSON Schema or a pydantic model class.

    Raises InvalidSchema for anything else, for a dict that is not a valid JSON Schema of its
    dialect, for a reference outside the schema (never fetched) or to nothing, and for a schema
    whose references recurse without end.
    """
    if schema is None or isinstance(schema, bool):
        return schema
    if isinstance(schema, dict):
        try:
            key = json.dumps(schema, sort_keys=True, ensure_ascii=False, allow_nan=False)
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidSchema("the schema holds lone surrogate code points, which JSON text cannot carry") from None
        except (TypeError, ValueError) as exc:
            raise InvalidSchema(f"not a JSON-serialisable schema: {exc}") from exc
        problem = _schema_problem(key)
        if problem:
            raise InvalidSchema(problem)
        return schema
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        return schema.model_json_schema()
    raise InvalidSchema(
        f"expected a JSON Schema dict or boolean, or a pydantic model class, got {type(schema).__name__}"
    )


_PROBLEMS: OrderedDict[str, str | None] = OrderedDict()


def _schema_problem(key: str) -> str | None:
    """Why the serialised schema is not usable, or None (cached: checks are slow)."""
    if key in _PROBLEMS:
        _PROBLEMS.move_to_end(key)
        return _PROBLEMS[key]
    schema = json.loads(key)
    problem: str | None = None
    try:
        cls = validator_class(schema)
        _check_schema(cls, schema)
        _check_refs(schema)
        validator = cls(schema, registry=_REGISTRY)
        for probe in (None, {}, [], ""):
            any(True for _ in validator.iter_errors(probe))
    except InvalidSchema as exc:
        problem = str(exc)
    except jsonschema.SchemaError as exc:
        problem = f"not a valid JSON Schema: {exc.message}"
    except referencing.exceptions.Unresolvable as exc:
        problem = f"a $ref cannot be resolved inside the schema: {exc}"
    except RecursionError:
        problem = "the schema's references recurse without end"
    _PROBLEMS[key] = problem
    if len(_PROBLEMS) > 64:
        _PROBLEMS.popitem(last=False)
    return problem


_VALIDATORS: OrderedDict[int, tuple[Any, Any]] = OrderedDict()


def _validator(schema: dict[str, Any] | bool) -> Any:
    """The validator of a loaded schema, cached by the schema object (then by its content)."""
    hit = _VALIDATORS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = validator_class(schema)(schema, registry=_REGISTRY)
    _VALIDATORS[id(schema)] = (schema, validator)
    if len(_VALIDATORS) > 64:
        _VALIDATORS.popitem(last=False)
    return validator


def schema_errors(value: Any, schema: dict[str, Any] | bool | None, *, limit: int = MAX_ERRORS) -> list[str]:
    """Validator messages for `value` (`$.path: message`), at most `limit`; [] when it fits.

    A schema that cannot be evaluated on this value (a pattern past its deadline, a reference that
    does not resolve, references recursing without end) raises InvalidSchema (SchemaTimeout)."""
    if schema is None or schema is True:
        return []
    if schema is False:
        return ["$: the schema `false` accepts no value"]
    try:
        errors = sorted(_validator(schema).iter_errors(value), key=lambda e: (len(e.absolute_path), e.json_path))
    except referencing.exceptions.Unresolvable as exc:
        raise InvalidSchema(f"a $ref cannot be resolved inside the schema: {exc}") from None
    except RecursionError:
        raise InvalidSchema("the schema's references recurse without end on this value") from None
    return [f"{e.json_path}: {e.message}" for e in errors[:limit]]


def _fits(value: Any, schema: Any, root: dict[str, Any]) -> bool:
    if schema is True or schema == {}:
        return True
    if schema is False:
        return False
    validator = _validator(root)
    return bool(validator.evolve(schema=schema).is_valid(value)) if schema is not root else validator.is_valid(value)


class _Coercer:
    """One coercion pass over a value; records the steps it takes."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.steps: list[Change] = []

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
        if any(_fits(value, self.resolve(b), self.root) for b in branches):
            return value
        for branch in branches:
            trial = _Coercer(self.root)
            candidate = trial.coerce(value, branch, path)
            if _fits(candidate, trial.resolve(branch), self.root):
                self.steps.extend(trial.steps)
                return candidate
        return value

    def type_union(self, value: Any, types: list[str], schema: dict[str, Any], path: str) -> Any:
        current = _json_type(value)
        if current in types or (current == "integer" and "number" in types):
            return self.by_type(value, current if current in types else "number", schema, path)
        ordered = sorted(types, key=lambda t: (t in ("string", "null"), types.index(t)))
        for t in ordered:
            trial = _Coercer(self.root)
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
        if len(value) != 1 or _fits(value, schema, self.root):
            return value
        (key, inner), = value.items()
        if not isinstance(inner, dict):
            return value
        trial = _Coercer(self.root)
        candidate = trial.to_object(inner, schema, path)
        if not _fits(candidate, schema, self.root):
            return value
        self.note(path, f"unwrapped the single-key wrapper object {key!r}", "removed")
        self.steps.extend(trial.steps)
        return candidate

    def to_array(self, value: Any, schema: dict[str, Any], path: str) -> Any:
        if isinstance(value, str):
            parsed = _parse_container(value, list)
            if parsed is not None:
                self.note(path, "decoded a JSON-encoded array string")
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


def coerce_to_schema(value: Any, schema: dict[str, Any] | bool | None) -> tuple[Any, list[Change]]:
    """Conservatively coerce `value` towards `schema`; returns (value, the changes made).

    Only parts that do not fit are touched. Lossless coercions (`coerced`): numeric strings become
    numbers, "true"/"false" (and 0/1) booleans, JSON-encoded container strings are decoded, enum values
    are matched ignoring case and surrounding spaces. Changes to the data's shape are listed as what
    they are: a lone value wrapped in an array (`added`), a one-key wrapper object or a one-item array
    around the wanted object unwrapped, properties `additionalProperties: false` forbids dropped
    (`removed`). A value that already fits comes back unchanged with no changes.
    """
    if schema is None or isinstance(schema, bool) or _fits(value, schema, schema):
        return value, []
    coercer = _Coercer(schema)
    return coercer.coerce(value, schema, "$"), coercer.steps


def describe(changes: list[Change]) -> list[str]:
    """Changes as steps for the repair log: `$.a: coerced string "1" to integer`."""
    steps = [f"{c['path']}: {c['detail']}" for c in changes[:MAX_STEPS]]
    if len(changes) > MAX_STEPS:
        steps.append(f"... and {len(changes) - MAX_STEPS} more changes")
    return steps
