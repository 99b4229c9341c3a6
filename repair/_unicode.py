"""Unicode repair of LLM output: BOMs, odd spaces, smart quotes as JSON quotes, mojibake, literal \\uXXXX."""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from typing import Any

from kgot_errors.repair._outcome import Change, change

__all__ = [
    "DOUBLE_QUOTES",
    "SINGLE_QUOTES",
    "TextFix",
    "closes_string",
    "encoder_round_trips",
    "fix_text",
    "fix_value_text",
    "string_end",
]

BOM = "\ufeff"
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u180e"
ODD_SPACES = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
LINE_SEPARATORS = "\u2028\u2029\u0085"
# Quote characters by family: a string opened by one member may be closed by any member.
DOUBLE_QUOTES = '"\u201c\u201d\u201e\u201f\u2033'
SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b\u00b4`"
SMART_QUOTES = "\u201c\u201d\u201e\u201f\u2033\u2018\u2019\u201a\u201b\u00b4"
STRUCTURAL_AFTER_STRING = ",:}]"

_OUTSIDE_FIXES = str.maketrans(
    {**{c: "" for c in ZERO_WIDTH}, **{c: " " for c in ODD_SPACES}, **{c: "\n" for c in LINE_SEPARATORS}}
)
_SUSPECT = re.compile(f"[{ZERO_WIDTH}{ODD_SPACES}{LINE_SEPARATORS}{SMART_QUOTES}]")
_LITERAL_U = re.compile(r"(?:\\u[0-9a-fA-F]{4})+")
_DOUBLE_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_CLOSER_TRIES = 64


@functools.cache
def _ftfy() -> Any:
    """ftfy.fix_text with this module's configuration; ftfy (and its tables) load on first non-ASCII string."""
    import ftfy

    config = ftfy.TextFixerConfig(
        unescape_html=False,
        remove_terminal_escapes=False,
        fix_latin_ligatures=False,
        fix_character_width=False,
        uncurl_quotes=False,
        fix_line_breaks=False,
        fix_surrogates=False,
        remove_control_chars=False,
        normalization=None,
    )
    return functools.partial(ftfy.fix_text, config=config)


@dataclass(frozen=True)
class TextFix:
    """A repaired text and the names of the fixes applied to it (empty when unchanged)."""

    text: str
    steps: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------
# String boundaries (shared with the JSON normaliser)
# --------------------------------------------------------------------------------------


def closes_string(text: str, after: int, extra: str = "") -> bool:
    """True if a quote ending just before `after` plausibly closes a JSON string.

    It does when what follows (spaces, newlines and comments skipped) is structural
    (`, : } ]` and any of `extra`), a `+` (string concatenation), the end of the text, or,
    after at least one space, the start of another string (a missing comma or colon).
    """
    n = len(text)
    i = after
    while True:
        while i < n and (text[i].isspace() or text[i] in ZERO_WIDTH):
            i += 1
        if text.startswith("//", i) or text.startswith("/*", i):
            end = text.find("\n" if text[i + 1] == "/" else "*/", i + 2)
            if end < 0:
                return True
            i = end + (1 if text[i + 1] == "/" else 2)
            continue
        if i > after and i < n and text[i] == "#":
            end = text.find("\n", i)
            if end < 0:
                return True
            i = end + 1
            continue
        break
    if i >= n:
        return True
    c = text[i]
    if c in STRUCTURAL_AFTER_STRING or c in extra or c == "+":
        return True
    return i > after and (c in DOUBLE_QUOTES or c in SINGLE_QUOTES)


def string_end(text: str, start: int, *, lenient: bool) -> int:
    """Index of the quote closing the string opened at `start`, or -1 if it is never closed.

    Strict (ASCII double quote, not lenient): the first unescaped `"`. Lenient: the first
    closer of the opener's family that `closes_string`; failing that, the first closer.
    """
    opener = text[start]
    if opener == '"' and not lenient:
        m = _DOUBLE_QUOTED.match(text, start)
        return m.end() - 1 if m else -1
    family = DOUBLE_QUOTES if opener in DOUBLE_QUOTES else SINGLE_QUOTES
    closers = '"' if opener == '"' and not lenient else family
    first = -1
    tries = 0
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in closers:
            if not lenient:
                return i
            if first < 0:
                first = i
            if closes_string(text, i + 1):
                return i
            tries += 1
            if tries > _MAX_CLOSER_TRIES:
                break
        i += 1
    return first


def _token_start(text: str, i: int) -> bool:
    """True if position `i` is where a JSON token may start (after `{ [ , :` or at the start)."""
    j = i - 1
    while j >= 0 and (text[j].isspace() or text[j] in ZERO_WIDTH):
        j -= 1
    return j < 0 or text[j] in "{[,:("


def _segments(text: str, smart: bool) -> list[tuple[bool, int, int]]:
    """Split text into (is_string, start, end) pieces; strings include their quotes."""
    pieces: list[tuple[bool, int, int]] = []
    n = len(text)
    i = last = 0
    while i < n:
        c = text[i]
        opens = c == '"' or (
            (c == "'" or (smart and c in SMART_QUOTES)) and _token_start(text, i)
        )
        if not opens:
            i += 1
            continue
        end = string_end(text, i, lenient=smart or c != '"')
        if end < 0:
            break
        if i > last:
            pieces.append((False, last, i))
        pieces.append((True, i, end + 1))
        i = last = end + 1
    if last < n:
        pieces.append((False, last, n))
    return pieces


def _uses_smart_quotes(text: str, pieces: list[tuple[bool, int, int]]) -> bool:
    """True if a smart quote stands where a JSON string would start, outside strings."""
    for is_string, start, end in pieces:
        if is_string:
            continue
        for k in range(start, end):
            if text[k] in SMART_QUOTES and _token_start(text, k):
                return True
    return False


def _requote(piece: str) -> str:
    """Turn a string delimited by smart (or mixed) quotes into a JSON double-quoted string."""
    body = piece[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(body[i : i + 2])
            i += 2
            continue
        out.append('\\"' if c == '"' else c)
        i += 1
    return '"' + "".join(out) + '"'


# --------------------------------------------------------------------------------------
# Public text fixes
# --------------------------------------------------------------------------------------


_MEMO_CHARS = 65_536
_last_fix: tuple[str, TextFix] | None = None


def fix_text(text: str) -> TextFix:
    """Repair unicode damage that breaks JSON syntax; string contents are left alone.

    Removes BOMs and zero-width characters and turns odd spaces into plain ones outside
    strings, and replaces smart quotes used as JSON string delimiters with `"` (smart quotes
    inside string content stay). The last result is kept for the same text object (both layers
    fix the same text; texts up to 64 Ki characters are kept).
    """
    global _last_fix
    last = _last_fix
    if last is not None and last[0] is text:
        return last[1]
    fixed = _fix_text(text)
    if len(text) <= _MEMO_CHARS:
        _last_fix = (text, fixed)
    return fixed


def _fix_text(text: str) -> TextFix:
    steps: list[str] = []
    stripped = text.lstrip(BOM)
    if stripped != text:
        steps.append("removed BOM")
    if not _SUSPECT.search(stripped):
        return TextFix(stripped, tuple(steps))
    pieces = _segments(stripped, smart=False)
    smart = _uses_smart_quotes(stripped, pieces)
    if smart:
        pieces = _segments(stripped, smart=True)
    out: list[str] = []
    spaces = quotes = False
    for is_string, start, end in pieces:
        piece = stripped[start:end]
        if not is_string:
            fixed = piece.translate(_OUTSIDE_FIXES)
            spaces |= fixed != piece
            out.append(fixed)
        elif smart and (piece[0] != '"' or piece[-1] != '"') and (
            piece[0] in DOUBLE_QUOTES or piece[0] in SMART_QUOTES
        ):
            out.append(_requote(piece))
            quotes = True
        else:
            out.append(piece)
    if spaces:
        steps.append("removed zero-width characters and odd spaces outside strings")
    if quotes:
        steps.append("replaced smart quotes used as JSON quotes")
    return TextFix("".join(out), tuple(steps))


LONE_SURROGATES = "replaced lone surrogates with U+FFFD"
"""The text fix that loses data: a `\\udXXX` escape no UTF-8 text can carry, replaced (a `removed` change)."""


def _decode_literal_escapes(match: re.Match[str]) -> str:
    """A run of literal \\uXXXX escapes decoded, if it encodes non-ASCII text.

    An encoder escaping twice (ensure_ascii) only writes \\uXXXX for non-ASCII characters,
    so a literal `\\u0041` is left alone (it is more likely meant literally).
    """
    run = match.group(0)
    try:
        decoded = run.encode("ascii").decode("unicode_escape")
        decoded = decoded.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeError:
        return run
    return run if decoded.isascii() else decoded


def _fix_surrogates(s: str) -> tuple[str, list[str]]:
    if _SURROGATE.search(s):
        fixed = s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        if fixed != s:
            return fixed, [LONE_SURROGATES]
    return s, []


def _fix_string(s: str) -> tuple[str, list[str]]:
    s, steps = _fix_surrogates(s)
    if "\\u" in s:
        decoded = _LITERAL_U.sub(_decode_literal_escapes, s)
        if decoded != s:
            s = decoded
            steps.append("decoded literal \\uXXXX escapes")
    if not s.isascii():
        fixed = _ftfy()(s)
        if fixed != s:
            s = fixed
            steps.append("fixed mojibake (ftfy)")
    return s, steps


def surrogate_changes(steps: tuple[str, ...] | list[str]) -> list[Change]:
    """The data change among fix_value_text's steps: lone surrogates replaced (the other fixes restore text)."""
    if LONE_SURROGATES not in steps:
        return []
    return [change("removed", "$", "lone surrogate escapes (\\udXXX), which no UTF-8 text can carry, replaced with "
                   "U+FFFD")]


def fix_value_text(value: Any, *, surrogates_only: bool = False) -> tuple[Any, tuple[str, ...]]:
    """Fix unicode damage inside a decoded JSON value's strings (keys included).

    Decodes literal `\\uXXXX` sequences of non-ASCII text (a double-escape artifact),
    repairs mojibake with ftfy (curly quotes and other legitimate characters are kept) and
    replaces lone surrogates, which no UTF-8 text can carry (with `surrogates_only`, only that).
    Returns the value (the same object when nothing changed) and the steps taken.
    """
    found: list[str] = []
    fix = _fix_surrogates if surrogates_only else _fix_string

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            fixed, steps = fix(v)
            found.extend(steps)
            return fixed
        if isinstance(v, list):  # loops, not comprehensions: one stack frame per level of nesting
            items = []
            for x in v:
                items.append(walk(x))
            return v if all(a is b for a, b in zip(items, v, strict=True)) else items
        if isinstance(v, dict):
            pairs = []
            for k, x in v.items():
                pairs.append((walk(k), walk(x)))
            same = all(k2 is k and x2 is x for (k2, x2), (k, x) in zip(pairs, v.items(), strict=True))
            return v if same else dict(pairs)
        return v

    result = walk(value)
    return result, tuple(dict.fromkeys(found))


def encoder_round_trips(text: str) -> list[tuple[str, str]]:
    """The original system's encoder round-trips as (name, text) candidates; never raises.

    Each candidate differs from `text`; none is trusted: the caller must validate it.
    """
    if text.isascii() and "\\" not in text:
        return []  # every round-trip gives ASCII text without escapes back as it is
    trips = (
        ("unicode_escape", lambda t: t.encode("latin-1", "backslashreplace").decode("unicode_escape")),
        ("utf-8", lambda t: t.encode("utf-8", "ignore").decode("utf-8")),
        ("ascii", lambda t: t.encode("ascii", "ignore").decode("ascii")),
        ("latin-1", lambda t: t.encode("latin-1").decode("utf-8")),
    )
    out: list[tuple[str, str]] = []
    for name, trip in trips:
        try:
            with warnings.catch_warnings():  # unicode_escape warns about invalid escapes like \\d
                warnings.simplefilter("ignore", DeprecationWarning)
                candidate = trip(text)
        except (UnicodeError, ValueError):
            continue
        if candidate != text and (name, candidate) not in out:
            out.append((name, candidate))
    return out
