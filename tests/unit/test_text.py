"""Text-level unicode repair: fix_text, fix_value_text, encoder round-trips, string boundaries."""

from __future__ import annotations

import json

import pytest

from kgot_errors.repair._unicode import (
    closes_string,
    encoder_round_trips,
    fix_text,
    fix_value_text,
    string_end,
)

FIX_TEXT = [
    # (input, expected text, expected steps)
    ('{"a": 1}', '{"a": 1}', ()),
    ("\ufeff{}", "{}", ("removed BOM",)),
    ("\ufeff\ufeff[1]", "[1]", ("removed BOM",)),
    ('{"a":\u200b"foo"}', '{"a":"foo"}', ("removed zero-width characters and odd spaces outside strings",)),
    ('{"a":\u00a0"foo"}', '{"a": "foo"}', ("removed zero-width characters and odd spaces outside strings",)),
    ('{\u3000"a": 1}', '{ "a": 1}', ("removed zero-width characters and odd spaces outside strings",)),
    ('{"a": "x\u00a0y"}', '{"a": "x\u00a0y"}', ()),  # inside a string: kept
    ("{\u201ca\u201d: \u201cb\u201d}", '{"a": "b"}', ("replaced smart quotes used as JSON quotes",)),
    ("{\u2018a\u2019: \u2018b\u2019}", '{"a": "b"}', ("replaced smart quotes used as JSON quotes",)),
    ('{"tool\u201d: \u201cx\u201d}', '{"tool": "x"}', ("replaced smart quotes used as JSON quotes",)),
    (
        "{\u201cnotes\u201d: \u201cKept \u201cformal\u201d register.\u201d}",
        '{"notes": "Kept \u201cformal\u201d register."}',
        ("replaced smart quotes used as JSON quotes",),
    ),
    ('{"a": "He said \u201chi\u201d"}', '{"a": "He said \u201chi\u201d"}', ()),  # content quotes stay
    ('{"t": "despre \u201eautocritic\u0103" si"}', '{"t": "despre \u201eautocritic\u0103" si"}', ()),
    ("{\u2018code\u2019: \u2018say \"hi\"\u2019}", '{"code": "say \\"hi\\""}', ("replaced smart quotes used as JSON quotes",)),
]


@pytest.mark.parametrize(("text", "expected", "steps"), FIX_TEXT)
def test_fix_text_repairs_syntax_and_keeps_string_content(text: str, expected: str, steps: tuple[str, ...]) -> None:
    fixed = fix_text(text)
    assert fixed.text == expected
    assert fixed.steps == steps


def test_fix_text_output_of_smart_quoted_document_parses() -> None:
    text = "{\n  \u201centities\": [\n    {\u201ctext\u201d: \u201cS\u00e3o Paulo\u201d, \"start\u201d: 8}\n  ]\n}"
    assert json.loads(fix_text(text).text) == {"entities": [{"text": "S\u00e3o Paulo", "start": 8}]}


FIX_VALUE = [
    # (value, expected value, expected steps)
    ({"a": "plain"}, {"a": "plain"}, ()),
    ({"a": "S\\u00f8ren"}, {"a": "S\u00f8ren"}, ("decoded literal \\uXXXX escapes",)),
    (["\\u6771\\u4eac"], ["\u6771\u4eac"], ("decoded literal \\uXXXX escapes",)),
    ("\\ud83d\\ude80", "\U0001f680", ("decoded literal \\uXXXX escapes",)),
    ({"url": "x=\\u0041"}, {"url": "x=\\u0041"}, ()),  # ASCII: meant literally
    ({"S\\u00f8ren": 1}, {"S\u00f8ren": 1}, ("decoded literal \\uXXXX escapes",)),  # keys too
    ({"name": "S\u00c3\u00b8ren"}, {"name": "S\u00f8ren"}, ("fixed mojibake (ftfy)",)),
    ("\u00c5\u0081ukasz", "\u0141ukasz", ("fixed mojibake (ftfy)",)),
    ("\u00f0\u0178\u0161\u20ac \u00e2\u20ac\u201d ok", "\U0001f680 \u2014 ok", ("fixed mojibake (ftfy)",)),
    ("Kept \u201cformal\u201d register.", "Kept \u201cformal\u201d register.", ()),  # curly quotes stay
    ("na\u00efve fa\u00e7ade", "na\u00efve fa\u00e7ade", ()),
    ("lone \ud83d here", "lone \ufffd here", ("replaced lone surrogates with U+FFFD",)),
    ([1, None, True, 2.5], [1, None, True, 2.5], ()),
]


@pytest.mark.parametrize(("value", "expected", "steps"), FIX_VALUE)
def test_fix_value_text_decodes_double_escapes_and_mojibake(value: object, expected: object, steps: tuple) -> None:
    fixed, taken = fix_value_text(value)
    assert fixed == expected
    assert taken == steps


def test_fix_value_text_returns_the_same_object_when_nothing_changes() -> None:
    value = {"a": ["b", {"c": 1}]}
    assert fix_value_text(value)[0] is value


ROUND_TRIPS = [
    ('{\\"a\\": 1}', {"unicode_escape": '{"a": 1}'}),
    ('{"a": "Siobh\u00c3\u00a1n"}', {"latin-1": '{"a": "Siobh\u00e1n"}', "ascii": '{"a": "Siobhn"}'}),
    ('{"a": "\ud83d"}', {"utf-8": '{"a": ""}', "ascii": '{"a": ""}'}),
    ('{"a": 1}', {}),
]


@pytest.mark.parametrize(("text", "expected"), ROUND_TRIPS)
def test_encoder_round_trips_are_candidates_that_differ(text: str, expected: dict[str, str]) -> None:
    trips = dict(encoder_round_trips(text))
    for name, candidate in expected.items():
        assert trips[name] == candidate
    assert all(candidate != text for candidate in trips.values())


@pytest.mark.parametrize("text", ["", "\udcff\ud800", "\x00\x01", "é" * 1000, "\\u12"])
def test_encoder_round_trips_never_raise(text: str) -> None:
    assert isinstance(encoder_round_trips(text), list)


CLOSES = [
    ('"a", "b"', 3, True),
    ('"a"}', 3, True),
    ('"a": 1', 3, True),
    ('"a"', 3, True),  # end of text
    ('"a" + "b"', 3, True),  # concatenation
    ('"a" "b"', 3, True),  # missing comma: space then a quote
    ('"a"b"', 3, False),  # a quote inside the string
    ('"a" // c\n, 2', 3, True),
    ('"a" # c\n}', 3, True),
    ('"72") tall"', 4, False),
    ('"x")', 3, False),  # `)` only closes inside calls and tuples (see `extra`)
]


@pytest.mark.parametrize(("text", "after", "expected"), CLOSES)
def test_closes_string_needs_structure_after_the_quote(text: str, after: int, expected: bool) -> None:
    assert closes_string(text, after) is expected


def test_closes_string_accepts_extra_closers() -> None:
    assert closes_string('"x")', 3, ")") is True


STRING_ENDS = [
    ('"abc" tail', False, 4),
    ('"a\\"b"', False, 5),
    ('"abc', False, -1),
    ("'It's fine', 'b'", True, 10),
    ("\u2018a\u2019 \u2018b\u2019", True, 2),
    ("`log(`x`)`\n}", True, 9),
    ("'never closed", True, -1),
]


@pytest.mark.parametrize(("text", "lenient", "expected"), STRING_ENDS)
def test_string_end_finds_the_closing_quote(text: str, lenient: bool, expected: int) -> None:
    assert string_end(text, 0, lenient=lenient) == expected
