"""The lenient normaliser: JSON-ish text -> strict JSON text, or a confident prefix; reading values out of a text."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from kgot_errors.repair._strict import _DEPTH_TOKEN
from kgot_errors.repair._strict import DECODER as _DECODER
from kgot_errors.repair._strict import dumps as _dumps
from kgot_errors.repair._unicode import DOUBLE_QUOTES, SINGLE_QUOTES, ZERO_WIDTH, closes_string, string_end

MAX_STREAM = 10_000

QUOTES = DOUBLE_QUOTES + SINGLE_QUOTES


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
#: Escapes read pairwise from the left (`\\d` is an escaped backslash and a `d`); `\u` and four hex digits is one.
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.?)", re.S)
_KEPT_ESCAPES = frozenset(_JSON_ESCAPES) | frozenset(QUOTES)
_LETTER_ESCAPES = frozenset("bfnrt")
#: `\n\n`, `\n-`, `\t1`: a letter escape before what starts no word (a path's or LaTeX's `\new`, `\frac` do).
_ESCAPED_BREAK = re.compile(r"\\[bfnrt](?![A-Za-z])")


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
    """The body of a double-quoted string made valid: bad escapes and raw controls fixed. A string with an
    escape JSON does not have (`C:\\new\\docs`, `\\frac{a}\\alpha`) and none that only escaping writes (`\\\\`,
    `\\"`, `\\/`, `\\u00e9`, a `\\n` before no word) was written without escaping: its `\\n`, `\\t`, `\\b`, `\\f`, `\\r`
    are a backslash and a letter too. (A bad escape in an escaped string, `\\"^\\d\\"`, `Best,\\n\\nAnn\\`, leaves its
    other escapes as they are.)"""
    if not _NEEDS_CLEANING.search(body):
        return body, False
    literal = False
    if "\\" in body:
        escapes = {m.group(1) for m in _ESCAPE.finditer(body)}
        invalid = {e for e in escapes if e not in _KEPT_ESCAPES and len(e) != 5}
        literal = bool(invalid) and escapes - invalid <= _LETTER_ESCAPES and not _ESCAPED_BREAK.search(body)
    out: list[str] = []
    k, n = 0, len(body)
    while k < n:
        ch = body[k]
        if ch == "\\":
            nxt = body[k + 1] if k + 1 < n else ""
            if nxt and nxt in _JSON_ESCAPES and not (literal and nxt in _LETTER_ESCAPES):
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
        split = _key_missing_end_quote(s, self.i) if c == '"' else None
        if split is not None:
            name, self.i = split
            text = _dumps(name)
            self.note("closed keys missing their end quote")
        elif c in QUOTES:
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
        if split is not None:
            self.out.append(":")
            self.objects[-1][1] += 1
            return _VALUE
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
            closed = closes_string(s, end + 1, extra)
            document = -1 if key or closed else _quoted_document_end(s, i, extra)
            if document > 0:  # `"{"q": "x"}"`: a JSON document quoted without escaping its quotes is one string
                self.i = document + 1
                self.note("kept a JSON document quoted without escapes as a string")
                return _dumps(s[i + 1 : document])
            if not (closed or (key and _value_follows(s, end + 1))):
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


def _quoted_document_end(s: str, i: int, extra: str) -> int:
    """For `"` at `i` followed by a strict JSON container and a quote that closes the string: that quote's index."""
    if s[i + 1 : i + 2] not in ("{", "["):
        return -1
    end = _valid_container_end(s, i + 1)
    return end if 0 < end < len(s) and s[end] == '"' and closes_string(s, end + 1, extra) else -1


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


_KEY_THEN_COLON = re.compile(r'"([^"\\\n:{}\[\],]{1,80}?)\s*:\s*"')


def _key_missing_end_quote(s: str, i: int) -> tuple[str, int] | None:
    """`"a: "4"`: a key that lost its end quote before its colon and a quoted value: the key's name and where
    the value starts (`"a: ": 1`, a key ending in a colon, has no closed string after it)."""
    m = _KEY_THEN_COLON.match(s, i)
    if m is None or not (name := m.group(1).strip()):
        return None
    value = m.end() - 1
    end = string_end(s, value, lenient=False)
    return (name, value) if end >= 0 and closes_string(s, end + 1) else None


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

