"""Strict JSON: parsing that refuses NaN/Infinity and over-long or over-deep input, and what strict JSON can carry."""

from __future__ import annotations

import ast
import json
import math
import re
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_DEPTH", "InputTooLarge", "NonFiniteNumber", "dumps", "is_strict_json",
           "loads_strict", "nesting_depth", "number_too_long"]

DEFAULT_MAX_DEPTH = 512
DEFAULT_MAX_CHARS = 8_000_000


class InputTooLarge(ValueError):
    """The text is longer or nested deeper than the limits allow."""


class NonFiniteNumber(ValueError):
    """Strict JSON has no NaN, Infinity or -Infinity."""



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


_DIGITS = re.compile(r"\d+")


def number_too_long(text: str) -> str | None:
    """Why the text cannot be read as JSON, if it holds an integer longer than Python converts from digits
    (`sys.get_int_max_str_digits()`, a guard against quadratic-time conversion): json.loads refuses it, and a
    repair would turn it into a string. Digits inside a string or a fraction are not such an integer."""
    limit = sys.get_int_max_str_digits()
    if not limit or len(text) <= limit:
        return None
    for m in _DIGITS.finditer(text):
        digits = m.end() - m.start()
        if digits <= limit:
            continue
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end()] if m.end() < len(text) else " "
        if before in "\"'._" or before.isalpha() or after in "\"'._eE" or after.isalpha():
            continue
        return (f"the text holds an integer of {digits:,} digits, more than Python converts ({limit:,}; "
                "sys.set_int_max_str_digits raises it): it cannot be read as a number")
    return None


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


def loads_strict(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH, max_chars: int = DEFAULT_MAX_CHARS,
                 lost: list[str] | None = None) -> Any:
    """json.loads that rejects NaN/Infinity (literals or overflowing numbers) and over-long or over-deep
    input (ValueErrors). With `lost`, the keys an object repeats with another value are appended to it (JSON
    keeps the last value: the others are lost)."""
    _check_size(text, max_chars, max_depth)
    if text.startswith("\ufeff"):  # as json.loads says it (the decoder below does not check)
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    decoder = DECODER if lost is None else _counting_decoder(lost)
    try:
        return decoder.decode(text)  # DECODER: one decoder, not a new one per call as json.loads(parse_...=) makes
    except RecursionError as exc:  # pragma: no cover - the depth check comes first
        raise InputTooLarge("input nests too deeply") from exc


_KEY_END = re.compile(r'"\s*:')


def objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in a parsed value (depth first, without recursion)."""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            yield v
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)


def lost_keys(text: str, value: Any) -> list[str]:
    """The keys strict JSON `text` repeats in one object with another value (`value`, its json.loads, kept the
    last). A count decides for most texts: one holding no more `":` than its value has keys repeats none."""
    if len(_KEY_END.findall(text)) <= sum(len(obj) for obj in objects(value)):
        return []
    lost: list[str] = []
    loads_strict(text, lost=lost)
    return lost


def _counting_decoder(lost: list[str]) -> json.JSONDecoder:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) < len(items):
            lost.extend(dict.fromkeys(k for k, v in items if obj[k] != v or type(obj[k]) is not type(v)))
        return obj

    return json.JSONDecoder(object_pairs_hook=pairs, parse_constant=_reject_constant, parse_float=_finite_float)



def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_strict_json(value: Any) -> bool:
    """True if strict JSON can carry the value: finite numbers, string keys, UTF-8 text."""
    todo = [value]
    pop, extend = todo.pop, todo.extend
    while todo:
        v = pop()
        kind = type(v)  # the exact JSON types first: a parsed value holds nothing else
        if kind is str:
            if not v.isascii() and _SURROGATE.search(v):
                return False
        elif kind is dict:
            for k in v:
                if type(k) is not str and not isinstance(k, str):
                    return False
            extend(v.keys())
            extend(v.values())
        elif kind is list:
            extend(v)
        elif kind is float:
            if not math.isfinite(v):
                return False
        elif v is None or kind is int or kind is bool:
            continue
        elif isinstance(v, float):
            if not math.isfinite(v):
                return False
        elif isinstance(v, str):
            if _SURROGATE.search(v):
                return False
        elif isinstance(v, list):
            extend(v)
        elif isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                return False
            extend(v.keys())
            extend(v.values())
        elif not isinstance(v, (bool, int)):
            return False
    return True


def _all_finite(value: Any) -> bool:
    """True if no float in the value is NaN or infinite (cheap: no paths built)."""
    todo = [value]
    pop, extend = todo.pop, todo.extend
    while todo:
        v = pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return False
        elif isinstance(v, list):
            extend(v)
        elif isinstance(v, dict):
            extend(v.values())
    return True


def _finite(value: Any, path: str = "$", found: list[str] | None = None) -> tuple[Any, list[str]]:
    """NaN and infinities replaced by None (strict JSON has neither); the paths replaced."""
    if found is None and _all_finite(value):
        return value, []
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


FENCE = re.compile(r"(?:^|\n)[ \t]*(`{3,}|~{3,})[ \t]*([\w+\-.]*)[ \t]*\n(.*?)(?:\n[ \t]*\1|\Z)", re.S)
OPENING_FENCE = re.compile(r"(`{3,}|~{3,})[ \t]*[\w+\-.]*[ \t]*\n")
SNIFF_PARSE_CHARS = 200_000
DATA_NODES = (ast.Expression, ast.Expr, ast.Module, ast.Dict, ast.List, ast.Set, ast.Tuple, ast.Constant, ast.Name,
               ast.UnaryOp, ast.BinOp, ast.Load, ast.operator, ast.unaryop, ast.JoinedStr, ast.FormattedValue)


_STATEMENT_STARTS = ("import ", "from ", "def ", "class ", "for ", "while ", "if ", "with ", "try:", "return", "raise",
                     "async ", "del ", "global ", "assert ", "match ", "@")
"""How a top-level statement without `=` starts (a line, or after a `;`): a text with none of these and no `=` is
not a program."""
_STATEMENT_SPLIT = re.compile(r"[\n;]").split


_LITERAL_NAMES = frozenset({"null", "true", "false", "NaN", "Infinity", "undefined", "nil", "none"})
"""Names Python reads where JSON (or a JavaScript-ish answer) writes a value: not an echoed variable."""


def _is_data(node: ast.AST | None) -> bool:
    """True if the expression is made of literals and names only: no call, attribute, subscript or comprehension."""
    return node is not None and all(isinstance(n, DATA_NODES) for n in ast.walk(node))


def program_not_data(text: str) -> str | None:
    """Why `text`, handed to JSON repair, is a program and not data: the whole text (or its one ```python block)
    parses as Python with a statement that does something (assigns, imports, defines, loops...). Picking literals
    out of it invents a value (`x = {'a': 1}; print(x)` read as [{"a": 1}, "x"]). None for anything else: a lone
    `name = <literal>` (the literal is the answer), expressions (`callback([...])`), `Label: {...}`, text."""
    body = text.strip().lstrip("\ufeff").strip()
    whole = FENCE.match(body) if OPENING_FENCE.match(body) else None
    if whole is not None and whole.end() == len(body) and whole.group(2).lower() in ("", "python", "py", "python3"):
        body = whole.group(3).strip()
    if not (body[:1].isidentifier() or body[:1] in "@#") or len(body) > SNIFF_PARSE_CHARS:
        return None
    if "=" not in body and not any(piece.lstrip().startswith(_STATEMENT_STARTS) for piece in _STATEMENT_SPLIT(body)):
        return None  # not worth a parse
    try:
        tree = ast.parse(body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    doing = [n for n in tree.body if not isinstance(n, ast.Expr | ast.Pass)
             and not (isinstance(n, ast.AnnAssign) and n.value is None)]  # `Answer: {...}` is a label, not code
    if not doing:
        return None
    lone = doing[0] if len(doing) == 1 and isinstance(doing[0], ast.Assign | ast.AnnAssign) else None
    echoes = (n.value for n in tree.body if isinstance(n, ast.Expr))
    if lone is not None and _is_data(lone.value) and all(isinstance(e, ast.Name) and e.id not in _LITERAL_NAMES
                                                         for e in echoes):
        return None  # one binding to a literal; around it only bare names (`json`, an echoed `result`)
    line = (ast.get_source_segment(body, doing[0]) or type(doing[0]).__name__).splitlines()[0][:100]
    return (f"the content is Python code, not JSON (line {doing[0].lineno}: {line}): it holds no JSON value to "
            "repair, and literals picked out of it would be invented data")
