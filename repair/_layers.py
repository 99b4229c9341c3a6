"""The repair layers: `unicode_layer` (strict parse after unicode fixes), `parser_layer` (extraction, normalising,
json_repair behind the drift guard, schema coercion), and `repair`, the two in turn."""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections import Counter
from dataclasses import replace
from typing import Any

from kgot_errors.errors import InvalidSchema
from kgot_errors.repair._drift import _noisy_text, noise
from kgot_errors.repair._extract import _candidates, _decode_embedded
from kgot_errors.repair._outcome import DEGRADE, REFUSE, Change, Outcome, disposition
from kgot_errors.repair._schema import load_schema, pattern_budget, schema_errors
from kgot_errors.repair._strict import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_DEPTH,
    dumps as _dumps,
    is_strict_json,
    loads_strict,
    nesting_depth,
    number_too_long,
    program_not_data,
)
from kgot_errors.repair._unicode import encoder_round_trips, fix_text, fix_value_text, surrogate_changes

__all__ = ["parser_layer", "repair", "unicode_layer"]

logger = logging.getLogger(__name__)


def _accept(value: Any, steps: tuple[str, ...], schema: dict[str, Any] | bool | None, *, text: str) -> Outcome:
    errors = schema_errors(value, schema)
    if errors:
        reason = f"valid JSON that does not fit the schema: {errors[0]}"
        return Outcome(False, steps=steps, reason=reason, errors=tuple(errors))
    return Outcome(True, value, text, steps)


def _junk_only(before: str, after: str) -> bool:
    """True if turning `before` into `after` only dropped invisible or unencodable characters."""
    dropped = Counter(before) - Counter(after)
    return all(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in dropped)


def _strict_candidate(
    text: str, schema: dict[str, Any] | bool | None, steps: tuple[str, ...], limits: dict[str, int], *,
    as_given: bool, policy: dict[str, str] | None = None,
) -> Outcome:
    """`text` parsed strictly. Given text that parses and fits comes back as it is (its own bytes);
    fixes inside strings apply to text that needed fixing, or where they make the value fit."""
    try:
        value = loads_strict(text, **limits)
    except ValueError as exc:
        return Outcome(False, steps=steps, reason=f"not strict JSON: {exc}")
    if not as_given:
        embedded, _ = _decode_embedded(value, schema)
        if embedded is not value:
            return Outcome(False, steps=steps, reason="the JSON value is a JSON document encoded as a string")
    first = _accept(value, steps, schema, text=text if as_given else _dumps(value))
    if not text.isascii() or "\\u" in text:  # otherwise no string can hold mojibake or \\u escapes
        if as_given and (first.ok or not first.errors) and is_strict_json(value):
            return first
        fixed, fixes = fix_value_text(value)
        if fixes:
            second = _judged(_accept(fixed, (*steps, *fixes), schema, text=_dumps(fixed)), surrogate_changes(fixes),
                             policy)
            if second.ok or not as_given or not is_strict_json(value):
                return second
    return first


def _judged(out: Outcome, changes: list[Change], policy: dict[str, str] | None) -> Outcome:
    """A fix carrying `changes` to the data, as the policy takes them: refused (no fix), degraded or accepted."""
    if not out.ok or not changes:
        return out
    verdict = disposition(changes, policy)
    if verdict == REFUSE:
        return Outcome(False, steps=out.steps, changes=tuple(changes),
                       reason=f"the fix changes the data ({changes[0]['kind']}: {changes[0]['detail']}), which the "
                              "policy refuses")
    return replace(out, changes=tuple(changes), degraded=verdict == DEGRADE)


def _schema_or_reason(schema: Any) -> tuple[dict[str, Any] | bool | None, str | None]:
    """The schema as a checked JSON Schema (pydantic models converted), or why not."""
    try:
        return load_schema(schema), None
    except InvalidSchema as exc:
        return None, str(exc)


def _bounded(layer: Any) -> Any:
    """A layer that turns a schema it cannot evaluate (a pattern past its deadline, an unresolvable
    reference) into a failed Outcome saying so, instead of raising; and a fault of the engine itself
    into a failed Outcome naming it (logged with its traceback): a verdict, never a crash. Text that
    holds no JSON to repair (an integer too long to convert, a Python program) fails with the reason."""

    @functools.wraps(layer)
    def run(text: str, schema: Any = None, **kwargs: Any) -> Outcome:
        refused = (number_too_long(text) or program_not_data(text)) if isinstance(text, str) else None
        if refused:
            return Outcome(False, reason=refused)
        try:
            with pattern_budget():  # one deadline for all of this layer's pattern searches
                return layer(text, schema, **kwargs)
        except InvalidSchema as exc:
            return Outcome(False, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug here must not take the caller's recovery down
            logger.exception("%s failed on a %d-character input", layer.__name__, len(text))
            return Outcome(False, reason=f"the repair engine failed on this input ({type(exc).__name__}: "
                                         f"{str(exc)[:200]}); please report it")

    return run


@_bounded
def unicode_layer(
    text: str,
    schema: Any = None,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    policy: dict[str, str] | None = None,
    loaded: bool = False,
) -> Outcome:
    """The `unicode_fix` layer: unicode-level fixes only, accepted only by a strict parse.

    Strict JSON that fits the schema comes back as given, byte for byte. Otherwise BOMs,
    invisible and odd spaces and smart quotes used as quotes are fixed, then the original
    system's encoder round-trips are tried; literal `\\uXXXX` sequences and mojibake inside
    strings are decoded in text that needed those fixes, or where that makes the value fit.
    `loaded`: the schema is load_schema's result already (it is not checked again). Never raises.
    """
    limits = {"max_chars": max_chars, "max_depth": max_depth}
    if not isinstance(text, str):
        return Outcome(False, reason=f"expected text, got {type(text).__name__}")
    schema, problem = (schema, None) if loaded else _schema_or_reason(schema)
    if problem:
        return Outcome(False, reason=problem)
    first = _strict_candidate(text, schema, (), limits, as_given=True, policy=policy)
    if first.ok or first.errors or len(text) > max_chars:
        return first
    fixed = fix_text(text)
    attempts = [(fixed.text, fixed.steps)] if fixed.steps else []
    attempts += [(t, (*fixed.steps, f"{name} round-trip")) for name, t in encoder_round_trips(fixed.text)]
    last = first
    for candidate, steps in attempts:
        if "ascii round-trip" in steps and not _junk_only(fixed.text, candidate):
            continue
        last = _strict_candidate(candidate, schema, steps, limits, as_given=False, policy=policy)
        if last.ok:
            return last
    return Outcome(False, steps=last.steps, reason=last.reason, errors=last.errors, changes=last.changes)


def _parses(text: str, max_chars: int, max_depth: int) -> bool:
    try:
        loads_strict(text, max_chars=max_chars, max_depth=max_depth)
    except ValueError:
        return False
    return True


@_bounded
def parser_layer(
    text: str,
    schema: Any = None,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    policy: dict[str, str] | None = None,
    loaded: bool = False,
) -> Outcome:
    """The `parser_fix` layer: extraction, lenient normalisation, json_repair, schema coercion.

    Candidates come from the text, its fenced blocks, answer tags and escaped or
    HTML-escaped variants (`<think>` blocks only as a last resort); each is read strictly,
    then by the normaliser, then by json_repair behind a drift guard. The best candidate
    (fits the schema, carries the most data) wins. ok only for strict JSON that fits the
    schema and whose changes to the data (`Outcome.changes`) the policy does not refuse;
    `degraded` when it accepts them only as such. `loaded`: as for unicode_layer. Never raises.
    """
    if not isinstance(text, str):
        return Outcome(False, reason=f"expected text, got {type(text).__name__}")
    if len(text) > max_chars:
        return Outcome(False, reason=f"input is {len(text):,} characters, over the {max_chars:,} limit")
    schema, problem = (schema, None) if loaded else _schema_or_reason(schema)
    if problem:
        return Outcome(False, reason=problem)
    fixed = fix_text(text)
    body = fixed.text
    if not body.strip():
        return Outcome(False, reason="empty input: no JSON value to repair")
    if nesting_depth(body, limit=max_depth) > max_depth:
        return Outcome(False, reason=f"input nests deeper than {max_depth} levels")
    try:
        pool = _candidates(body, schema, text_fixes=not _parses(text, max_chars, max_depth))
    except RecursionError:  # pragma: no cover - every parser used is depth-checked first
        return Outcome(False, reason="input nests too deeply to repair")
    best = pool.best(policy)
    if best is None:
        why = pool.drift[0] if pool.drift else "no JSON value found in the text"
        return Outcome(False, steps=fixed.steps, reason=why)
    steps = (*fixed.steps, *best.steps)
    if not is_strict_json(best.value):  # pragma: no cover - _finish already guarantees it
        return Outcome(False, steps=steps, reason="the repaired value is not strict JSON")
    if not best.fits:
        return Outcome(
            False, steps=steps, reason=f"no repair fits the schema: {best.errors[0]}", errors=best.errors,
            changes=best.changes,
        )
    looks_like = None
    if schema is None and best.steps[1:]:
        looks_like = "most of the text mixes scripts and symbols" if _noisy_text(body) else noise(best.value)
    if looks_like:
        return Outcome(False, steps=steps, reason=f"with no schema, a repair must read like data, and this one reads "
                                                   f"as noise ({looks_like}): not a fix")
    verdict = disposition(best.changes, policy)
    if verdict == REFUSE:
        refused = next(c for c in best.changes if disposition([c], policy) == REFUSE)
        return Outcome(False, steps=steps, changes=best.changes,
                       reason=f"the only repair found changes the data ({refused['kind']} at {refused['path']}: "
                              f"{refused['detail']}), which the policy refuses")
    return Outcome(True, best.value, _dumps(best.value), steps, changes=best.changes, degraded=verdict == DEGRADE)


def repair(text: str, schema: Any = None, *, policy: dict[str, str] | None = None) -> Any:
    """unicode_layer, then parser_layer: the repaired value, or ValueError saying why not.

    `schema` is None, a JSON Schema (dict or boolean) or a pydantic model class (InvalidSchema
    otherwise). A repair the policy accepts only as degraded (a completed truncated document, by
    default) is returned too; use the layers for its changes.
    """
    loaded = load_schema(schema)
    first = unicode_layer(text, loaded, loaded=True)
    if first.ok:
        return first.value
    second = parser_layer(text, loaded, policy=policy, loaded=True)
    if second.ok:
        return second.value
    raise ValueError(second.reason)
