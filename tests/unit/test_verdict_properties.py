"""Properties of every verdict (hypothesis): valid JSON round-trips byte for byte, a recovered value validates,
a degraded one lists its changes, whatever strings, backslashes and control characters the data holds."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgot_errors import recover
from kgot_errors.repair import is_strict_json, parser_layer, unicode_layer
from kgot_errors.repair import schema_errors

# Any code point but lone surrogates (strict JSON text is UTF-8), with backslashes, `\u`, C0/C1 controls and
# mojibake-looking pairs drawn often.
TEXT = st.lists(st.one_of(
    st.characters(exclude_categories=("Cs",)),
    st.sampled_from(["\\", "\\u", "\\u00e9", "u1234", "\x00", "\x1f", "\x80", "\x93", "\u00c3\u00a9", "\u2019", '"']),
), max_size=12).map("".join)
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False,
                 allow_infinity=False), TEXT)
VALUE = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


def _type_schema(value: Any) -> dict[str, Any]:
    kind = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value))
    return {"type": kind or ("integer" if isinstance(value, int) else "number")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUE, ascii_only=st.booleans(), indent=st.sampled_from([None, 2]), with_schema=st.booleans())
def test_valid_json_comes_back_byte_for_byte(value: Any, ascii_only: bool, indent: int | None,
                                             with_schema: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    schema = _type_schema(value) if with_schema else None
    out = unicode_layer(text, schema)
    assert out.ok, out.reason
    assert out.text == text and out.steps == () and out.changes == ()
    assert json.dumps(out.value, sort_keys=True) == json.dumps(value, sort_keys=True)


def _damaged(text: str, how: int, at: int) -> str:
    at = at % (len(text) + 1)
    if how == 0:
        return text[:at]  # cut off
    if how == 1:
        return text[:at] + "," + text[at:]
    if how == 2:
        return text.replace('"', "'")
    if how == 3:
        return "Here is the JSON:\n```json\n" + text + "\n```"
    return text[:at] + text[at + 1:]  # a character lost


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUE, how=st.integers(0, 4), at=st.integers(0, 10_000), with_schema=st.booleans())
def test_a_fix_is_strict_json_that_validates_and_a_degraded_one_lists_its_changes(
        value: Any, how: int, at: int, with_schema: bool) -> None:
    schema = _type_schema(value) if with_schema else None
    text = _damaged(json.dumps(value, ensure_ascii=False), how, at)
    first = unicode_layer(text, schema)
    out = first if first.ok else parser_layer(text, schema)
    if not out.ok:
        return
    assert is_strict_json(out.value)
    assert schema_errors(out.value, schema) == []
    if out.degraded:
        assert out.changes
    if first.ok and first.steps == ():
        assert first.text == text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUE, how=st.integers(0, 4), at=st.integers(0, 10_000))
def test_the_graph_gives_the_same_verdicts(value: Any, how: int, at: int) -> None:
    text = _damaged(json.dumps(value, ensure_ascii=False), how, at)
    result = recover(ValueError("the model's answer did not parse"), content=text, checkpointer=None, sandbox=False)
    if result.recovered:
        assert is_strict_json(result.value) and result.recovered_by in ("unicode_fix", "parser_fix")
        assert all(c["kind"] == "coerced" for c in result.changes)
    if result.outcome == "degraded":
        assert result.changes and not result.recovered
