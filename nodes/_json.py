"""Deterministic JSON repair of LLM output: strict parsing, the unicode and parser layers, drift-guarded."""

from __future__ import annotations

import contextlib
import functools
import html
import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import json_repair

from kgot_errors.errors import InvalidSchema
from kgot_errors.nodes._schema import Change, change, coerce_to_schema, describe, load_schema, schema_errors
from kgot_errors.nodes._text import (
    DOUBLE_QUOTES,
    SINGLE_QUOTES,
    ZERO_WIDTH,
    closes_string,
    encoder_round_trips,
    fix_text,
    fix_value_text,
    string_end,
)

__all__ = [
    "ACCEPT",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_POLICY",
    "DEGRADE",
    "REFUSE",
    "InputTooLarge",
    "NonFiniteNumber",
    "Outcome",
    "coverage",
    "is_strict_json",
    "loads_strict",
    "nesting_depth",
    "noise",
    "parser_layer",
    "repair",
    "unicode_layer",
]

DEFAULT_MAX_DEPTH = 512
DEFAULT_MAX_CHARS = 8_000_000
#: Inputs longer than this get fewer extraction attempts (each may cost linear time).
SCAN_MAX_CHARS = 200_000
#: A json_repair result must keep at least this share of its input's words and numbers.
MIN_COVERAGE = 0.6
MAX_STARTS = 48  # positions that yield a value, per segment (3 for long inputs)
MAX_ATTEMPTS = 20_000  # positions tried, per segment (most fail at their first token)
MAX_STREAM = 10_000

QUOTES = DOUBLE_QUOTES + SINGLE_QUOTES

ACCEPT, DEGRADE, REFUSE = "accept", "degrade", "refuse"
DEFAULT_POLICY: dict[str, str] = {"coerced": ACCEPT, "truncated": DEGRADE, "added": REFUSE, "removed": REFUSE}
"""What a caller accepts of each kind of change (see nodes/_schema.Change): lossless coercions are a plain
recovery, a completed truncated document is accepted as `degraded`, invented or deleted data is no fix."""
_RANK = {ACCEPT: 0, DEGRADE: 1, REFUSE: 2}


def disposition(changes: tuple[Change, ...] | list[Change], policy: dict[str, str] | None = None) -> str:
    """The policy's word on a set of changes: the strictest of its kinds' dispositions."""
    rules = DEFAULT_POLICY if policy is None else {**DEFAULT_POLICY, **policy}
    return max((rules.get(c["kind"], REFUSE) for c in changes), key=_RANK.__getitem__, default=ACCEPT)


class InputTooLarge(ValueError):
    """The text is longer or nested deeper than the limits allow."""


class NonFiniteNumber(ValueError):
    """Strict JSON has no NaN, Infinity or -Infinity."""


@dataclass(frozen=True)
class Outcome:
    """What a repair layer produced: the validated value, or why there is none."""

    ok: bool
    value: Any = None
    text: str | None = None
    steps: tuple[str, ...] = ()
    reason: str | None = None
    errors: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()  # what the fix did to the data (empty: the data is the text's)
    degraded: bool = False  # ok, but only as `degraded`: the policy accepts these changes with a mark


# --------------------------------------------------------------------------------------
# Strict parsing
# --------------------------------------------------------------------------------------

_DEPTH_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}()]', re.S)


def nesting_depth(text: str, *, limit: int | None = None) -> int:
    """Deepest bracket nesting outside double-quoted strings (stops early past `limit`)."""
    opened = text.count("[") + text.count("{") + text.count("(")
    if limit is not None and opened <= limit:
        return opened
    depth = deepest = 0
    for m in _DEPTH_TOKEN.finditer(text):
        c = m.group()[0]
        if c in "[{(":
            depth += 1
            if depth > deepest:
                deepest = depth
                if limit is not None and deepest > limit:
                    return deepest
        elif c in "]})":
            depth = max(0, depth - 1)
    return deepest


def _check_size(text: str, max_chars: int, max_depth: int) -> None:
    if len(text) > max_chars:
        raise InputTooLarge(f"input is {len(text):,} characters, over the {max_chars:,} limit")
    depth = nesting_depth(text, limit=max_depth)
    if depth > max_depth:
        raise InputTooLarge(f"input nests deeper than {max_depth} levels")


def _reject_constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not valid in strict JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NonFiniteNumber(f"the number {text[:40]} is beyond the range of a JSON number (a double)")
    return number


def loads_strict(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH, max_chars: int = DEFAULT_MAX_CHARS) -> Any:
    """json.loads that rejects NaN/Infinity (literals or overflowing numbers) and over-long or over-deep
    input (ValueErrors)."""
    _check_size(text, max_chars, max_depth)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as exc:  # pragma: no cover - the depth check comes first
        raise InputTooLarge("input nests too deeply") from exc


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------------------
# The lenient normaliser: JSON-ish text -> strict JSON text, or a confident prefix
# --------------------------------------------------------------------------------------

_VALUE, _KEY, _COLON, _AFTER = range(4)
_CLOSER = {"{": "}", "[": "]", "(": ")", "F": ")"}
_LITERALS = {
    "true": "true", "false": "false", "null": "null",
    "True": "true", "False": "false", "None": "null",
    "TRUE": "true", "FALSE": "false", "NULL": "null",
    "NaN": "null", "nan": "null", "Infinity": "null", "inf": "null", "undefined": "null",
}
_LITERAL_STEP = {
    "True": "replaced Python literals", "False": "replaced Python literals", "None": "replaced Python literals",
    "TRUE": "lower-cased literals", "FALSE": "lower-cased literals", "NULL": "lower-cased literals",
    "NaN": "replaced NaN/Infinity with null", "nan": "replaced NaN/Infinity with null",
    "Infinity": "replaced NaN/Infinity with null", "inf": "replaced NaN/Infinity with null",
    "undefined": "replaced undefined with null",
}
_IDENT = re.compile(r"(?:[^\W\d]|\$)[\w$]*")  # Unicode letters too, as the dispatch's str.isalpha()
_KEY_WORD = re.compile(r"[\w$][\w$\-.]*")
_NUMBER = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]+|\d[\d_]*(?:\.[\d_]*)?(?:[eE][-+]?\d*)?|\.\d+(?:[eE][-+]?\d*)?)")
_DANGLING_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?$")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_NEEDS_CLEANING = re.compile(r'[\\"\x00-\x1f]')
_TRAILING_CLOSERS = re.compile(r"(?:[\s\]}]|`{3,})*$")
_JS_PREFIX = re.compile(r"(?:(?:export\s+default|module\.exports\s*=|(?:const|let|var)\s+[\w$]+\s*=)\s*)")
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_JSON_ESCAPES = '"\\/bfnrt'


class _Bail(Exception):
    """Internal: the normaliser met something it does not repair with confidence."""


@dataclass(frozen=True)
class _Norm:
    """One value read by the normaliser."""

    text: str  # normalised text; strict JSON when complete, else a prefix plus the raw rest
    start: int
    end: int  # source index after the value (and trailing spaces or comments)
    complete: bool
    tokens: int  # keys and scalars read with confidence
    edits: tuple[str, ...]


def _escape_control(ch: str) -> str:
    return _CONTROL_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def _clean_double(body: str) -> tuple[str, bool]:
    """The body of a double-quoted string made valid: bad escapes and raw controls fixed."""
    if not _NEEDS_CLEANING.search(body):
        return body, False
    out: list[str] = []
    k, n = 0, len(body)
    while k < n:
        ch = body[k]
        if ch == "\\":
            nxt = body[k + 1] if k + 1 < n else ""
            if nxt and nxt in _JSON_ESCAPES:
                out.append("\\" + nxt)
                k += 2
            elif nxt == "u" and _HEX4.match(body, k + 2):
                out.append(body[k : k + 6])
                k += 6
            elif nxt and nxt in QUOTES:
                out.append(nxt)
                k += 2
            else:
                out.append("\\\\")
                k += 1
        elif ch < " ":
            out.append(_escape_control(ch))
            k += 1
        elif ch == '"':
            out.append('\\"')
            k += 1
        else:
            out.append(ch)
            k += 1
    cleaned = "".join(out)
    return cleaned, cleaned != body


def _requote(body: str) -> str:
    """A single-, smart- or backtick-quoted string body as a JSON double-quoted string."""
    out: list[str] = []
    k, n = 0, len(body)
    while k < n:
        ch = body[k]
        if ch == "\\" and k + 1 < n:
            nxt = body[k + 1]
            if nxt in _JSON_ESCAPES:
                out.append("\\" + nxt)
            elif nxt == "u" and _HEX4.match(body, k + 2):
                out.append(body[k : k + 6])
                k += 6
                continue
            elif nxt in QUOTES:
                out.append(nxt)
            else:
                out.append("\\\\")
                k += 1
                continue
            k += 2
            continue
        if ch == '"':
            out.append('\\"')
        elif ch < " ":
            out.append(_escape_control(ch))
        else:
            out.append(ch)
        k += 1
    return '"' + "".join(out) + '"'


def _normalise_number(tok: str) -> tuple[str, str | None]:
    """(JSON text, step) for a number token such as 0x1F, .5, 2., 1_000, 2e, +3, 0789."""
    sign = "-" if tok.startswith("-") else ""
    body = tok.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        return sign + str(int(body, 16)), "converted hex numbers"
    if re.match(r"0\d", body):
        return _dumps(tok), "quoted numbers with leading zeros"
    fixed = body.replace("_", "")
    fixed = re.sub(r"[eE][-+]?$", "", fixed)
    if fixed.startswith("."):
        fixed = "0" + fixed
    if fixed.endswith("."):
        fixed += "0"
    fixed = fixed.replace(".e", ".0e").replace(".E", ".0E")
    text = sign + fixed
    if text == tok:
        return text, None
    try:
        if not math.isfinite(float(text)):
            return "null", "replaced NaN/Infinity with null"
    except ValueError:
        return _dumps(tok), "quoted malformed numbers"
    return text, "normalised number formats"


class _Normaliser:
    """Reads one JSON-ish value from `s` at `start` with an explicit stack (no recursion).

    Each construct it understands is rewritten to strict JSON; at the first thing it does
    not understand it stops ("bails") and hands the rest, unchanged, to json_repair.
    """

    def __init__(self, s: str, start: int, *, bare_top: bool = False) -> None:
        self.s = s
        self.bare_top = bare_top  # a top-level bare word is acceptable (after a comma in a stream)
        self.key_at = 0
        self.n = len(s)
        self.i = start
        self.start = start
        self.out: list[str] = []
        self.stack: list[str] = []
        self.tuples: list[list[int]] = []  # [out index of '[', items, commas] per open tuple
        self.objects: list[list[int]] = []  # [out index of '{', pairs] per open object
        self.python_style = False  # a single-quoted string was seen: Python repr / pprint output
        self.comma = False
        self.tokens = 0
        self.edits: dict[str, None] = {}

    # -- plumbing ---------------------------------------------------------------------
    def note(self, step: str) -> None:
        self.edits[step] = None

    def skip_space(self) -> None:
        s, n, i = self.s, self.n, self.i
        while i < n:
            c = s[i]
            if c.isspace() or c in ZERO_WIDTH:
                i += 1
            elif c == "/" and i + 1 < n and s[i + 1] in "/*":
                end = s.find("\n" if s[i + 1] == "/" else "*/", i + 2)
                i = n if end < 0 else end + (1 if s[i + 1] == "/" else 2)
                self.note("removed comments")
            elif c == "#":
                end = s.find("\n", i)
                end = n if end < 0 else end
                if any(ch in s[i:end] for ch in '{}[]"'):
                    break  # brackets or quotes in a `#` comment: leave it to json_repair
                i = min(n, end + 1)
                self.note("removed comments")
            elif c == "`" and s.startswith("```", i):
                m = re.compile(r"`{3,}[\w+\-.]*").match(s, i)
                i = m.end() if m else i + 3
                self.note("removed stray markdown fences")
            else:
                break
        self.i = i

    def peek_after(self, j: int) -> str:
        """The next character at or after `j` that is not a space (or "")."""
        while j < self.n and (self.s[j].isspace() or self.s[j] in ZERO_WIDTH):
            j += 1
        return self.s[j] if j < self.n else ""

    def begin_value(self) -> None:
        if self.comma:
            self.out.append(",")
            self.comma = False
        if self.stack and self.stack[-1] == "(":
            self.tuples[-1][1] += 1

    def emit_scalar(self, text: str) -> int:
        self.begin_value()
        self.out.append(text)
        self.tokens += 1
        return _AFTER

    def in_call(self) -> bool:
        return bool(self.stack) and self.stack[-1] in "(F"

    # -- the machine ----------------------------------------------------------------------
    def run(self) -> _Norm:
        state = _VALUE
        while True:
            self.skip_space()
            if state == _AFTER and not self.stack:
                return self.result(complete=True)
            at, out_len, comma = self.i, len(self.out), self.comma
            if self.i >= self.n and self.stack:
                return self.complete_truncated(state)
            try:
                if self.i >= self.n:
                    raise _Bail
                c = self.s[self.i]
                if state == _VALUE:
                    state = self.value(c)
                elif state == _KEY:
                    state = self.key(c)
                elif state == _COLON:
                    state = self.colon(c)
                else:
                    state = self.after(c)
            except _Bail:
                return self.bailed(at, out_len, comma)

    def result(self, complete: bool) -> _Norm:
        return _Norm("".join(self.out), self.start, self.i, complete, self.tokens, tuple(self.edits))

    def complete_truncated(self, state: int) -> _Norm:
        """Close what the text left open at its end (output cut off mid-value)."""
        if state == _COLON or (state == _VALUE and self.stack[-1] == "{"):
            del self.out[self.key_at :]  # a key whose value never came
        self.comma = False
        while self.stack:
            self.pop_container()
        self.note("completed truncated JSON")
        return self.result(complete=True)

    def bailed(self, at: int, out_len: int, comma: bool) -> _Norm:
        """Keep the confident prefix; hand the rest of the value over unchanged."""
        del self.out[out_len:]
        if comma:
            self.out.append(",")
        end = _rough_end(self.s, at, len(self.stack))
        text = "".join(self.out) + self.s[at:end]
        return _Norm(text, self.start, end, False, self.tokens, tuple(self.edits))

    # -- states -----------------------------------------------------------------------------
    def value(self, c: str) -> int:
        s, i = self.s, self.i
        top = self.stack[-1] if self.stack else ""
        if c in "{[" and len(self.stack) < 3:
            end = _valid_container_end(s, i)  # a well-formed nested value is copied as is
            if end > 0:
                self.begin_value()
                self.out.append(s[i:end])
                self.tokens += 2
                self.i = end
                return _AFTER
        if c in "{[":
            self.begin_value()
            if c == "{":
                self.objects.append([len(self.out), 0])
            self.out.append(c)
            self.stack.append(c)
            self.i += 1
            return _KEY if c == "{" else _VALUE
        if c == "(":
            self.begin_value()
            self.tuples.append([len(self.out), 0, 0])
            self.out.append("[")
            self.stack.append("(")
            self.i += 1
            self.note("converted tuples to arrays")
            return _VALUE
        if top == "{" and c in ",}":
            self.note("filled missing values")
            return self.emit_scalar('""')
        if c in "}])":
            return self.close(c)
        if c == ",":
            self.note("removed extra commas")
            self.i += 1
            return _VALUE
        if s.startswith("...", i) or c == "\u2026":
            if top == "{":
                raise _Bail
            self.i += 1 if c == "\u2026" else 3
            self.note("removed ellipsis placeholders")
            return _VALUE
        if c in QUOTES and i + 1 == self.n and self.stack:
            self.i = self.n  # a lone quote at the very end opens nothing
            return _VALUE
        if c in QUOTES:
            return self.emit_scalar(self.string())
        if c == "/" and s[i + 1 : i + 2] not in ("/", "*"):
            return self.bare_words()  # a regular expression literal
        if c.isdigit() or (c in "-+." and i + 1 < self.n and (s[i + 1].isdigit() or s[i + 1] == ".")):
            return self.number()
        if c == "-" and i + 1 == self.n:
            self.i += 1
            self.note("completed truncated JSON")
            return self.emit_scalar("0")
        if c in "-+" and i + 1 < self.n and s[i + 1].isalpha():
            m = _IDENT.match(s, i + 1)
            if m and m.group() in ("Infinity", "inf", "NaN", "nan"):
                self.i = m.end()
                self.note("replaced NaN/Infinity with null")
                return self.emit_scalar("null")
            raise _Bail
        if c.isalpha() or c in "_$":
            return self.word()
        raise _Bail

    def key(self, c: str) -> int:
        s = self.s
        if c == "}":
            return self.close(c)
        if c == ",":
            self.note("removed extra commas")
            self.i += 1
            return _KEY
        if s.startswith("...", self.i) or c == "\u2026":
            self.i += 1 if c == "\u2026" else 3
            self.note("removed ellipsis placeholders")
            return _KEY
        self.key_at = len(self.out)
        if c in QUOTES:
            text = self.string(key=True)
        else:
            m = _KEY_WORD.match(s, self.i)
            if not m:
                raise _Bail
            end = m.end()
            if s.startswith('"', end) and self.peek_after(end + 1) == ":":
                end += 1  # `b":` - a key that lost its opening quote
            nxt = self.peek_after(end)
            if nxt != ":" and not (nxt and nxt in QUOTES):
                raise _Bail
            if nxt == '"' and _quoted_key_follows(s, end):
                self.i = end  # `COMMENT "b": 1` - a stray word before the real key
                self.note("removed stray words between members")
                return _KEY
            self.i = end
            text = _dumps(m.group())
            self.note("quoted unquoted keys")
        self.begin_value()
        self.out.append(text)
        self.tokens += 1
        return _COLON

    def colon(self, c: str) -> int:
        if c == ":":
            self.out.append(":")
            self.objects[-1][1] += 1
            self.i += 1
            return _VALUE
        if c in ",}" and self.objects[-1][1] == 0:
            at = self.objects.pop()[0]  # `{'a', 'b'}`: a set literal, read as an array
            self.out[at] = "["
            self.stack[-1] = "["
            self.note("converted set literals to arrays")
            return _AFTER
        if c in QUOTES or c in "{[" or c.isalnum() or c in "-+.":
            self.note("inserted missing colons")
            self.out.append(":")
            self.objects[-1][1] += 1
            return _VALUE
        raise _Bail

    def after(self, c: str) -> int:
        top = self.stack[-1]
        if c == ",":
            if top == "F":
                raise _Bail
            if top == "(":
                self.tuples[-1][2] += 1
            self.comma = True
            self.i += 1
            return _KEY if top == "{" else _VALUE
        if c in "}])":
            return self.close(c)
        if c in QUOTES or c in "{[(" or c.isalnum() or c in "-+._$":
            if top == "F":
                raise _Bail
            self.note("inserted missing commas")
            self.comma = True
            return _KEY if top == "{" else _VALUE
        raise _Bail

    def close(self, c: str) -> int:
        if not self.stack:
            raise _Bail
        if _CLOSER[self.stack[-1]] != c:
            wanted = [_CLOSER[x] for x in self.stack]
            if c not in wanted:
                self.i += 1  # `[{"a": 1}}, ...]`: a closer that closes nothing
                self.note("removed stray closing brackets")
                return _AFTER
            raise _Bail  # `{"a": [1, 2}`: which bracket is missing is json_repair's call
        if self.comma:
            self.note("removed trailing commas")
            self.comma = False
        self.pop_container()
        self.i += 1
        return _AFTER

    def pop_container(self) -> None:
        top = self.stack.pop()
        if top == "{":
            self.objects.pop()
        if top in "{[":
            self.out.append(_CLOSER[top])
        elif top == "(":
            at, items, commas = self.tuples.pop()
            if items == 1 and commas == 0:
                self.out[at] = ""
            else:
                self.out.append("]")

    # -- tokens ---------------------------------------------------------------------------------
    def string(self, concat: bool = True, key: bool = False) -> str:
        s, i = self.s, self.i
        extra = ")" if self.in_call() else ""
        if key:
            concat = False
        if s.startswith('"""', i) or s.startswith("'''", i):
            end = s.find(s[i : i + 3], i + 3)
            if end < 0:
                raise _Bail
            literal = _dumps(s[i + 3 : end])
            self.i = end + 3
            self.note("converted triple-quoted strings")
        elif s[i] == '"':
            end = string_end(s, i, lenient=False)
            if end < 0:
                return self.truncated_string(i, _clean_double)
            if not (closes_string(s, end + 1, extra) or (key and _value_follows(s, end + 1))):
                end = _later_close(s, i, end, "key" if key else (self.stack[-1] if self.stack else ""))
                if isinstance(end, _Split):
                    self.note("closed strings missing their end quote")
                    self.i = end
                    body, _ = _clean_double(s[i + 1 : end].rstrip())
                    return '"' + body + '"'
                self.note("escaped quotes inside strings")
            raw = s[i + 1 : end]
            if "```" in raw and "\n" in raw:
                raise _Bail  # a fence inside a string with raw newlines: json_repair's heuristics
            if key and raw != raw.strip() and any(ch < " " for ch in raw):
                raw = raw.strip()
            body, changed = _clean_double(raw)
            if changed:
                self.note("escaped control characters and fixed invalid escapes")
            literal = '"' + body + '"'
            self.i = end + 1
        else:
            end = string_end(s, i, lenient=True)
            if end < 0:
                return self.truncated_string(i, lambda b: (_requote(b)[1:-1], True))
            literal = _requote(s[i + 1 : end])
            self.i = end + 1
            self.python_style |= s[i] == "'"
            self.note("converted single, smart or backtick quotes")
        while concat:
            j = _SEPARATORS_NO_COMMA.match(s, self.i).end()
            if self.python_style and j < self.n and s[j] in "'\"" and "\n" in s[self.i : j]:
                adjacent = self.adjacent_literal(j)  # pprint splits long strings over lines
                if adjacent is None:
                    break
                literal = _dumps(json.loads(literal) + json.loads(adjacent))
                self.note("joined adjacent string literals")
                continue
            if j >= self.n or s[j] != "+":
                break
            k = _SEPARATORS_NO_COMMA.match(s, j + 1).end()
            if k >= self.n or s[k] not in QUOTES:
                raise _Bail
            self.i = k
            tail = self.string(concat=False)
            literal = _dumps(json.loads(literal) + json.loads(tail))
            self.note("joined concatenated strings")
        return literal

    def adjacent_literal(self, j: int) -> str | None:
        """The string literal at `j` if it continues the previous one (it is not a key)."""
        saved = self.i
        self.i = j
        try:
            literal = self.string(concat=False)
        except _Bail:
            literal = None
        if literal is None or self.peek_after(self.i) == ":":
            self.i = saved
            return None
        return literal

    def truncated_string(self, i: int, clean: Any) -> str:
        """A string that is never closed: it ends at the line end, or before closing brackets
        at the end of the text (the output was cut off); a cut-off escape is dropped."""
        rest = self.s[i + 1 :]
        newline = rest.find("\n")
        if newline >= 0:
            rest = rest[:newline]
        closers = _TRAILING_CLOSERS.search(rest)
        if closers and any(ch in "]}`" for ch in closers.group()):
            body = rest[: closers.start()]
            if body.count("{") <= body.count("}") and body.count("[") <= body.count("]"):
                rest = body  # `{"a": "b}`: the brackets close the value (`^\\d{3}` keeps its own)
        self.i = i + 1 + len(rest)
        body, _ = clean(_DANGLING_ESCAPE.sub("", rest))
        self.note("closed a truncated string")
        return '"' + body + '"'

    def number(self) -> int:
        s, i = self.s, self.i
        m = _NUMBER.match(s, i)
        if not m:
            raise _Bail
        end = m.end()
        if s.startswith('"', end) and closes_string(s, end + 1):
            end += 1  # `12345",` - a stray closing quote after a number
            self.note("removed stray quotes")
        elif not _delimited(s, end):
            return self.bare_words()
        text, step = _normalise_number(m.group())
        if step:
            self.note(step)
        self.i = end
        return self.emit_scalar(text)

    def word(self) -> int:
        s = self.s
        m = _IDENT.match(s, self.i)
        if m is None:
            raise _Bail
        word, j = m.group(), m.end()
        cut = any(lit.startswith(word) and lit != word for lit in ("true", "false", "null"))
        if cut and j == self.n and self.stack:
            self.i = j  # `{"a": nu` - a value cut off by the end of the text is dropped with its key
            return _VALUE
        lowered = word.lower()
        literal = _LITERALS.get(lowered) if lowered in ("true", "false", "null") else _LITERALS.get(word)
        if literal is not None and _delimited(s, j):
            self.i = j
            step = _LITERAL_STEP.get(word)
            if step:
                self.note(step)
            return self.emit_scalar(literal)
        if self.peek_after(j) == "(":
            self.i = s.index("(", j) + 1
            self.begin_value()
            self.stack.append("F")
            self.note("unwrapped function calls")
            return _VALUE
        if not self.stack:
            prefix = _JS_PREFIX.match(s, self.i)
            if prefix:
                self.i = prefix.end()
                self.note("removed JavaScript assignment")
                return _VALUE
            if self.peek_after(j) != "," and not self.bare_top and not (
                not s[: self.start].strip() and _lone_token(s, self.i)
            ):
                raise _Bail
        return self.bare_words()

    def bare_words(self) -> int:
        """An unquoted string value: up to `, ] }`, a newline, a quote or a comment."""
        s, i, n = self.s, self.i, self.n
        j = i
        while j < n:
            c = s[j]
            url = c == ":" and s.startswith("//", j + 1)
            if url:
                j += 3
                continue
            if c in ",]}\n\r\"" or (c == ")" and self.in_call()) or s.startswith("//", j) or s.startswith("/*", j):
                break
            if c == ":" and self.stack:
                raise _Bail  # `key: value` without quotes inside a value: ambiguous
            j += 1
        words = s[i:j].strip()
        if not words or (not self.stack and any(ch.isspace() for ch in words)):
            raise _Bail
        if any(ch in "{[" for ch in words):
            raise _Bail
        self.i = i + len(s[i:j].rstrip())
        if s.startswith('"', self.i) and self.i == j and closes_string(s, j + 1):
            self.i += 1  # `abcdef",` - a value that lost its opening quote
        self.note("quoted bare words")
        return self.emit_scalar(_dumps(words))


_KEY_INSIDE = re.compile(r'""|":|,\s*"?[\w$-]+"?\s*:')


_DOUBLE_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_VALID_AFTER_OPEN = {"{": '"}', "[": '"-0123456789{[tfn]'}


def _valid_container_end(s: str, i: int) -> int:
    """End of the strict-JSON container starting at `i`, or -1 (cost linear in its length)."""
    j = i + 1
    while j < len(s) and s[j] in " \t\r\n":
        j += 1
    if j >= len(s) or s[j] not in _VALID_AFTER_OPEN[s[i]]:
        return -1
    end = _closing_end(s, i, 0)
    if end < 0:
        return -1
    try:  # parse just the slice: a failure's error message then costs O(slice)
        _, used = _DECODER.raw_decode(s[i:end])
    except (ValueError, RecursionError):
        return -1
    return end if used == end - i else -1


_NEXT_MEMBER = re.compile(r"""(?:"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[\w$-]+)\s*:|[}\]]""")
_NEXT_ITEM = re.compile(r"""[\]\[{"'\d\-]|(?:true|false|null|True|False|None)\b""")


def _ends_string(s: str, k: int, context: str) -> bool:
    """True if a quote at `k` is followed by what must come after a string in `context`
    ("key", or the innermost open container `{ [ ( F`, or "" at the top level)."""
    j = k + 1
    while j < len(s) and s[j] in " \t\r\n":
        j += 1
    if j >= len(s):
        return True
    c = s[j]
    if context == "key":
        return c == ":"
    if c == _CLOSER.get(context) or (context == "(" and c == ")"):
        return True
    if c != ",":
        return False
    j += 1
    while j < len(s) and s[j] in " \t\r\n":
        j += 1
    if j >= len(s):
        return True
    return bool((_NEXT_MEMBER if context == "{" else _NEXT_ITEM).match(s, j))


class _Split(int):
    """A string end that is not a quote: the string lost its closing quote before `,`."""


def _missing_end_quote(s: str, start: int, end: int, context: str) -> _Split | None:
    """`"b,c,"d":"e"` or `["abc,\n"def"]`: the quote at `end` opens the next key or item, so
    the string lost its closing quote; it ends at the last comma before that quote."""
    if context not in ("{", "[", "("):
        return None
    nxt = _DOUBLE_QUOTED.match(s, end)
    if not nxt:
        return None
    j = nxt.end()
    while j < len(s) and s[j] in " \t\r\n":
        j += 1
    follows = s[j] if j < len(s) else ""
    if not (follows == ":" if context == "{" else follows in ",])" or not follows):
        return None
    comma = s.rfind(",", start + 1, end)
    if comma < 0 or s[comma + 1 : end].strip():
        return None
    return _Split(comma)


def _later_close(s: str, start: int, end: int, context: str) -> int:
    """For a string whose first closing quote is followed by text (`"say "hi" now"`): the
    first later quote on the same line that `_ends_string` in its context. Bails when the
    content would swallow what looks like structure (`", "key":`), or starts with a quote:
    json_repair's heuristics judge those."""
    split = _missing_end_quote(s, start, end, context)
    if split is not None:
        return split
    line_end = s.find("\n", end + 1)
    line_end = len(s) if line_end < 0 else line_end
    k = end
    while True:
        k = s.find('"', k + 1, line_end)
        if k < 0:
            raise _Bail
        if s[k - 1] == "\\" and (k - len(s[:k].rstrip("\\"))) % 2:
            continue
        if _ends_string(s, k, context):
            content = s[start + 1 : k]
            if content.startswith('"') or "```" in content or _KEY_INSIDE.search(content):
                raise _Bail
            return k


def _quoted_key_follows(s: str, j: int) -> bool:
    """True if spaces, then a double-quoted string and a colon follow `j`."""
    while j < len(s) and s[j] in " \t\r\n":
        j += 1
    m = _DOUBLE_QUOTED.match(s, j)
    if not m:
        return False
    k = m.end()
    while k < len(s) and s[k] in " \t":
        k += 1
    return k < len(s) and s[k] == ":"


def _value_follows(s: str, j: int) -> bool:
    """True if spaces and then the start of a value follow `j` (a key missing its colon)."""
    k = j
    while k < len(s) and s[k] in " \t":
        k += 1
    if k < len(s) and (s[k].isdigit() or s[k] in "-{["):
        return True  # `{"a"2}` or `{"a" [1]}`
    return k > j and k < len(s) and s[k].isalpha()


def _lone_token(s: str, i: int) -> bool:
    """True if the text from `i` is one word and nothing else (`abc`, `ES2020`, a URL)."""
    rest = s[i:].strip()
    return bool(rest) and not any(ch.isspace() for ch in rest) and len(rest) <= 200


def _delimited(s: str, j: int) -> bool:
    """True if a token ending at `j` is followed by a delimiter."""
    if j >= len(s):
        return True
    c = s[j]
    return c.isspace() or c in ",]}):;" or c in ZERO_WIDTH or s.startswith("//", j) or s.startswith("/*", j)


def _closing_end(s: str, i: int, depth: int) -> int:
    """Index after the bracket that brings `depth` (open at `i`) back to 0, or -1 (string-aware)."""
    for m in _DEPTH_TOKEN.finditer(s, i):
        c = m.group()[0]
        if c in "[{(":
            depth += 1
        elif c in "]})":
            depth -= 1
            if depth == 0:
                return m.end()
    return -1


def _rough_end(s: str, i: int, depth: int) -> int:
    """Where a value that is `depth` brackets deep at `i` probably ends (else the text's end)."""
    end = _closing_end(s, i, depth) if depth > 0 else -1
    return len(s) if end < 0 else end


# --------------------------------------------------------------------------------------
# Reading values out of a text: fast strict path first, then the normaliser
# --------------------------------------------------------------------------------------

_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_SEPARATORS_NO_COMMA = re.compile(r"(?:\s|//[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.S)
_SEPARATORS = re.compile(
    r"(?:\s|[,;\u200b\u200c\u200d\u2060\ufeff]|//[^\n]*(?:\n|$)|/\*.*?(?:\*/|$)|#[^\n]*(?:\n|$))*", re.S
)
_STREAM_START = re.compile(r"[\[{\"'\u201c\u2018\d(-]|[A-Za-z_$]")
_CONTINUED_OBJECT = re.compile(r'\s*,\s*"(?:[^"\\\n]|\\.)*"\s*[:"]')


@dataclass(frozen=True)
class _Read:
    """A value read at one position: parsed already (strict) or a normaliser result."""

    norm: _Norm
    value: Any = None
    parsed: bool = False


def _read_value(s: str, i: int, *, bare_top: bool = False) -> _Read:
    try:
        if s[i] in "[{":
            end = _valid_container_end(s, i)
            if end < 0:
                raise ValueError("not strict JSON")
            value = _DECODER.decode(s[i:end])
        else:
            value, end = _DECODER.raw_decode(s, i)
    except (ValueError, RecursionError):
        return _Read(_Normaliser(s, i, bare_top=bare_top).run())
    after = _SEPARATORS.match(s, end).end()
    if (
        (after < len(s) and s[after] == "+")  # concatenation
        or (isinstance(value, str) and not closes_string(s, end))  # a quote inside the string
        or (not isinstance(value, (str, dict, list)) and not _delimited(s, end))  # `2.`, `-05`, `0.0.1`
    ):
        return _Read(_Normaliser(s, i, bare_top=bare_top).run())
    end = after if end < len(s) and s[end] in " \t\r\n" else end
    return _Read(_Norm(s[i:end], i, end, True, 2, ()), value, True)


def _read_stream(s: str, start: int) -> list[_Read]:
    """Values one after another from `start` (JSON lines, glued or comma-separated values)."""
    reads = [_read_value(s, start)]
    while reads[-1].norm.complete and len(reads) < MAX_STREAM:
        prev = reads[-1].norm.end
        j = _SEPARATORS.match(s, prev).end()
        if j >= len(s) or not _STREAM_START.match(s, j):
            break
        nxt = _read_value(s, j, bare_top="," in s[prev:j])
        if not nxt.norm.complete and nxt.norm.tokens == 0:
            break
        if "closed a truncated string" in nxt.norm.edits and nxt.norm.text[:1] not in "[{":
            break  # a lone quote after the values, not another value
        reads.append(nxt)
    return reads


def _reaches_end(s: str, end: int) -> bool:
    return _SEPARATORS.match(s, end).end() >= len(s)


# --------------------------------------------------------------------------------------
# Extraction: where in the text JSON may live
# --------------------------------------------------------------------------------------

_THINK = re.compile(
    r"<(think|thinking|reasoning|reflection|scratchpad|analysis)\b[^>]*>(.*?)(?:</\1\s*>|\Z)", re.S | re.I
)
_ANSWER_TAG = re.compile(
    r"<(answer|json|output|response|result|final_answer|final|pre|code)\b[^>]*>(.*?)(?:</\1\s*>|\Z)", re.S | re.I
)
# A fence opens at a line start or after a space (`Answer: ```json`) and closes on a line of its own.
_FENCE = re.compile(r"(?:^|(?<=\s))(`{3,}|~{3,})[ \t]*([\w+\-.]*)[ \t]*\n(.*?)(?:\n[ \t]*\1[ \t]*(?=\n|\Z)|\Z)", re.S)
_CODE_LANGS = frozenset(
    {"python", "py", "sql", "bash", "sh", "shell", "console", "text", "txt", "go", "rust", "java", "c", "cpp"}
)
_HTML_ENTITY = re.compile(r"&(?:quot|#0*34|#x0*22|apos|#0*39|lt|gt|amp);")
_ESCAPED_QUOTES = re.compile(r'(?:^|[{\[,:])\s*\\"')


@dataclass(frozen=True)
class _Segment:
    """A region of the text that may hold the answer; `rank` breaks ties (higher wins)."""

    text: str
    label: str
    rank: int
    tier: int = 1  # 0: only consulted when nothing else yields a value (thoughts)
    variant: bool = False  # an alternative reading of the text (unescaped), not a part of it
    framed: bool = False  # the contents of a fence or an answer tag: meant to be the answer


def _unescape_once(text: str) -> str | None:
    """Undo one level of JSON string escaping (`{\\"a\\": 1}` -> `{"a": 1}`)."""
    stripped = text.strip()
    try:
        out = json.loads('"' + stripped + '"', strict=False)
    except ValueError:
        out = re.sub(r'\\(["\\/])', r"\1", stripped)
    return out if out != stripped else None


def _segments(text: str) -> list[_Segment]:
    body = _THINK.sub("\n", text)
    segments = [_Segment(body, "text", 2)]
    for m in _ANSWER_TAG.finditer(body):
        segments.append(_Segment(m.group(2), f"<{m.group(1).lower()}> block", 4, framed=True))
    for m in _FENCE.finditer(body):
        lang = m.group(2).lower()
        segments.append(_Segment(m.group(3), f"```{lang} block", 1 if lang in _CODE_LANGS else 3, framed=True))
    if _HTML_ENTITY.search(body):
        segments.append(_Segment(html.unescape(body), "HTML-unescaped text", 2, variant=True))
    if _ESCAPED_QUOTES.search(body):
        unescaped = _unescape_once(body)
        if unescaped:
            segments.append(_Segment(unescaped, "text with one level of escaping removed", 2, variant=True))
    if body != text:
        for m in _THINK.finditer(text):
            segments.append(_Segment(m.group(2), f"<{m.group(1).lower()}> block", 0, tier=0))
    return segments


def _starts(s: str) -> list[int]:
    """Where a value may start: the segment's first token, then every `{` and `[`."""
    first = _SEPARATORS.match(s, 0).end()
    if first >= len(s):
        return []
    return [first] + [m.start() for m in _CONTAINER_OPEN.finditer(s) if m.start() != first]


# --------------------------------------------------------------------------------------
# Candidates: value, provenance, quality
# --------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_LITERAL_U_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _words(text: str) -> Counter[str]:
    text = _LITERAL_U_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return Counter(w.lower() for w in _WORD.findall(text))


def coverage(source: str, value: Any) -> float:
    """Share of the source's words and numbers that survive in the value (the drift guard)."""
    wanted = _words(source)
    total = sum(wanted.values())
    if not total:
        return 1.0
    got = _words(_dumps(value))
    return sum(min(c, got[w]) for w, c in wanted.items()) / total


def is_strict_json(value: Any) -> bool:
    """True if strict JSON can carry the value: finite numbers, string keys, UTF-8 text."""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return False
        elif isinstance(v, str):
            if _SURROGATE.search(v):
                return False
        elif isinstance(v, list):
            todo.extend(v)
        elif isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                return False
            todo.extend(v.keys())
            todo.extend(v.values())
        elif not (v is None or isinstance(v, (bool, int))):
            return False
    return True


def _size(value: Any) -> int:
    """Keys and scalars in a value (how much data it carries)."""
    count, todo = 0, [value]
    while todo:
        v = todo.pop()
        count += 1
        if isinstance(v, dict):
            count += len(v)
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
    return count


def _finite(value: Any, path: str = "$", found: list[str] | None = None) -> tuple[Any, list[str]]:
    """NaN and infinities replaced by None (strict JSON has neither); the paths replaced."""
    found = [] if found is None else found
    if isinstance(value, float) and not math.isfinite(value):
        found.append(path)
        return None, found
    if isinstance(value, list):  # loops, not comprehensions: one stack frame per level of nesting
        before, items = len(found), []
        for i, v in enumerate(value):
            items.append(_finite(v, f"{path}[{i}]", found)[0])
        return (items if len(found) > before else value), found
    if isinstance(value, dict):
        before, pairs = len(found), {}
        for k, v in value.items():
            pairs[k] = _finite(v, f"{path}.{k}", found)[0]
        return (pairs if len(found) > before else value), found
    return value, found


_JSONISH_START = re.compile(r"[\[{]")
_NONFINITE_WORD = re.compile(r"\b(?:NaN|nan|-?Infinity|-?inf|Inf)\b")
_NUMBER_TOKEN = re.compile(r"[-+]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_EMPTY_STRING = re.compile(r"""""|''|\u201c\u201d|\u2018\u2019""")
_EDIT_CHANGES = {
    "completed truncated JSON": ("truncated", "closed the containers a cut-off document left open"),
    "closed a truncated string": ("truncated", "closed a string the document ended in"),
    "filled missing values": ("added", "filled a missing value with null"),
    "removed stray words between members": ("removed", "dropped words standing between members"),
}


def _edit_changes(edits: tuple[str, ...]) -> list[Change]:
    """The data changes the normaliser's edits stand for (most edits only mend syntax)."""
    return [change(*_EDIT_CHANGES[e][:1], "$", _EDIT_CHANGES[e][1]) for e in edits if e in _EDIT_CHANGES]


_OPEN_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*(")?|[\[\]{}()]', re.S)


def _ends_open(text: str) -> bool:
    """True if the text ends inside a string or with containers left open (a cut-off document)."""
    depth = 0
    for m in _OPEN_TOKEN.finditer(text):
        token = m.group()
        if token[0] == '"':
            if m.group(1) is None:
                return True
        elif token in "[{(":
            depth += 1
        else:
            depth = max(0, depth - 1)
    return depth > 0


def _library_changes(source: str, value: Any) -> list[Change]:
    """What a third-party repair did to the data, judged against its source text: values that are not
    in the text (`added`), words and numbers of the text missing from the value (`removed`), a
    document completed past the text's end (`truncated`)."""
    changes: list[Change] = []
    first = _JSONISH_START.search(source)  # prose before the value is not the value's
    if first is not None:
        source = source[first.start() :]
    words = _words(source)
    numbers = set()
    for m in _NUMBER_TOKEN.finditer(source):
        with contextlib.suppress(ValueError):
            numbers.add(float(m.group().replace("_", "")))
    empties = len(_EMPTY_STRING.findall(source))
    todo: list[tuple[Any, str]] = [(value, "$")]
    while todo and len(changes) < 20:
        v, path = todo.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                if not _in_text(k, words, source):
                    changes.append(change("added", f"{path}.{k}", "a key that is not in the text"))
                todo.append((x, f"{path}.{k}"))
        elif isinstance(v, list):
            todo.extend((x, f"{path}[{i}]") for i, x in enumerate(v))
        elif isinstance(v, str):
            if v == "":
                empties -= 1
                if empties < 0:
                    changes.append(change("added", path, "an empty string that is not in the text"))
            elif not _in_text(v, words, source):
                changes.append(change("added", path, f"a string that is not in the text ({_short(v)})"))
        elif isinstance(v, bool):
            if not ({"true", "yes"} if v else {"false", "no"}) & words.keys():
                changes.append(change("added", path, f"{str(v).lower()}, which the text does not say"))
        elif v is None:
            if not {"null", "none", "nil", "undefined", "nan", "infinity", "inf"} & words.keys():
                changes.append(change("added", path, "null, which the text does not say"))
        elif isinstance(v, (int, float)) and math.isfinite(v) and float(v) not in numbers:
            changes.append(change("added", path, f"the number {v}, which is not in the text"))
    missing = _words(_COMMENT.sub(" ", source)).keys() - _value_words(value)
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (", ..." if len(missing) > 5 else "")
        changes.append(change("removed", "$", f"{len(missing)} word(s) of the text are not in the value ({shown})"))
    if _ends_open(source):
        changes.append(change("truncated", "$", "completed a document cut off before its end"))
    return changes


_COMMENT = re.compile(r"""//[^\n]*|/\*.*?(?:\*/|$)|(?<![\w"'])#[^\n"]*|\.{3}|\u2026|`{3,}[\w+\-.]*""", re.S)


def _value_words(value: Any) -> set[str]:
    """The distinct words and numbers in a value's keys and strings (and its numbers' digits)."""
    found: set[str] = set()
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            todo.extend(v.keys())
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
        elif isinstance(v, str):
            found.update(_words(v))
        elif v is None:
            found.update(("null", "none"))
        else:
            found.update(_words(json.dumps(v)))
    return found


def _in_text(text: str, words: Counter[str], source: str) -> bool:
    found = _words(text)
    return all(w in words for w in found) if found else text in source


def _short(value: Any) -> str:
    text = _dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _decode_embedded(value: Any, schema: dict[str, Any] | None) -> tuple[Any, bool]:
    """A JSON document encoded as a top-level string, decoded (unless the schema wants a string)."""
    if not isinstance(value, str):
        return value, False
    inner = value.strip()
    if not inner or inner[0] not in "[{" or (schema is not None and not schema_errors(value, schema, limit=1)):
        return value, False
    try:  # only strict JSON: `"{a:2,}"` is a string that merely looks like JSON
        decoded = loads_strict(inner)
    except ValueError:
        return value, False
    return (decoded, True) if isinstance(decoded, (dict, list)) else (value, False)


@dataclass(frozen=True)
class _Candidate:
    value: Any
    steps: tuple[str, ...]
    errors: tuple[str, ...]
    changes: tuple[Change, ...]
    size: int
    complete: bool
    tier: int
    rank: int
    order: int
    variant: bool
    span: int  # characters of the source the value was read from (a tie-breaker)

    @property
    def fits(self) -> bool:
        return not self.errors

    def key(self) -> tuple[Any, ...]:
        return (self.fits, self.tier, self.size, self.complete, self.rank, self.span, -self.order)


def _finish(value: Any, pool: _Pool) -> tuple[Any, list[str], list[str], list[Change]]:
    """Post-process a parsed value: finite numbers, embedded documents, unicode (only in text that
    did not parse), schema coercion. Returns the value, the steps, the schema errors, the changes."""
    schema = pool.schema
    steps: list[str] = []
    changes: list[Change] = []
    value, replaced = _finite(value)
    if replaced:
        steps.append("replaced NaN/Infinity with null")
        literal = _NONFINITE_WORD.search(pool.text) is not None
        changes += [change("coerced" if literal else "removed", p,
                           "NaN/Infinity written as null" if literal else "a number beyond a double's range, "
                           "written as null") for p in replaced[:20]]
    value, changed = _decode_embedded(value, schema)
    if changed:
        steps.append("decoded a JSON document encoded as a string")
        changes.append(change("coerced", "$", "decoded a JSON document encoded as a string"))
    errors = schema_errors(value, schema)
    if pool.text_fixes or errors:
        fixed, text_steps = fix_value_text(value)
        if pool.text_fixes or not schema_errors(fixed, schema, limit=1):
            value = fixed
            steps.extend(text_steps)
            errors = schema_errors(value, schema) if text_steps else errors
    if errors:
        value, coerced = coerce_to_schema(value, schema)
        steps.extend(describe(coerced))
        changes.extend(coerced)
        errors = schema_errors(value, schema)
    return value, steps, errors, changes


def _looks_scalar(text: str) -> bool:
    """True if the text starts like a JSON scalar: a quote, a number or a literal."""
    stripped = text.lstrip()
    head = stripped[:1]
    if head in QUOTES or head.isdigit() or (head and head in "-.+"):
        return True
    word = _IDENT.match(stripped)
    return word is not None and word.group() in _LITERALS


def _repair_with_library(text: str) -> tuple[Any, tuple[str, ...]] | None:
    """json_repair on `text`, refused when nesting is too deep for its recursive parser.

    json_repair returns "" for any top-level scalar, so a text that does not open a
    container is repaired inside `[...]` and unwrapped again.
    """
    if nesting_depth(text, limit=DEFAULT_MAX_DEPTH) > DEFAULT_MAX_DEPTH:
        return None
    wrapped = text.lstrip()[:1] not in ("{", "[")
    if wrapped and not _looks_scalar(text):
        return None  # prose, not a scalar: json_repair would turn it into strings
    try:
        value, log = json_repair.repair_json(f"[{text}]" if wrapped else text, return_objects=True, logging=True)
    except Exception:  # noqa: BLE001 - a third-party parser failing on garbage is an expected outcome
        return None
    if wrapped and isinstance(value, list) and len(value) == 1:
        value = value[0]
    notes = list(dict.fromkeys(str(entry.get("text", ""))[:80] for entry in log if isinstance(entry, dict)))
    steps = tuple(f"json_repair: {note}" for note in notes[:5])
    if len(notes) > 5:
        steps += (f"json_repair: ... and {len(notes) - 5} more",)
    return value, steps


@dataclass
class _Pool:
    """Candidates gathered for one input, with what was rejected and why."""

    schema: dict[str, Any] | bool | None
    text: str = ""
    text_fixes: bool = True  # unicode fixes inside strings: only for text that did not parse as it was
    items: list[_Candidate] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)

    def add(self, value: Any, steps: tuple[str, ...], *, complete: bool, seg: _Segment, span: int = 0,
            changes: list[Change] | None = None) -> None:
        found = list(changes or ())
        value, more, errors, coerced = _finish(value, self)
        self.items.append(
            _Candidate(
                value=value,
                steps=(f"extracted from {seg.label}", *steps, *more),
                errors=tuple(errors),
                changes=tuple(found + coerced),
                size=_size(value),
                complete=complete,
                tier=seg.tier,
                rank=seg.rank,
                order=len(self.items),
                variant=seg.variant,
                span=span,
            )
        )

    def add_repaired(self, source: str, norm_text: str, edits: tuple[str, ...], seg: _Segment) -> None:
        """json_repair on the normalised text and, if that differs, on the raw source; the drift guard picks."""
        tries = [(norm_text, edits)] + ([(source, ())] if norm_text != source else [])
        best: tuple[float, Any, tuple[str, ...]] | None = None
        for text, steps in tries:
            repaired = _repair_with_library(text)
            if repaired is None:
                continue
            value, log = repaired
            kept = coverage(text, value)
            if best is None or (best[0] < MIN_COVERAGE and kept > best[0]):
                best = (kept, value, (*steps, *log))
        if best is None:
            return
        kept, value, steps = best
        if kept < MIN_COVERAGE:
            self.drift.append(f"json_repair kept only {kept:.0%} of the words and numbers in {seg.label}")
            return
        self.add(value, steps, complete=False, seg=seg, span=len(source),
                 changes=[*_edit_changes(edits), *_library_changes(source, value)])

    def best(self, policy: dict[str, str] | None = None) -> _Candidate | None:
        """The candidate carrying the most data among readings of the text itself; an
        unescaped variant only replaces it when the text alone gave no complete parse.
        Candidates whose changes the policy refuses only count when no other candidate fits."""
        allowed = [c for c in self.items if disposition(c.changes, policy) != REFUSE]
        pool = allowed if any(c.fits for c in allowed) else self.items
        originals = [c for c in pool if not c.variant]
        variants = [c for c in pool if c.variant]
        top = max(originals, key=_Candidate.key) if originals else None
        if top is not None and top.complete:
            return max([top] + [c for c in variants if c.complete], key=_Candidate.key)
        rivals = variants + ([top] if top else [])
        return max(rivals, key=lambda c: (c.fits, c.tier, c.complete, c.size, c.rank, -c.order), default=None)


_CONTAINER_OPEN = re.compile(r"[\[{]")
#: Inside prose, `[1]` or `[note]` is a citation mark, not an answer.
_FOOTNOTE = re.compile(r"\[\s*[^\]\[\"'\s,]{1,24}\s*\]")
_FENCE_LINE = re.compile(r"(?m)^[ \t]*(?:`{3,}|~{3,})[\w+\-.]*[ \t]*$")


def _collect(pool: _Pool, seg: _Segment, fenced: bool = False) -> None:
    """Add the values found in a segment. With `fenced`, spans crossing a fence line are
    left out (the fenced blocks are segments of their own)."""
    s = seg.text
    covered = -1
    starts = _starts(s)
    limit = MAX_STARTS if len(s) <= SCAN_MAX_CHARS else 3
    productive = 0
    for n, start in enumerate(starts[:MAX_ATTEMPTS]):
        if start < covered:
            continue
        if productive >= limit:
            break
        reads = _read_stream(s, start)
        head = reads[0].norm
        if not head.complete and head.tokens == 0:
            continue  # prose, or braces in prose: not a JSON value
        productive += 1
        covered = max(covered, head.end)
        if fenced and _FENCE_LINE.search(s, start, head.end):
            continue
        whole = seg.framed or (n == 0 and _reaches_end(s, reads[-1].norm.end))
        if n == 0 and s[start] not in "[{(" and not _reaches_end(s, reads[-1].norm.end):
            continue  # `3 reasons why...`: a scalar followed by prose is not an answer
        for read in reads:
            if whole or not _FOOTNOTE.fullmatch(s[read.norm.start : read.norm.end].rstrip()):
                _add_read(pool, s, read, seg)
        if head.complete and s[start] == "{" and _CONTINUED_OBJECT.match(s, head.end):
            pool.add_repaired(s[start:], s[start:], (), seg)  # `{"a": 1}, "b": 2}`: closed too early
        if len(reads) > 1 and _reaches_end(s, reads[-1].norm.end) and all(r.norm.complete for r in reads):
            values = [r.value if r.parsed else json.loads(r.norm.text) for r in reads]
            edits = tuple(dict.fromkeys(e for r in reads for e in r.norm.edits))
            kept = [v for v in values if v not in ({}, [])] or values  # `{"a": 1}, []`: empties are noise
            if len(kept) > 1:
                pool.add(kept, ("collected several JSON values into an array", *edits), complete=True, seg=seg,
                         span=reads[-1].norm.end - start, changes=_edit_changes(edits))
            covered = max(covered, reads[-1].norm.end)


def _add_read(pool: _Pool, s: str, read: _Read, seg: _Segment) -> None:
    norm = read.norm
    span = norm.end - norm.start
    if read.parsed:
        pool.add(read.value, (), complete=True, seg=seg, span=span)
        return
    if norm.complete:
        try:
            pool.add(loads_strict(norm.text), norm.edits, complete=True, seg=seg, span=span,
                     changes=_edit_changes(norm.edits))
            return
        except ValueError:
            pass
    pool.add_repaired(s[norm.start : norm.end], norm.text, norm.edits, seg)


def _candidates(text: str, schema: dict[str, Any] | bool | None, *, text_fixes: bool = True) -> _Pool:
    pool = _Pool(schema, text, text_fixes)
    segments = _segments(text)
    fenced = any(seg.label.startswith("```") for seg in segments)
    for seg in segments:
        if seg.tier == 0 and any(c.tier == 1 for c in pool.items):
            break
        _collect(pool, seg, fenced and not seg.label.startswith("```"))
    if not pool.items and (_CONTAINER_OPEN.search(text) or text.lstrip()[:1] in QUOTES):
        seg = _Segment(text, "the whole text (json_repair)", 0, tier=0)
        pool.add_repaired(text, text, (), seg)
    if isinstance(schema, dict) and not any(c.fits for c in pool.items):
        _add_schema_guided(pool, text, schema)
    return pool


def _add_schema_guided(pool: _Pool, text: str, schema: dict[str, Any]) -> None:
    """json_repair's schema mode, the last resort when no candidate fits: it also fills
    values that are missing in the text (`"count": ,`) with the schema's empty value."""
    if nesting_depth(text, limit=DEFAULT_MAX_DEPTH) > DEFAULT_MAX_DEPTH:
        return
    try:
        value = json_repair.loads(text, schema=schema)
    except Exception:  # noqa: BLE001 - json_repair raises when the schema cannot be met
        return
    seg = _Segment(text, "the whole text (json_repair schema mode)", 0, tier=0)
    pool.add(value, ("json_repair schema mode: filled missing values from the schema",), complete=False, seg=seg,
             changes=_library_changes(text, value))


# --------------------------------------------------------------------------------------
# The layers
# --------------------------------------------------------------------------------------


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "?"


def _odd_chunk(chunk: str) -> bool:
    letters = [c for c in chunk if c.isalpha()]
    scripts = {_script(c) for c in letters if ord(c) > 0x7F} | ({"LATIN"} if any(c.isascii() for c in letters) else set())
    odd = sum(1 for c in chunk if unicodedata.category(c)[0] in "SMC" and c not in QUOTES)
    return len(scripts) >= 4 or (len(chunk) >= 12 and odd > 0.3 * len(chunk))


def _noisy_text(text: str) -> bool:
    """True if most 32-character stretches of the text mix many scripts or are mostly symbols (random bytes)."""
    if text.isascii():
        return False
    chunks = [text[i : i + 32] for i in range(0, min(len(text), 2048), 32)]
    return sum(_odd_chunk(c) for c in chunks) * 2 >= len(chunks)


def noise(value: Any) -> str | None:
    """Why a repaired value reads as noise rather than data, or None: strings that mix many scripts
    (`ዠᡸī>⒜w.▱`), or are mostly symbols, marks and control characters. Real text in any language uses few
    scripts per string; a JSON value read out of random bytes does not."""
    todo, looked = [value], 0
    while todo and looked < 200:
        v = todo.pop()
        if isinstance(v, dict):
            todo.extend(v.keys())
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
        elif isinstance(v, str) and len(v) >= 6 and not v.isascii():
            looked += 1
            letters = [c for c in v if c.isalpha()]
            scripts = {_script(c) for c in letters if ord(c) > 0x7F} | ({"LATIN"} if any(c.isascii() for c in letters)
                                                                           else set())
            odd = sum(1 for c in v if unicodedata.category(c)[0] in "SMC" or unicodedata.category(c) == "Cn")
            if len(scripts) >= 5 or odd > 0.3 * len(v):
                return f"a string mixes {len(scripts)} scripts and {odd} symbol or control characters in {len(v)}"
    return None


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
    as_given: bool,
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
            second = _accept(fixed, (*steps, *fixes), schema, text=_dumps(fixed))
            if second.ok or not as_given:
                return second
    return first


def _schema_or_reason(schema: Any) -> tuple[dict[str, Any] | bool | None, str | None]:
    """The schema as a checked JSON Schema (pydantic models converted), or why not."""
    try:
        return load_schema(schema), None
    except InvalidSchema as exc:
        return None, str(exc)


def _bounded(layer: Any) -> Any:
    """A layer that turns a schema it cannot evaluate (a pattern past its deadline, an unresolvable
    reference) into a failed Outcome saying so, instead of raising."""

    @functools.wraps(layer)
    def run(text: str, schema: Any = None, **kwargs: Any) -> Outcome:
        try:
            return layer(text, schema, **kwargs)
        except InvalidSchema as exc:
            return Outcome(False, reason=str(exc))

    return run


@_bounded
def unicode_layer(
    text: str,
    schema: Any = None,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    policy: dict[str, str] | None = None,
) -> Outcome:
    """The `unicode_fix` layer: unicode-level fixes only, accepted only by a strict parse.

    Strict JSON that fits the schema comes back as given, byte for byte. Otherwise BOMs,
    invisible and odd spaces and smart quotes used as quotes are fixed, then the original
    system's encoder round-trips are tried; literal `\\uXXXX` sequences and mojibake inside
    strings are decoded in text that needed those fixes, or where that makes the value fit.
    Never raises.
    """
    limits = {"max_chars": max_chars, "max_depth": max_depth}
    if not isinstance(text, str):
        return Outcome(False, reason=f"expected text, got {type(text).__name__}")
    schema, problem = _schema_or_reason(schema)
    if problem:
        return Outcome(False, reason=problem)
    first = _strict_candidate(text, schema, (), limits, as_given=True)
    if first.ok or first.errors or len(text) > max_chars:
        return first
    fixed = fix_text(text)
    attempts = [(fixed.text, fixed.steps)] if fixed.steps else []
    attempts += [(t, (*fixed.steps, f"{name} round-trip")) for name, t in encoder_round_trips(fixed.text)]
    last = first
    for candidate, steps in attempts:
        if "ascii round-trip" in steps and not _junk_only(fixed.text, candidate):
            continue
        last = _strict_candidate(candidate, schema, steps, limits, as_given=False)
        if last.ok:
            return last
    return Outcome(False, steps=last.steps, reason=last.reason, errors=last.errors)


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
) -> Outcome:
    """The `parser_fix` layer: extraction, lenient normalisation, json_repair, schema coercion.

    Candidates come from the text, its fenced blocks, answer tags and escaped or
    HTML-escaped variants (`<think>` blocks only as a last resort); each is read strictly,
    then by the normaliser, then by json_repair behind a drift guard. The best candidate
    (fits the schema, carries the most data) wins. ok only for strict JSON that fits the
    schema and whose changes to the data (`Outcome.changes`) the policy does not refuse;
    `degraded` when it accepts them only as such. Never raises.
    """
    if not isinstance(text, str):
        return Outcome(False, reason=f"expected text, got {type(text).__name__}")
    if len(text) > max_chars:
        return Outcome(False, reason=f"input is {len(text):,} characters, over the {max_chars:,} limit")
    schema, problem = _schema_or_reason(schema)
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
    first = unicode_layer(text, loaded)
    if first.ok:
        return first.value
    second = parser_layer(text, loaded, policy=policy)
    if second.ok:
        return second.value
    raise ValueError(second.reason)
