"""Deterministic repair of Python code from LLM output: fences, prose, indentation, typography; ast.parse decides."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from kgot_errors.repair._outcome import Outcome

__all__ = ["code_layer", "syntax_error"]

MAX_CODE_CHARS = 2_000_000
#: How many prose lines are tried off each end when looking for the code inside a text.
MAX_TRIM_LINES = 25

_FENCE = re.compile(r"(?:^|(?<=\s))(`{3,}|~{3,})[ \t]*([\w+\-.]*)[ \t]*\n(.*?)(?:\n[ \t]*\1[ \t]*(?=\n|\Z)|\Z)", re.S)
_THINK = re.compile(r"<(think|thinking|reasoning)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.S | re.I)
_TAGGED = re.compile(r"<(code|python|answer)\b[^>]*>(.*?)(?:</\1\s*>|\Z)", re.S | re.I)
_PYTHON_LANGS = frozenset({"python", "py", "python3", "py3", "ipython", "pycon", ""})
_TYPOGRAPHY = str.maketrans(
    {
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'", "\u201a": "'",
        "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u3000": " ", "\u200b": "", "\u200c": "",
        "\u200d": "", "\u2060": "", "\ufeff": "",
    }
)
_REPL_PROMPT = re.compile(r"^(?:>>>|\.\.\.)(?: |$)")
_PROSE_LINE = re.compile(r"[A-Z\u00c0-\u024f][\w'\u2019,;!?.:\-\u2014 ]* [\w'\u2019,;!?.:\-\u2014() ]*$")
_CODE_HINT = re.compile(r"[=\[\]{}]|\w\(|^(?:def|class|import|from|return|if|for|while|with|try|print)\b")


@dataclass(frozen=True)
class _Try:
    code: str
    steps: tuple[str, ...]


def syntax_error(code: str) -> str | None:
    """None if `code` parses as Python, else the SyntaxError message with its line."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        return f"SyntaxError: {exc.msg}{where}"
    except ValueError as exc:  # NUL bytes: a SyntaxError from 3.11.4 on, a ValueError before
        return f"SyntaxError: {exc}"
    except (RecursionError, MemoryError) as exc:  # absurd nesting
        return f"{type(exc).__name__}: {exc}"
    return None


def _blocks(text: str) -> list[_Try]:
    """Regions that may hold the code: fenced blocks (Python first), tagged blocks, the text."""
    body = _THINK.sub("", text)
    steps = ("removed <think> blocks",) if body != text else ()
    fenced = [(m.group(2).lower(), m.group(3)) for m in _FENCE.finditer(body)]
    python = [c for lang, c in fenced if lang in _PYTHON_LANGS]
    ordered = python + [c for lang, c in fenced if lang not in _PYTHON_LANGS]
    tries = [_Try(c.rstrip("\n"), (*steps, "extracted a fenced code block")) for c in ordered]
    if len(python) > 1:
        joined = "\n\n".join(python)
        tries.append(_Try(joined, (*steps, "joined the fenced Python blocks")))
    tries += [_Try(m.group(2), (*steps, f"extracted a <{m.group(1).lower()}> block")) for m in _TAGGED.finditer(body)]
    tries.append(_Try(body, steps))
    return tries


def _variants(attempt: _Try) -> list[_Try]:
    """The block as is, dedented, with typography fixed, and without REPL prompts."""
    out = [attempt]
    dedented = textwrap.dedent(attempt.code).strip("\n")
    if dedented != attempt.code:
        out.append(_Try(dedented, (*attempt.steps, "dedented")))
    for base in list(out):
        plain = base.code.translate(_TYPOGRAPHY)
        if plain != base.code:
            out.append(_Try(plain, (*base.steps, "replaced smart quotes and odd spaces")))
    for base in list(out):
        lines = base.code.splitlines()
        if any(_REPL_PROMPT.match(line) for line in lines):
            kept = [_REPL_PROMPT.sub("", line) for line in lines if _REPL_PROMPT.match(line)]
            out.append(_Try("\n".join(kept), (*base.steps, "removed interactive prompts and output")))
    return out


def _prose(line: str) -> bool:
    """True for a blank line or one that reads like a sentence, not like code."""
    text = line.strip()
    return not text or bool(_PROSE_LINE.match(text) and not _CODE_HINT.search(text))


def _trimmed(attempt: _Try) -> _Try | None:
    """The longest run of lines that parses, after dropping prose lines at either end."""
    lines = attempt.code.splitlines()
    n = len(lines)
    lead = next((k for k, line in enumerate(lines) if not _prose(line)), n)
    trail = next((k for k in range(n, 0, -1) if not _prose(lines[k - 1])), 0)
    best: tuple[int, int] | None = None
    for i in range(min(MAX_TRIM_LINES, lead + 1, n)):
        for j in range(n, max(i, n - MAX_TRIM_LINES, trail - 1), -1):
            if best is not None and j - i <= best[1] - best[0]:
                break
            chunk = "\n".join(lines[i:j])
            if chunk.strip() and syntax_error(chunk) is None:
                best = (i, j)
                break
    if best is None or best == (0, n):
        return None
    code = "\n".join(lines[best[0] : best[1]]).strip("\n")
    if _trivial(code):
        return None  # `Thanks` parses as a name: prose, not code
    return _Try(code, (*attempt.steps, "dropped prose around the code"))


def _trivial(code: str) -> bool:
    """True if the code is only bare names or constants (prose words parse as those)."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    return all(isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant)) for node in body)


def code_layer(text: str) -> Outcome:
    """Recover Python code from LLM output; ok only when `ast.parse` accepts it. Never raises.

    Valid code comes back unchanged. Otherwise fenced and tagged blocks (Python first), the
    text dedented, with smart quotes and odd spaces replaced, without REPL prompts, and with
    prose lines trimmed off either end are tried in turn; the first that parses wins.
    """
    if not isinstance(text, str):
        return Outcome(False, reason=f"expected text, got {type(text).__name__}")
    if len(text) > MAX_CODE_CHARS:
        return Outcome(False, reason=f"code is {len(text):,} characters, over the {MAX_CODE_CHARS:,} limit")
    first = syntax_error(text)
    if first is None and text.strip():
        return Outcome(True, text, text)
    if not text.strip():
        return Outcome(False, reason="empty input: no code to repair")
    for block in _blocks(text):
        for attempt in _variants(block):
            if attempt.code.strip() and syntax_error(attempt.code) is None:
                return Outcome(True, attempt.code, attempt.code, attempt.steps)
        for attempt in _variants(block):
            trimmed = _trimmed(attempt)
            if trimmed is not None:
                return Outcome(True, trimmed.code, trimmed.code, trimmed.steps)
    return Outcome(False, reason=first, errors=(first,) if first else ())
