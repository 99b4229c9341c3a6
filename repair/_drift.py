"""The drift guard: what a third-party repair kept of the text, what it invented or dropped, and noise."""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from kgot_errors.repair._normalise import QUOTES
from kgot_errors.repair._outcome import Change, change
from kgot_errors.repair._strict import dumps as _dumps
from kgot_errors.repair._strict import loads_strict, objects

#: A json_repair result must keep at least this share of its input's words and numbers.
MIN_COVERAGE = 0.6

_WORD = re.compile(r"[^\W_]+")
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([nrtbf\"\\/]))")  # JSON's escapes (others stay as written)
_ESCAPED = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _unescape(m: re.Match[str]) -> str:
    return chr(int(m.group(1), 16)) if m.group(1) else _ESCAPED.get(m.group(2), m.group(2))


def _words(text: str) -> Counter[str]:
    """The words and numbers of a text, lowercased, with their counts; escapes read as what they stand for."""
    if "\\" in text:
        text = _ESCAPE.sub(_unescape, text)
    return _plain_words(text)


def _plain_words(text: str) -> Counter[str]:
    """The words and numbers of a decoded string (a value's), lowercased, with their counts."""
    return Counter(w.lower() for w in _WORD.findall(text))


def coverage(source: str, value: Any) -> float:
    """Share of the source's words and numbers that survive in the value (the drift guard)."""
    wanted = _words(source)
    total = sum(wanted.values())
    if not total:
        return 1.0
    got = _words(_dumps(value))
    return sum(min(c, got[w]) for w, c in wanted.items()) / total



_JSONISH_START = re.compile(r"[\[{]")
_NUMBER_TOKEN = re.compile(r"[-+]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_EMPTY_STRING = re.compile(r"""""|''|\u201c\u201d|\u2018\u2019""")
_EDIT_CHANGES = {
    "completed truncated JSON": ("truncated", "closed the containers a cut-off document left open"),
    "closed a truncated string": ("truncated", "closed a string the document ended in"),
    "filled missing values": ("added", "filled a missing value with null"),
    "removed stray words between members": ("removed", "dropped words standing between members"),
    "replaced NaN/Infinity with null": ("coerced", "NaN/Infinity written as null (strict JSON has neither)"),
}


_QUOTE_EDITS = ("escaped quotes inside strings", "closed strings missing their end quote", "inserted missing colons")


def _edit_changes(edits: tuple[str, ...], value: Any = None, source: str = "") -> list[Change]:
    """The data changes the normaliser's edits stand for (most edits only mend syntax). With the value read and
    its source: the quote edits' guesses that went wrong, a key or string holding quoted members (`b: "Paris,
    France", "c`, from escaping quotes that closed strings) or an empty string the text does not have."""
    changes = [change(*_EDIT_CHANGES[e][:1], "$", _EDIT_CHANGES[e][1]) for e in edits if e in _EDIT_CHANGES]
    if value is None:
        return changes
    if any(e in edits for e in _TRUNCATING):
        changes += _members_lost(source, value)
    if not any(e in edits for e in _QUOTE_EDITS):
        return changes
    empties = len(_EMPTY_STRING.findall(source))
    written = _Escaped(source)
    keys = set().union(*objects(value))
    for v in _leaves(value):
        if len(changes) >= 20:
            break
        if isinstance(v, str):
            if v == "":
                empties -= 1
                if empties < 0:
                    changes.append(change("added", "$", "an empty string that is not in the text"))
            elif (_MEMBERS.search(v) or (v in keys and _KEY_MEMBERS.search(v))) and not written.holds(v) \
                    and not _quoted_document(v, source):
                changes.append(change("added", "$", f"members read into one string by its quotes ({_short(v)})"))
    return changes


_TRUNCATING = ("closed a truncated string", "completed truncated JSON")


def _members_lost(source: str, value: Any) -> list[Change]:
    """A `removed` change when a read the text's end cut off drops whole members the text writes before that end
    (`'loss": 2.2}, "epochs": 11, ...` read as one string that runs to the end): a member written out in full (a key,
    its value, then `,` or `}`, after `{` or `,`) whose key the value lacks is not the cut-off tail. (A dangling
    `"next":` is.)"""
    held = Counter(k for obj in objects(value) for k in obj)
    lost = []
    for m in _WHOLE_MEMBER.finditer(source):
        key = m.group(2)
        if "\\" in key:
            key = _ESCAPE.sub(_unescape, key)
        if held[key] > 0:
            held[key] -= 1  # one member of the text, one key of the value (arrays of objects repeat keys)
        else:
            lost.append(key)
    if not lost:
        return []
    return [change("removed", "$", f"{len(lost)} member(s) the text writes out in full are not in the value "
                                   f"({', '.join(_short(k) for k in lost[:3])}{', ...' if len(lost) > 3 else ''})")]


_KEY_MEMBERS = re.compile(r"""[,:]\s*[\[{]?\s*["']""")
"""A key holding a separator and a quote (`age: 30, "email`, `start: 42}, {"text`): the key swallowed the members
after it."""


class _Escaped:
    """Whether the text writes a string with its quotes escaped (`"{\\"q\\": \\"x\\"}"`): quotes and separators inside
    such a string are its content, not members. At most LOOKS searches of the text; past them, no."""

    LOOKS = 200

    def __init__(self, source: str) -> None:
        self.source, self.looks = source, self.LOOKS if "\\" in source else 0

    def holds(self, value: str) -> bool:
        if self.looks <= 0:
            return False
        self.looks -= 1
        return _dumps(value)[1:-1] in self.source


def _quoted_document(value: str, source: str) -> bool:
    """Whether the text quotes the string as a JSON document without escaping its quotes (`"{"q": "x"}"`, tool-call
    arguments): the members inside are the string's content."""
    if value[:1] not in ("{", "[") or f'"{value}"' not in source:
        return False
    try:
        return isinstance(loads_strict(value), (dict, list))
    except ValueError:
        return False


_MEMBER = re.compile(r"""(["'])((?:[^"'\\\n]|\\.){1,200})\1\s*:\s*(?:"(?:[^"\\\n]|\\.){0,400}"|'(?:[^'\\\n]|\\.){0,400}'"""
                     r"""|-?\d[\d.eE+-]*|true|false|null|True|False|None)(?=\s*[,}])""")


_WHOLE_MEMBER = re.compile(r"""[{,]\s*(["'])((?:[^"'\\\n]|\\.){1,200})\1\s*:\s*(?:[\[{]|(?:"(?:[^"\\\n]|\\.){0,400}"|"""
                           r"""'(?:[^'\\\n]|\\.){0,400}'|-?\d[\d.eE+-]*|true|false|null|True|False|None)(?=\s*[,}]))""")
"""A member as it stands in an object, after `{` or `,` (not a quote pairing across strings, `"a": ": 2}`): its key,
then a container's opening bracket, a quoted string, or a number or literal followed by `,` or `}`."""


def _repeated_members(source: str) -> Counter[str]:
    """The words of members one object of the text repeats word for word (`{"k": "v", "k": "v"}`): reading one
    loses nothing. (The same member in two objects, `[{"k": "v"}, {"k": "v"}]`, is two members.)"""
    seen: set[tuple[str, int]] = set()
    extra: Counter[str] = Counter()
    within = _containers_of(source)
    for m in _MEMBER.finditer(source):
        member = (m.group(), within(m.start()))
        if member in seen:
            extra.update(_words(member[0]))
        seen.add(member)
    return extra


def _containers_of(text: str) -> Callable[[int], int]:
    """Which container of the text a position lies in (the offset of its opening bracket, -1 for none), from one
    pass over the text's brackets outside double-quoted strings."""
    stack, starts, opened = [-1], [0], [-1]
    for m in _OPEN_TOKEN.finditer(text):
        c = m.group()[0]
        if c in "[{(":
            stack.append(m.start())
        elif c in "]})":
            if len(stack) > 1:
                stack.pop()
        else:
            continue
        starts.append(m.end())
        opened.append(stack[-1])
    return lambda at: opened[bisect.bisect_right(starts, at) - 1]


def repeated_keys(lost: list[str]) -> list[Change]:
    """`removed` changes for keys a repaired object holds twice with different values (JSON keeps the last)."""
    changes = [change("removed", "$", f"the key {_short(k)} stands twice in one object with different "
                      "values: the first is lost") for k in lost[:20]]
    if len(lost) > 20:
        changes.append(change("removed", "$", f"... and {len(lost) - 20} more repeated keys"))
    return changes


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
        if source[0] == "{" and isinstance(value, list):
            changes.append(change("added", "$", "an array read out of an object's braces"))
    words = _words(source)
    numbers = set()
    for m in _NUMBER_TOKEN.finditer(source):
        with contextlib.suppress(ValueError):
            numbers.add(float(m.group().replace("_", "")))
    empties = len(_EMPTY_STRING.findall(source))
    across = _Across(source)
    name_looks = _Across.LOOKS  # each a search of the text: a bound for values with thousands of keys
    written = _Escaped(source)
    todo: list[tuple[Any, str]] = [(value, "$")]
    while todo and len(changes) < 20:
        v, path = todo.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                name_looks -= 1
                if not _in_text(k, words, source):
                    changes.append(change("added", f"{path}.{k}", "a key that is not in the text"))
                elif name_looks > 0 and _only_inside_words(k, source):
                    changes.append(change("added", f"{path}.{k}", "a key the text writes only as part of a longer "
                                                                   f"name ({_short(k)}: `@b` read as `b`)"))
                elif (_KEY_MEMBERS.search(k) or _MEMBERS.search(k)) and not written.holds(k):
                    changes.append(change("added", f"{path}.{k}", f"members read into one key ({_short(k)})"))
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
            elif ("," in v or _MEMBERS.search(v)) and across.commas(v):
                changes.append(change("added", path, f"members of the text read into one string ({_short(v)})"))
        elif isinstance(v, bool):
            if not ({"true", "yes"} if v else {"false", "no"}) & words.keys():
                changes.append(change("added", path, f"{str(v).lower()}, which the text does not say"))
        elif v is None:
            if not {"null", "none", "nil", "undefined", "nan", "infinity", "inf"} & words.keys():
                changes.append(change("added", path, "null, which the text does not say"))
        elif isinstance(v, (int, float)) and math.isfinite(v) and float(v) not in numbers:
            changes.append(change("added", path, f"the number {v}, which is not in the text"))
    kept, uncommented = _value_words(value), _uncommented(source)
    said = _words(uncommented) - _repeated_members(source)
    missing = [w for w, n in said.items() if n > kept[w]]
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (", ..." if len(missing) > 5 else "")
        changes.append(change("removed", "$", f"{len(missing)} word(s) of the text are not in the value as often as "
                                              f"in the text ({shown})"))
    opened, held = _openers(uncommented), _containers(value)
    if held < opened:
        changes.append(change("restructured", "$", f"the text opens {opened} objects or arrays, the value holds "
                                                   f"{held}: nesting merged into the containers around it"))
    if _ends_open(source):
        changes.append(change("truncated", "$", "completed a document cut off before its end"))
    return changes


_NAME_CHAR = re.compile(r"[\w$@#%~^&|*!?+\-.]")


def _only_inside_words(key: str, source: str) -> bool:
    """True if the key stands in the text, but only glued to other name characters (`@b` for `b`): the repair cut
    the name the text wrote. False where the key is written as it is, or nowhere (other checks judge that)."""
    if not key or not _NAME_CHAR.fullmatch(key[0]) or not _NAME_CHAR.fullmatch(key[-1]):
        return False
    at, seen = source.find(key), 0
    while at >= 0 and seen < 50:
        before = source[at - 1] if at else " "
        after = source[at + len(key)] if at + len(key) < len(source) else " "
        if not _NAME_CHAR.match(before) and not (after.isalnum() or after == "_"):
            return False
        at, seen = source.find(key, at + 1), seen + 1
    return seen > 0


def _openers(source: str) -> int:
    """`{` and `[` of the text outside its quoted strings."""
    return sum(1 for m in _TOKEN.finditer(source) if m.group() in ("{", "["))


def _containers(value: Any) -> int:
    """Objects and arrays in a value, and the `{` and `[` its strings hold (the text's, read as a string's)."""
    count, todo = 0, [value]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            count += 1
            todo.extend(v.keys())
            todo.extend(v.values())
        elif isinstance(v, list):
            count += 1
            todo.extend(v)
        elif isinstance(v, str):
            count += v.count("{") + v.count("[")
    return count


#: A token of JSON-like text: a quoted string, a number, a literal, punctuation, a word of prose (the group), or
#: another character (neither: `l` of a broken `nul}l`, `=`, `*`).
_TOKEN = re.compile(r"""\s+|"(?:[^"\\\n]|\\.){0,400}"|'(?:[^'\\\n]|\\.){0,400}'|-?\d[\d.eE+-]*|"""
                    r"""(?:true|false|null|True|False|None)\b|[{}\[\](),:]|([^\W\d_]{2,})|\S""")
_AROUND = 2_000  # characters looked at on each side of a value


def _data_run(tokens: list[re.Match[str]]) -> bool:
    """True if these tokens, up to the first word of prose, hold data: a value (string, number, literal) next
    to a separator, e.g. `"d": }` or `, "next": null`."""
    seen_value = seen_separator = False
    for m in tokens:
        if m.group(1) is not None:
            break
        text = m.group()
        if text in (",", ":"):
            seen_separator = True
        elif text[0] in "\"'-0123456789" or text in ("true", "false", "null", "True", "False", "None"):
            seen_value = True
        if seen_value and seen_separator:
            return True
    return False


_STRAY_QUOTE = re.compile(r"""[^\w"'\n]{0,8}["']""")


def _past_stray_quote(text: str, end: int) -> list[re.Match[str]]:
    """The tokens after a quote that stands, with no word before it, right after a value (`match(\""))", "next":
    ...`: the read ended inside a string, so the text's own quotes pair the other way round)."""
    m = _STRAY_QUOTE.match(text, end)
    return list(_TOKEN.finditer(text, m.end(), m.end() + _AROUND)) if m else []


_PROSE_WORD = re.compile(r"[^\W\d_]{2,}")
_QUOTED_NAME = re.compile(r"""["'][^\W\d_]""")


def _carved(text: str, start: int, end: int) -> bool:
    """True if the value lies inside a document the text opens before it and closes after it (or with it, the value
    running to the text's end), with words of that document on either side (`{"ke[[1, 2], [3]]}`: the key is lost,
    not prose around an answer)."""
    head, tail = text[:start].lstrip(), text[end:].rstrip()
    if not head or head[0] not in "{[" or (tail and tail[-1] not in "}]") or _containers_of(head)(len(head)) < 0:
        return False  # no document around the value (`{Answer}\n{"a": 1}\n{End}`: its braces close before it)
    return any(_PROSE_WORD.search(_COMMENT.sub(" ", part)) or _QUOTED_NAME.search(part)
               for part in (head, tail))  # a fence's ```json is no word; a quoted name (`{"k`) is one, however short


_CLOSED_AFTER = re.compile(r"""[^\W_][^"'\n]{0,80}["']?\s*[}\]]\s*$""")


def _string_closed_after(text: str, start: int, end: int) -> bool:
    """True if words after the value end with a closer the value did not open (after a quote, or not), as the text
    ends (`{"t": ds in brackets}more words"}`, `[1, 2, ]3]`): the value ended inside a string that lost its opening
    quote, or at a closer written too early, and the rest is its data, not prose after an answer. A tail that
    repeats the value's own end (`["abc"]bc"]`, a stutter) holds nothing the value lacks."""
    tail = text[end : end + _AROUND]
    if end + _AROUND < len(text) or not _CLOSED_AFTER.search(tail) or text[start:end].rstrip().endswith(tail.strip()):
        return False
    closers = sum(tail.count(c) for c in "}]")
    return closers > sum(tail.count(c) for c in "{[")


_LATER_MEMBER = re.compile(r"""["']\s*,\s*["'][^"'\n]{1,80}["']\s*:""")


def cut_short(text: str, end: int) -> list[Change]:
    """A `removed` change for a read that stopped before its document's end (the lenient reader gave up at `end`,
    json_repair completed the rest): the document goes on (the text ends in a closer) with members in it (`", "key":`),
    however its quotes pair (`print(f\"Hi, {")\n ...", "next": 1}`)."""
    if text.rstrip()[-1:] not in ("}", "]") or _LATER_MEMBER.search(text, end, end + _AROUND) is None:
        return []
    return [change("removed", "$", f"left out the rest of the document after {_short(text[max(0, end - 30) : end])}")]


def left_out(text: str, start: int, end: int) -> list[Change]:
    """A `removed` change when a value read from `text[start:end]` has JSON data right next to it: a member cut off
    by a stray brace, the rest of the document it was carved from (`{"c": 1, "d": }1}` read as `1`). Prose between
    the value and other data (`Note: ... {"key": value} as requested.`) ends the search: an answer's words are not
    its data."""
    before = list(_TOKEN.finditer(text, max(0, start - _AROUND), start)) if start > 0 else []
    after = list(_TOKEN.finditer(text, end, end + _AROUND)) if end < len(text) else []
    if not (_data_run(before[::-1]) or _data_run(after) or _data_run(_past_stray_quote(text, end))
            or _carved(text, start, end) or _string_closed_after(text, start, end)):
        return []
    near = text[max(0, start - 40) : start].strip() or text[end : end + 40].strip()
    return [change("removed", "$", f"left out data next to the value ({_short(near)})")]


_FENCE = re.compile(r"`{3,}[\w+\-.]*")
_COMMENT = re.compile(r"""(?<!:)//[^\n]*|/\*.*?(?:\*/|$)|(?<![\w"'])#[^\n"]*|\.{3}|\u2026|""" + _FENCE.pattern, re.S)
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|' + _COMMENT.pattern, re.S)


def _uncommented(source: str) -> str:
    """The text with its comments and ellipses blanked outside its strings, and its fences everywhere (a fence
    quoted by a broken document, `"```json {...}```"`, is markup too): `"// x", "next"` keeps `next`, which a
    comment read across the string's end would hide from the word count. A URL's `://` starts no comment, wherever
    the text's quotes pair."""
    return _STRING_OR_COMMENT.sub(lambda m: m.group() if m.group()[0] == '"' else " ", _FENCE.sub(" ", source))


def _leaves(value: Any) -> Iterator[Any]:
    """Every key and every scalar in `value` (depth first, without recursion)."""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            todo.extend(v.keys())
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
        else:
            yield v


def _value_words(value: Any) -> Counter[str]:
    """The words and numbers in a value's keys and strings (and its numbers' digits), with their counts."""
    found: Counter[str] = Counter()
    for v in _leaves(value):
        if isinstance(v, str):
            found.update(_plain_words(v))
        elif v is None:
            found.update(("null", "none"))
        else:
            found.update(_plain_words(json.dumps(v)))
    return found


_QUOTED = re.compile(r""""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'""", re.S)
_SPACE = re.compile(r"\s+")
_MEMBERS = re.compile(r"""["']\s*[:,]\s*["'\[{]""")
"""Quotes and separators inside one string value: `tags": ["x", "y` is members, read as a string."""


class _Across:
    """Whether a string value with a comma stands unquoted in the text: members (`1, b c: 2`) read as one string,
    so the text's keys and values are neither kept nor said to be gone. (A colon alone is a timestamp's.) The
    text is scanned once: each of its quoted strings (decoded) accounts for one value; a value no quoted
    string accounts for is looked for in the text outside quotes, at most LOOKS times per text, and one that
    holds quotes around a separator (`tags": ["x", "y`) is members whatever the text."""

    LOOKS = 200

    def __init__(self, source: str) -> None:
        self.source = source
        self.written = _Escaped(source)
        self.quoted: Counter[str] | None = None
        self.unquoted = ""
        self.looks = self.LOOKS

    def _scan(self) -> Counter[str]:
        quoted: Counter[str] = Counter()
        gaps, at = [], 0
        for m in _QUOTED.finditer(self.source):
            gaps.append(self.source[at : m.start()])
            at = m.end()
            raw = m.group(1) if m.group(1) is not None else m.group(2).replace("\\'", "'").replace('"', '\\"')
            try:
                quoted[json.loads(f'"{raw}"') if "\\" in raw else raw] += 1
            except ValueError:
                quoted[raw] += 1
        gaps.append(self.source[at:])
        self.unquoted = "\0".join(_SPACE.sub("", gap) for gap in gaps)  # json_repair drops spaces after commas
        return quoted

    def commas(self, value: str) -> bool:
        if self.quoted is None:
            self.quoted = self._scan()
        count = self.quoted.get(value)
        if count:
            self.quoted[value] = count - 1
            return False
        if self.looks <= 0:
            return False
        self.looks -= 1
        if _MEMBERS.search(value) is not None:
            return not (self.written.holds(value) or _quoted_document(value, self.source))
        if count is None and any(q in self.source for q in (f'"{value}"', f"'{value}'", _dumps(value))):
            return False  # quoted in the text: an unpaired quote before it put the scan's pairing astray
        return _SPACE.sub("", value) in self.unquoted


def _in_text(text: str, words: Counter[str], source: str) -> bool:
    found = _plain_words(text)
    return all(w in words for w in found) if found else text in source


def _short(value: Any) -> str:
    text = _dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
    looked = 0
    for v in _leaves(value):
        if looked >= 200:
            break
        if isinstance(v, str) and len(v) >= 6 and not v.isascii():
            looked += 1
            letters = [c for c in v if c.isalpha()]
            scripts = {_script(c) for c in letters if ord(c) > 0x7F} | ({"LATIN"} if any(c.isascii() for c in letters)
                                                                           else set())
            odd = sum(1 for c in v if unicodedata.category(c)[0] in "SMC" or unicodedata.category(c) == "Cn")
            if len(scripts) >= 5 or odd > 0.3 * len(v):
                return f"a string mixes {len(scripts)} scripts and {odd} symbol or control characters in {len(v)}"
    return None

