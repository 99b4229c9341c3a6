"""Extraction: where in a text JSON may live (fences, answer tags, escaped variants, thoughts), the candidate values
read there, each finished (finite, unicode-fixed, coerced to the schema), and the best of them."""

from __future__ import annotations

import contextlib
import functools
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

import json_repair

from kgot_errors.repair._coerce import coerce_to_schema
from kgot_errors.repair._deadline import PastDeadline, interrupt_after
from kgot_errors.repair._drift import (
    MIN_COVERAGE,
    _edit_changes,
    _library_changes,
    coverage,
    cut_short,
    left_out,
    repeated_keys,
)
from kgot_errors.repair._normalise import (
    _CONTINUED_OBJECT,
    _IDENT,
    _LITERALS,
    _SEPARATORS,
    QUOTES,
    _Read,
    _read_stream,
    _reaches_end,
)
from kgot_errors.repair._outcome import REFUSE, Change, change, describe, disposition
from kgot_errors.repair._schema import schema_errors, schema_report, without_patterns
from kgot_errors.repair._strict import (
    DEFAULT_MAX_DEPTH,
    _finite,
    is_strict_json,
    loads_strict,
    lost_keys,
    nesting_depth,
)
from kgot_errors.repair._unicode import fix_value_text, surrogate_changes

#: Inputs longer than this get fewer extraction attempts (each may cost linear time).
SCAN_MAX_CHARS = 200_000
MAX_STARTS = 48  # positions that yield a value, per segment (3 for long inputs)
MAX_ATTEMPTS = 20_000  # positions tried, per segment (most fail at their first token)

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
_QUOTE_ENTITY = re.compile(r"&(?:quot|#0*34|#x0*22);")
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
    within: tuple[int, int] | None = None  # where a fence's contents lie in the text
    closed: bool = False  # a fence with its closing line and no fence line inside

    @functools.cached_property
    def plain(self) -> bool:
        """ASCII without `\\u`: no value read from it holds a string that unicode fixes would change."""
        return self.text.isascii() and "\\u" not in self.text


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
        closed = m.end(3) < m.end() and not _FENCE_LINE.search(m.group(3))
        segments.append(_Segment(m.group(3), f"```{lang} block", 1 if lang in _CODE_LANGS else 3, framed=True,
                                 within=m.span(3), closed=closed))
    if _HTML_ENTITY.search(body) and len(_QUOTE_ENTITY.findall(body)) > body.count('"'):
        # a document escaped for HTML writes its quotes as entities; one that writes them as they are holds its
        # entities as data (`"&amp; &lt;tag&gt;"`): decoding those would change its strings
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



_NONFINITE_WORD = re.compile(r"\b(?:NaN|nan|-?Infinity|-?inf|Inf)\b")


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


def _finish(value: Any, pool: _Pool, *, plain: bool = False) -> tuple[Any, list[str], list[str], list[Change]]:
    """Post-process a parsed value: finite numbers, embedded documents, unicode (only in text that
    did not parse), schema coercion. Returns the value, the steps, the schema errors, the changes.
    `plain`: the value was read from ASCII text without `\\u`, so no string in it has unicode to fix."""
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
    errors, where = schema_report(value, schema)
    if (pool.text_fixes or errors) and not plain:
        fixed, text_steps = fix_value_text(value)
        if text_steps and (pool.text_fixes or not schema_errors(fixed, schema, limit=1)):
            value = fixed
            steps.extend(text_steps)
            changes += surrogate_changes(text_steps)
            errors, where = schema_report(value, schema)
    if not plain and not is_strict_json(value):  # `"\\ud800"`, which the text fixes above were not for
        value, text_steps = fix_value_text(value, surrogates_only=True)
        steps.extend(text_steps)
        changes += surrogate_changes(text_steps)
        errors, where = schema_report(value, schema)
    if errors:
        coerced_value, coerced = coerce_to_schema(value, schema, misfits=where)
        if coerced:  # else nothing changed: the errors stand as they are
            value = coerced_value
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


#: json_repair's time on one text. Its scans can take time quadratic in the quotes (`["{"a": 1} x", ...]`, 2,000 of
#: them: 17 s), so a text with more than WATCHED_COST of length x quotes runs under this deadline.
LIBRARY_DEADLINE_S = 2.0
WATCHED_COST = 10_000_000


def _repair_with_library(text: str) -> tuple[Any, tuple[str, ...]] | None:
    """json_repair on `text`, refused when nesting is too deep for its recursive parser; PastDeadline when it runs
    past LIBRARY_DEADLINE_S.

    json_repair returns "" for any top-level scalar, so a text that does not open a
    container is repaired inside `[...]` and unwrapped again.
    """
    if nesting_depth(text, limit=DEFAULT_MAX_DEPTH) > DEFAULT_MAX_DEPTH:
        return None
    wrapped = text.lstrip()[:1] not in ("{", "[")
    if wrapped and not _looks_scalar(text):
        return None  # prose, not a scalar: json_repair would turn it into strings
    watched = len(text) * (text.count('"') + text.count("'")) > WATCHED_COST
    try:
        with interrupt_after(LIBRARY_DEADLINE_S) if watched else contextlib.nullcontext():
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
    library_stopped: bool = False  # json_repair ran past its deadline on this input: not called again

    def add(self, value: Any, steps: tuple[str, ...], *, complete: bool, seg: _Segment, span: int = 0,
            changes: list[Change] | None = None) -> None:
        found = list(changes or ())
        value, more, errors, coerced = _finish(value, self, plain=seg.plain)
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

    def add_repaired(self, source: str, norm_text: str, edits: tuple[str, ...], seg: _Segment,
                     around: list[Change] | None = None) -> None:
        """json_repair on the normalised text and, if that differs and gave nothing the drift guard keeps, on the raw
        source; the drift guard picks."""
        tries = [(norm_text, edits)] + ([(source, ())] if norm_text != source else [])
        best: tuple[float, Any, tuple[str, ...]] | None = None
        for text, steps in tries:
            if best is not None and best[0] >= MIN_COVERAGE:
                break  # the raw source could not replace a reading the guard keeps
            if self.library_stopped:
                break  # one input, one json_repair deadline
            try:
                repaired = _repair_with_library(text)
            except PastDeadline:
                self.library_stopped = True
                self.drift.append(f"json_repair was stopped after {LIBRARY_DEADLINE_S:g} s on {len(text):,} characters")
                break
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
                 changes=[*_edit_changes(edits), *_library_changes(source, value), *(around or ())])

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


def _collect(pool: _Pool, seg: _Segment, fenced: bool = False, skip: tuple[tuple[int, int], ...] = ()) -> None:
    """Add the values found in a segment. With `fenced`, spans crossing a fence line are
    left out (the fenced blocks are segments of their own); values starting inside a `skip`
    span are not read (a JSON fence's contents, which its own segment reads, ranked higher)."""
    s = seg.text
    covered = -1
    starts = [p for p in _starts(s) if not any(a <= p < b for a, b in skip)] if skip else _starts(s)
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
            pool.add_repaired(s[start:], s[start:], (), seg, left_out(s, start, len(s)))  # `{"a": 1}, "b": 2}`
        lost: list[str] = []
        values = _stream_values(reads, lost) if len(reads) > 1 and _reaches_end(s, reads[-1].norm.end) else None
        if values is not None:
            edits = tuple(dict.fromkeys(e for r in reads for e in r.norm.edits))
            kept = [v for v in values if v not in ({}, [])] or values  # `{"a": 1}, []`: empties are noise
            if len(kept) > 1:
                prose = [s[r.norm.start : r.norm.end] for r, v in zip(reads, values) if _prose_read(r, v)]
                beside = [change("added", "$", f"words of prose read as values beside the answer ({prose[0][:40]})")] \
                    if 0 < len(prose) < len(reads) else []  # words only (`a, b`, `[a, b] [c, d]`) are the answer
                pool.add(kept, ("collected several JSON values into an array", *edits), complete=True, seg=seg,
                         span=reads[-1].norm.end - start,
                         changes=[*_edit_changes(edits, kept, s[start : reads[-1].norm.end]), *repeated_keys(lost),
                                  *left_out(s, start, reads[-1].norm.end), *beside])
            covered = max(covered, reads[-1].norm.end)


def _prose_read(read: _Read, value: Any) -> bool:
    """True if the read is one run of words, quoted by the normaliser (`(confidence is high)`, `[ANSWER]`): prose
    in brackets, not a value to collect with the answer (`[red, green]`, several items, may be data)."""
    if "quoted bare words" not in read.norm.edits:
        return False
    return isinstance(value, str) or (isinstance(value, list) and len(value) == 1 and isinstance(value[0], str))


def _stream_values(reads: list[_Read], lost: list[str]) -> list[Any] | None:
    """The values of a stream of reads that are all strict JSON, else None (a read the normaliser calls
    complete may still not parse: `[ , }1,23`]`); keys a repaired read repeats with another value go to `lost`."""
    values = []
    for r in reads:
        if not r.norm.complete:
            return None
        if r.parsed:
            values.append(r.value)
            lost += lost_keys(r.norm.text, r.value)
            continue
        try:
            values.append(loads_strict(r.norm.text, lost=lost))
        except ValueError:
            return None
    return values


def _add_read(pool: _Pool, s: str, read: _Read, seg: _Segment) -> None:
    norm = read.norm
    span = norm.end - norm.start
    around = left_out(s, norm.start, norm.end)
    if read.parsed:
        pool.add(read.value, (), complete=True, seg=seg, span=span,
                 changes=[*repeated_keys(lost_keys(norm.text, read.value)), *around])
        return
    if norm.complete:
        lost: list[str] = []
        try:
            value = loads_strict(norm.text, lost=lost)
            pool.add(value, norm.edits, complete=True, seg=seg, span=span,
                     changes=[*_edit_changes(norm.edits, value, s[norm.start : norm.end]), *repeated_keys(lost),
                              *around])
            return
        except ValueError:
            pass
    pool.add_repaired(s[norm.start : norm.end], norm.text, norm.edits, seg, around or cut_short(s, norm.end))


def _candidates(text: str, schema: dict[str, Any] | bool | None, *, text_fixes: bool = True) -> _Pool:
    pool = _Pool(schema, text, text_fixes)
    segments = _segments(text)
    fenced = any(seg.within for seg in segments)
    json_fences = tuple(seg.within for seg in segments if seg.closed and seg.rank > 2)
    for seg in segments:
        if seg.tier == 0 and any(c.tier == 1 for c in pool.items):
            break
        _collect(pool, seg, fenced and not seg.within, json_fences if seg is segments[0] else ())
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
        value = json_repair.loads(text, schema=without_patterns(schema))  # its validator is unbounded
    except Exception:  # noqa: BLE001 - json_repair raises when the schema cannot be met
        return
    seg = _Segment(text, "the whole text (json_repair schema mode)", 0, tier=0)
    pool.add(value, ("json_repair schema mode: filled missing values from the schema",), complete=False, seg=seg,
             changes=_library_changes(text, value))

