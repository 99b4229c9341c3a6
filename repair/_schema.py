"""Output schemas for repairs: loading (dict, boolean or pydantic model), dialects, bounded validation."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

import jsonschema
import referencing.exceptions
import regex
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema_specifications import REGISTRY as _META_REGISTRY
from referencing import Registry

from kgot_errors.errors import InvalidSchema, SchemaTimeout
from kgot_errors.repair._strict import nesting_depth

__all__ = ["fits", "load_schema", "pattern_budget", "safe_search", "schema_errors", "schema_report", "validator_class"]

MAX_ERRORS = 10
T = TypeVar("T")
PATTERN_TIMEOUT_S = 0.1
"""Longest a schema `pattern` may take on one string before the schema counts as unsafe to evaluate."""
PATTERN_BUDGET_S = 1.0
"""Longest all pattern searches together may take within one pattern_budget() scope (a validation, a layer's
repair): many strings each just under PATTERN_TIMEOUT_S must not add up to an unbounded run. Only the searches'
own time counts: a slow parse before them, or validating a long array, spends none of it."""
REF_BUDGET = 1_000
REF_BUDGET_PER_NODE = 10
"""A validation follows at most REF_BUDGET + REF_BUDGET_PER_NODE * (the value's nodes) * (the schema's ref_width:
how many `$ref`s one instance may try side by side) `$ref`s: a union of 40 tools behind `$ref`s tries all 40 on
every item. References are the only way a schema's work can grow faster than schema size times value size (two
`allOf` branches that each refer one level down double the work per level: 2**40 for 40 levels of a 3 KB
schema, against an allowance of 2 * 10 per node)."""
_DRAFT7_IDIOMS = ("dependencies", "definitions", "additionalItems")


# --------------------------------------------------------------------------------------
# Bounded evaluation: patterns under a deadline, references never fetched
# --------------------------------------------------------------------------------------


_UNSAFE: set[str] = set()
"""Patterns that once ran past their deadline: refused at once afterwards (a batch pays for one, not each)."""
_PATTERN_TIME: ContextVar[list[float] | None] = ContextVar("kgot_errors_pattern_time", default=None)
"""[seconds of pattern search left] in the current pattern_budget() scope."""
_REFS: ContextVar[RefBudget | None] = ContextVar("kgot_errors_ref_budget", default=None)
REF_BACKSTOP_S = 10.0
"""Longest a validation that follows `$ref`s may run, whatever the count says: one `$ref` can carry work in
proportion to the value (an `if`/`then` that doubles per level), so the count alone bounds it only by n**2."""


@contextlib.contextmanager
def pattern_budget() -> Iterator[None]:
    """Pattern searches inside share PATTERN_BUDGET_S of search time (an inner scope adds none)."""
    if _PATTERN_TIME.get() is not None:
        yield
        return
    token = _PATTERN_TIME.set([PATTERN_BUDGET_S])
    try:
        yield
    finally:
        _PATTERN_TIME.reset(token)


def safe_search(pattern: str, text: str) -> bool:
    """`pattern` searched in `text` under a deadline (the `regex` engine): PATTERN_TIMEOUT_S, or what is left of
    the enclosing pattern_budget() if less. SchemaTimeout past it, and at once for a pattern that ran past its own
    deadline before (one that only ran out of a spent budget stays usable)."""
    budget = _PATTERN_TIME.get()
    left = PATTERN_TIMEOUT_S if budget is None else min(PATTERN_TIMEOUT_S, budget[0])
    if pattern in _UNSAFE:
        why = f"the schema's pattern {pattern[:80]!r} ran past its deadline before"
    else:
        started = time.monotonic()
        try:
            if left > 0:
                return regex.search(pattern, text, timeout=left) is not None
        except TimeoutError:
            pass
        except regex.error as exc:
            raise InvalidSchema(f"the schema's pattern {pattern[:80]!r} is not a regular expression: {exc}") from None
        finally:
            if budget is not None:
                budget[0] -= time.monotonic() - started
        if left >= PATTERN_TIMEOUT_S:
            if len(_UNSAFE) > 1024:
                _UNSAFE.clear()
            _UNSAFE.add(pattern)
        why = (f"the schema's pattern {pattern[:80]!r} took over {PATTERN_TIMEOUT_S} s on a {len(text):,}-character "
               "string" if left >= PATTERN_TIMEOUT_S else
               f"the schema's patterns took over {PATTERN_BUDGET_S} s together on this value (the last: "
               f"{pattern[:80]!r})")
    raise SchemaTimeout(f"{why}: it cannot be evaluated safely (rewrite it without nested quantifiers)",
                        pattern=pattern)


class RefBudget:
    """The $refs one validation (or one coercion's trials) may still follow, sized at the first: most follow none."""

    __slots__ = ("deadline", "left", "schema", "values")

    def __init__(self, value: Any, schema: Any) -> None:
        self.left: int | None = None
        self.values, self.schema = [value], schema
        self.deadline = time.monotonic() + REF_BACKSTOP_S

    def grow(self, value: Any) -> None:
        """`value` joins the work: a JSON-encoded string inside the value, decoded by a coercion."""
        if self.left is None:
            self.values.append(value)
        else:
            self.left += REF_BUDGET_PER_NODE * nodes(value) * ref_width(self.schema)

    def spend(self) -> None:
        if self.left is None:
            self.left = REF_BUDGET + REF_BUDGET_PER_NODE * sum(map(nodes, self.values)) * ref_width(self.schema)
            self.values = []
        self.left -= 1
        if self.left < 0:
            raise SchemaTimeout("the schema's references branch too much to evaluate safely: validating this value "
                                f"followed over {REF_BUDGET:,} + {REF_BUDGET_PER_NODE} $refs per node of the value and "
                                "branch of the schema's widest union (branches that each refer further multiply the "
                                "work per level)")
        if time.monotonic() > self.deadline:
            raise SchemaTimeout("the schema's references branch too much to evaluate safely: validating this value "
                                f"ran past {REF_BACKSTOP_S:g} s")


@contextlib.contextmanager
def ref_budget(value: Any, schema: Any) -> Iterator[RefBudget]:
    """One validation of `value` against `schema`: the $refs it follows are counted against REF_BUDGET (see
    there). Validations inside an open scope (a coercion's trials) share its budget."""
    budget = _REFS.get()
    if budget is not None:
        yield budget
        return
    budget = RefBudget(value, schema)
    token = _REFS.set(budget)
    try:
        yield budget
    finally:
        _REFS.reset(token)


_WIDTHS: OrderedDict[int, tuple[Any, int]] = OrderedDict()
"""id(schema) -> (schema, its ref_width)."""
_BRANCHES = ("anyOf", "oneOf", "allOf", "prefixItems", "items")


def ref_width(schema: Any) -> int:
    """The most distinct `$ref`s one instance may try side by side in `schema` (at least 1): over every
    `anyOf`/`oneOf`/`allOf`/`prefixItems` list and every `properties`-like map, how many different references
    its subschemas hold (anywhere inside them). A union of 40 tools is 40 wide, however each branch wraps its
    `$ref`; a schema that doubles its work per level by two `allOf` branches referring to the same place is 1
    wide, and so is a list repeating one `$ref` 2,000 times. Cached per schema object."""
    hit = _WIDTHS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    widest, todo = 1, [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, list):
            todo.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in _DATA:
                continue
            if key in _BRANCHES and isinstance(value, list):
                widest = max(widest, len(_refs_in(value)))
            elif key in _MAPS and isinstance(value, dict):
                widest = max(widest, len(_refs_in(list(value.values()))))
            todo.append(value)
    _remember(_WIDTHS, id(schema), (schema, widest))
    return widest


_MAPS = ("properties", "patternProperties", "dependentSchemas")


def _refs_in(subschemas: list[Any]) -> set[str]:
    """The distinct `$ref` and `$dynamicRef` targets anywhere inside `subschemas`."""
    found: set[str] = set()
    todo = list(subschemas)
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                    found.add(value)
                elif key not in _DATA:
                    todo.append(value)
        elif isinstance(node, list):
            todo.extend(node)
    return found


def nodes(value: Any) -> int:
    """How many values `value` is made of: itself and everything inside it."""
    count, todo = 0, [value]
    while todo:
        node = todo.pop()
        count += 1
        if isinstance(node, dict):
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return count


_NAME_MAPS = frozenset({"properties", "$defs", "definitions", "dependentSchemas", "dependencies"})
_DATA = frozenset({"enum", "const", "default", "examples"})


def without_patterns(schema: Any) -> Any:
    """`schema` with every `pattern` and `patternProperties` left out: guidance for code that evaluates
    schemas with the unbounded `re` engine (json_repair's schema mode). The result is proven against the
    whole schema afterwards, with the bounded validator."""
    if isinstance(schema, list):
        return [without_patterns(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if (key == "pattern" and isinstance(value, str)) or (key == "patternProperties" and isinstance(value, dict)):
            continue
        if key in _DATA:
            out[key] = value
        elif key in _NAME_MAPS and isinstance(value, dict):
            out[key] = {name: without_patterns(sub) for name, sub in value.items()}
        else:
            out[key] = without_patterns(value)
    return out


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


def _counted(keyword: Any) -> Any:
    """A `$ref` keyword that spends one of the validation's ref_budget() (unbounded outside one)."""
    def follow(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        budget = _REFS.get()
        if budget is not None:
            budget.spend()
        return keyword(validator, value, instance, schema)

    return follow


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
        refs = {k: _counted(base.VALIDATORS[k]) for k in ("$ref", "$dynamicRef") if k in base.VALIDATORS}
        _SAFE[base] = validators.extend(base, {**refs, **_SAFE_KEYWORDS})
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
    todo: list[tuple[Any, str, bool]] = [(schema, _ROOT, False)]  # (node, base URI, is it a map of names)
    while todo:
        node, base, names = todo.pop()
        if isinstance(node, list):
            todo.extend((v, base, False) for v in node)
            continue
        if not isinstance(node, dict):
            continue
        if names:  # `properties`, `$defs`, ...: the keys are names (`default` too), every value a subschema
            todo.extend((v, base, False) for v in node.values())
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
                todo.append((value, base, key in _NAME_MAPS or key == "patternProperties"))
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


MAX_SCHEMA_DEPTH = 128
"""Deepest a schema may nest objects and arrays (63 subschemas under `properties`). Checking it against the 2020-12
meta-schema takes about 5 Python frames per level: 128 levels need about 660 of the default recursion limit of
1000, the rest is the caller's. Real schemas stay far below it; deeper structures are written with `$defs` and
`$ref`, which validation follows only as deep as the value goes."""


def _serialised(schema: dict[str, Any]) -> str:
    key = json.dumps(schema, sort_keys=True, ensure_ascii=False, allow_nan=False)
    key.encode("utf-8")
    return key


def load_schema(schema: Any) -> dict[str, Any] | bool | None:
    """A checked JSON Schema (dict or boolean) for None, a JSON Schema or a pydantic model class.

    Raises InvalidSchema for anything else, for a dict that is not a valid JSON Schema of its
    dialect, that nests deeper than MAX_SCHEMA_DEPTH, for a reference outside the schema (never
    fetched) or to nothing, and for a schema whose references recurse without end.
    """
    if schema is None or isinstance(schema, bool):
        return schema
    if isinstance(schema, dict):
        too_deep = InvalidSchema(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels of objects and arrays, "
                                 "more than can be checked safely (write deep or recursive structures with $defs and "
                                 "$ref)")
        try:
            try:
                key = _serialised(schema)
            except RecursionError:  # perhaps only because the caller's stack is deep already
                key = _on_fresh_stack(_serialised, schema)
        except RecursionError:
            raise too_deep from None
        except UnicodeEncodeError:
            raise InvalidSchema("the schema holds lone surrogate code points, which JSON text cannot carry") from None
        except (TypeError, ValueError) as exc:
            raise InvalidSchema(f"not a JSON-serialisable schema: {exc}") from exc
        if nesting_depth(key, limit=MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
            raise too_deep
        problem = _schema_problem(key)
        if problem:
            raise InvalidSchema(problem)
        _remember(_KEYS, id(schema), (schema, key))
        return schema
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        return schema.model_json_schema()
    raise InvalidSchema(
        f"expected a JSON Schema dict or boolean, or a pydantic model class, got {type(schema).__name__}"
    )


_PROBLEMS: OrderedDict[str, str | None] = OrderedDict()


def _schema_problem(key: str) -> str | None:
    """Why the serialised schema is not usable, or None (cached: checks are slow). How deep the caller's stack
    already is must not decide it: a check that runs out of stack is run again on a fresh thread's, and only
    what it finds there (the schema's references recurse without end, or nothing) is the answer."""
    with _CACHE_LOCK:
        if key in _PROBLEMS:
            _PROBLEMS.move_to_end(key)
            return _PROBLEMS[key]
    try:
        problem = _problem_of(key)
    except RecursionError:
        try:
            problem = _on_fresh_stack(_problem_of, key)
        except RecursionError:
            problem = ("the schema's references recurse without end" if '"$ref":' in key or '"$dynamicRef":' in key
                       else "the schema nests too deep to be checked within Python's recursion limit")
    with _CACHE_LOCK:
        _PROBLEMS[key] = problem
        if len(_PROBLEMS) > 64:
            _PROBLEMS.popitem(last=False)
    return problem


def _problem_of(key: str) -> str | None:
    schema = json.loads(key)
    try:
        cls = validator_class(schema)
        _check_schema(cls, schema)
        _check_refs(schema)
        validator = cls(schema, registry=_REGISTRY)
        for probe in (None, {}, [], ""):
            with ref_budget(probe, schema):
                any(True for _ in validator.iter_errors(probe))
    except InvalidSchema as exc:
        return str(exc)
    except jsonschema.SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    except referencing.exceptions.Unresolvable as exc:
        return f"a $ref cannot be resolved inside the schema: {exc}"
    return None


def _on_fresh_stack(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on a new thread, whose stack holds none of the caller's frames; its exception is raised here."""
    found: list[Any] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            found.append(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            failed.append(exc)

    thread = threading.Thread(target=run, name="kgot-errors-schema-check")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return found[0]


_CACHED = 256
_CACHE_LOCK = threading.Lock()
_VALIDATORS: OrderedDict[int, tuple[Any, Any]] = OrderedDict()
"""id(schema) -> (schema, validator): the schema object is held, so its id is not reused while cached."""
_BY_CONTENT: OrderedDict[str, Any] = OrderedDict()
"""Serialised schema -> validator: equal schemas in different objects (one per incident) share one validator."""
_KEYS: OrderedDict[int, tuple[Any, str]] = OrderedDict()
"""id(schema) -> (schema, serialised schema), as load_schema serialised it: the validator cache needs no second pass."""


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    with _CACHE_LOCK:  # layers run in threads too (large inputs are offloaded)
        cache[key] = value
        cache.move_to_end(key)
        if len(cache) > _CACHED:
            cache.popitem(last=False)


def _validator(schema: dict[str, Any] | bool) -> Any:
    """The validator of a loaded schema, cached by the schema object, then by its content."""
    hit = _VALIDATORS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    known = _KEYS.get(id(schema))
    key: str | None = known[1] if known is not None and known[0] is schema else None
    if key is None:
        try:
            key = json.dumps(schema, sort_keys=True, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            key = None
    validator = _BY_CONTENT.get(key) if key is not None else None
    if validator is None:
        validator = validator_class(schema)(schema, registry=_REGISTRY)
        if key is not None:
            _remember(_BY_CONTENT, key, validator)
    _remember(_VALIDATORS, id(schema), (schema, validator))
    return validator


def schema_errors(value: Any, schema: dict[str, Any] | bool | None, *, limit: int = MAX_ERRORS) -> list[str]:
    """Validator messages for `value` (`$.path: message`), at most `limit`; [] when it fits.

    A schema that cannot be evaluated on this value (a pattern past its deadline, a reference that
    does not resolve, references recursing without end) raises InvalidSchema (SchemaTimeout)."""
    return schema_report(value, schema, limit=limit)[0]


def schema_report(value: Any, schema: dict[str, Any] | bool | None, *,
                  limit: int = MAX_ERRORS) -> tuple[list[str], list[tuple[str | int, ...]]]:
    """schema_errors' messages, and where in the value every error is (its path, as keys and indexes): what
    a coercion needs to look at."""
    if schema is None or schema is True:
        return [], []
    if schema is False:
        return ["$: the schema `false` accepts no value"], [()]
    try:
        with pattern_budget(), ref_budget(value, schema):
            errors = sorted(_validator(schema).iter_errors(value), key=lambda e: (len(e.absolute_path), e.json_path))
    except referencing.exceptions.Unresolvable as exc:
        raise InvalidSchema(f"a $ref cannot be resolved inside the schema: {exc}") from None
    except RecursionError:
        raise InvalidSchema("the schema's references recurse without end on this value") from None
    return [f"{e.json_path}: {e.message}" for e in errors[:limit]], [tuple(e.absolute_path) for e in errors]


def fits(value: Any, schema: Any, root: dict[str, Any]) -> bool:
    if schema is True or schema == {}:
        return True
    if schema is False:
        return False
    validator = _validator(root)
    with pattern_budget(), ref_budget(value, root):
        return bool(validator.evolve(schema=schema).is_valid(value)) if schema is not root else \
            validator.is_valid(value)

