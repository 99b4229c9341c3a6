"""Classification of a failure: an ErrorKind by exception type, then HTTP status, then content, and the content's kind
from evidence; pure (the classify node and runtime/operations use it)."""

from __future__ import annotations

import ast
import builtins
import json
import re
import textwrap
from typing import Literal, NamedTuple

from kgot_errors.repair._strict import DATA_NODES, FENCE, OPENING_FENCE, SNIFF_PARSE_CHARS
from kgot_errors.state import ContentKind, ErrorKind, IncidentData

__all__ = ["BY_STATUS", "TYPE_TABLE", "Classification", "classify_incident", "content_kind_of", "sniff_content",
           "status_kind"]

BY_STATUS = "by-status"
"""A TYPE_TABLE entry whose kind depends on the HTTP status code the error carries."""
EXECUTED = "executed-code"
"""A TYPE_TABLE entry for errors that generated code raises: EXECUTION when there is code."""

_Kind = ErrorKind | Literal["by-status", "executed-code"]

# Qualified class name -> (kind, content kind of the failing content). The most specific
# class in the exception's MRO that appears here wins. Keys are the classes' real
# `module.QualName`; tests/unit/test_classify.py checks every row against the real class.
TYPE_TABLE: dict[str, tuple[_Kind, ContentKind | None]] = {
    # malformed output
    "json.decoder.JSONDecodeError": (ErrorKind.SYNTAX, ContentKind.JSON),
    "langchain_core.exceptions.OutputParserException": (ErrorKind.SYNTAX, ContentKind.JSON),
    "openai.LengthFinishReasonError": (ErrorKind.SYNTAX, ContentKind.JSON),
    "SyntaxError": (ErrorKind.SYNTAX, ContentKind.PYTHON),  # IndentationError, TabError inherit
    # output that parses but does not fit
    "pydantic_core._pydantic_core.ValidationError": (ErrorKind.SCHEMA, ContentKind.JSON),
    "jsonschema.exceptions.ValidationError": (ErrorKind.SCHEMA, ContentKind.JSON),
    # provider and network errors
    "openai.APIStatusError": (BY_STATUS, None),
    "openai.RateLimitError": (ErrorKind.TRANSIENT, None),
    "openai.InternalServerError": (ErrorKind.TRANSIENT, None),
    "openai.APIConnectionError": (ErrorKind.TRANSIENT, None),
    "openai.APITimeoutError": (ErrorKind.TRANSIENT, None),
    "openai.AuthenticationError": (ErrorKind.PERMANENT, None),
    "openai.PermissionDeniedError": (ErrorKind.PERMANENT, None),
    "openai.BadRequestError": (ErrorKind.PERMANENT, None),
    "openai.NotFoundError": (ErrorKind.PERMANENT, None),
    "openai.ContentFilterFinishReasonError": (ErrorKind.PERMANENT, None),
    "httpx.HTTPStatusError": (BY_STATUS, None),
    "httpx.TransportError": (ErrorKind.TRANSIENT, None),  # ConnectError, ReadTimeout, RemoteProtocolError...
    "httpx.UnsupportedProtocol": (ErrorKind.PERMANENT, None),
    "httpx.InvalidURL": (ErrorKind.PERMANENT, None),
    "requests.exceptions.HTTPError": (BY_STATUS, None),
    "requests.exceptions.ConnectionError": (ErrorKind.TRANSIENT, None),
    "requests.exceptions.Timeout": (ErrorKind.TRANSIENT, None),
    "ConnectionError": (ErrorKind.TRANSIENT, None),  # ConnectionResetError, BrokenPipeError...
    "TimeoutError": (ErrorKind.TRANSIENT, None),  # also asyncio.TimeoutError
    "PermissionError": (ErrorKind.PERMANENT, None),
    "kgot_errors.errors.ConfigError": (ErrorKind.PERMANENT, None),
    # generated code that ran and failed
    "subprocess.CalledProcessError": (ErrorKind.EXECUTION, ContentKind.PYTHON),
    "subprocess.TimeoutExpired": (ErrorKind.EXECUTION, ContentKind.PYTHON),
    "NameError": (EXECUTED, ContentKind.PYTHON),
    "TypeError": (EXECUTED, ContentKind.PYTHON),
    "AttributeError": (EXECUTED, ContentKind.PYTHON),
    "ArithmeticError": (EXECUTED, ContentKind.PYTHON),  # ZeroDivisionError, OverflowError
    "LookupError": (EXECUTED, ContentKind.PYTHON),  # IndexError, KeyError
    "ImportError": (EXECUTED, ContentKind.PYTHON),
    "AssertionError": (EXECUTED, ContentKind.PYTHON),
    "RecursionError": (EXECUTED, ContentKind.PYTHON),
    "RuntimeError": (EXECUTED, ContentKind.PYTHON),
    "ValueError": (EXECUTED, ContentKind.PYTHON),
    "UnboundLocalError": (EXECUTED, ContentKind.PYTHON),
}

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_PERMANENT_STATUS = frozenset({400, 401, 402, 403, 404, 405, 406, 410, 411, 413, 414, 415, 422, 501})

# Last resort, on the message only; ordered, first match wins.
_MESSAGE_RULES: tuple[tuple[re.Pattern[str], ErrorKind], ...] = (
    (re.compile(r"rate.?limit|too many requests|overloaded|temporarily unavailable|try again", re.I),
     ErrorKind.TRANSIENT),
    (re.compile(r"timed? ?out|connection (reset|refused|aborted)|broken pipe|service unavailable|bad gateway",
                re.I), ErrorKind.TRANSIENT),
    (re.compile(r"unauthori[sz]ed|invalid api.?key|forbidden|permission denied|not found|quota", re.I),
     ErrorKind.PERMANENT),
    (re.compile(r"expecting (value|property name|',' delimiter)|unterminated string|invalid json|json",
                re.I), ErrorKind.SYNTAX),
    (re.compile(r"validation error|does not match|is not of type|required property|field required", re.I),
     ErrorKind.SCHEMA),
    (re.compile(r"traceback \(most recent call last\)|exit(ed)? (status|code) [1-9]", re.I),
     ErrorKind.EXECUTION),
)


def status_kind(status: int | None) -> ErrorKind | None:
    """Transient or permanent from an HTTP status code (None when it says neither)."""
    if status is None:
        return None
    if status in _TRANSIENT_STATUS or 500 <= status <= 599 and status not in _PERMANENT_STATUS:
        return ErrorKind.TRANSIENT
    if status in _PERMANENT_STATUS:
        return ErrorKind.PERMANENT
    return None


_SHORT_NAMES: dict[str, str] = {}
for _name in TYPE_TABLE:
    _SHORT_NAMES.setdefault(_name.rsplit(".", 1)[-1], _name)


def _table_row(names: list[str]) -> tuple[str, tuple[_Kind, ContentKind | None]] | None:
    """The row for the most specific class in `names` (full names first, then bare class names)."""
    for name in names:
        if name in TYPE_TABLE:
            return name, TYPE_TABLE[name]
        full = _SHORT_NAMES.get(name)
        if full is not None and "." not in name:
            return full, TYPE_TABLE[full]
    return None


_CODE_LINE = re.compile(r"^\s*(def |class |import |from \S+ import |print\(|for .+:|if .+:|while .+:)", re.M)
_JSON_INSIDE = re.compile(r"[{\[]\s*[\"\u201c'}\]]|\[\s*[-\d{\[]")
_LEADING_COMMENTS = re.compile(r"(?:\s*(?:/\*.*?\*/|//[^\n]*\n))+\s*", re.S)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00b4"
# A traceback frame (also inside an exception group's `|` box), and the source line under it if one is shown.
_TRACEBACK_FRAME = re.compile(r'^[ \t|]*File "([^"]*)", line (\d+)(?:, in ([^\r\n]*))?\r?\n'
                              r'((?![ \t|]*(?:File "|\[Previous line))[ \t|]+.*\n?)?', re.M)
# Code typed into a session (a REPL, IPython, IDLE): the person's own code, the content's only if its line shown is.
_SESSION_FILE = re.compile(r"<(?:stdin|console|input|pyshell#\d+|ipython-input-[^>]*)>")
_DEF_LINE = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+(\w+)", re.M)
# A caller's line that runs code from a string, and the literal it runs when it spells the code out.
_EXEC_CALL = re.compile(r"\b(?:exec|eval)\s*\(\s*(?:compile\s*\(\s*)?"
                        r"((?:[rRuU]|[bB][rR]?)?(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'))?")
_COMPREHENSIONS = {ast.ListComp: "<listcomp>", ast.SetComp: "<setcomp>", ast.DictComp: "<dictcomp>",
                   ast.GeneratorExp: "<genexpr>"}




_BUILTINS = frozenset(dir(builtins))


def _python_kind(text: str) -> str | None:
    """`code` for text that parses as Python and does something (assigns, calls, defines...), `data` for a lone
    expression of literals (a dict, a list, `"a" + "b"`: a value, not a program), None when it does not parse."""
    if len(text) > SNIFF_PARSE_CHARS:
        return "code" if _CODE_LINE.search(text[:SNIFF_PARSE_CHARS]) else None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not tree.body:
        return None
    for statement in tree.body:  # data: every statement a lone value (JSON lines, too)
        if not isinstance(statement, ast.Expr):
            return "code"
        expr = statement.value
        if len(tree.body) == 1 and isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) \
                and expr.func.id not in _BUILTINS and len(expr.args) == 1 and not expr.keywords:
            expr = expr.args[0]  # JSONP: `callback([...])` wraps a value
        if not all(isinstance(node, DATA_NODES) for node in ast.walk(expr)):
            return "code"
    return "data"


def _is_code(text: str) -> bool:
    return _python_kind(text) == "code"


def _mostly_container(body: str) -> bool:
    """True if one bracketed span, from the first `{`/`[` to the last `}`/`]`, makes up most of the text."""
    start = min((i for i in (body.find("{"), body.find("[")) if i >= 0), default=-1)
    end = max(body.rfind("}"), body.rfind("]"))
    return start >= 0 and end > start and (end - start + 1) >= 0.8 * len(body) and \
        body[start] + body[end] in ("{}", "[]")


def _parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def sniff_content(content: str | None) -> ContentKind | None:
    """JSON, Python or plain text, judged from the content alone: content that is or holds JSON is JSON
    (a JSON document whose strings mention code stays JSON); code is text that parses as Python and is
    more than a literal, or a ```python block that does."""
    if content is None or not content.strip():
        return None
    body = content.strip().lstrip("\ufeff").strip()
    comments = _LEADING_COMMENTS.match(body)
    if comments and comments.end() < len(body):
        body = body[comments.end():]  # `/* note */ {...}`: what follows the comments decides
    whole = FENCE.match(body) if OPENING_FENCE.match(body) else None
    if whole is not None and not whole.group(2) and whole.end() == len(body) and whole.group(3).strip():
        body = whole.group(3).strip()  # the whole text is one unlabelled block: the block decides
    fenced = OPENING_FENCE.match(body) is not None  # "```python\n...\n```" ends in backticks but is no string
    if body[:1] in "{[" or (len(body) > 1 and body[0] in _QUOTES and body[-1] in _QUOTES and not fenced):
        return ContentKind.JSON
    fences = [(m.group(2).lower(), m.group(3)) for m in FENCE.finditer(body[:SNIFF_PARSE_CHARS])]
    if any(lang == "json" for lang, _ in fences):
        return ContentKind.JSON
    for lang, block in fences:
        if lang in ("python", "py", "python3"):
            if _is_code(block):
                return ContentKind.PYTHON
            if block.strip()[:1] in "{[" or _python_kind(block) == "data":
                return ContentKind.JSON  # a bare literal, `{'a': 1}` or `'hi'`: a value, not a program
    if len(body) <= SNIFF_PARSE_CHARS and _parses_as_json(body):
        return ContentKind.JSON
    if _mostly_container(body):
        return ContentKind.JSON  # `callback({...});`, `Answer: [...]`: a value with a little around it
    python = _python_kind(body)
    code = python == "code"
    if not code and (python == "data" or body[:1] == '"' or _JSON_INSIDE.search(body[:SNIFF_PARSE_CHARS])):
        return ContentKind.JSON
    if code or _CODE_LINE.search(body[:SNIFF_PARSE_CHARS]):
        return ContentKind.PYTHON
    return ContentKind.TEXT


def _scopes(code: str) -> list[tuple[str, int, int]]:
    """(frame name, first line, last line) of the frames that running `code` makes: `<module>` over the whole text,
    then each def, class, lambda and comprehension; none when it does not parse (then it cannot have run)."""
    last = max(1, len(code.splitlines()))
    if len(code) > SNIFF_PARSE_CHARS:  # too big to parse here: its defs by name, anywhere in it
        return [("<module>", 1, last)] + [(name, 1, last) for name in _DEF_LINE.findall(code)]
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    scopes = [("<module>", 1, last)]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = node.name
        elif isinstance(node, ast.Lambda):
            name = "<lambda>"
        elif type(node) in _COMPREHENSIONS:
            name = _COMPREHENSIONS[type(node)]
        else:
            continue
        scopes.append((name, node.lineno, node.end_lineno or node.lineno))
    return scopes


class _Form(NamedTuple):
    lines: list[str]
    scopes: list[tuple[str, int, int]]


def _runnable_forms(content: str) -> list[_Form]:
    """What an app may have run for `content`: the content, dedented, or one of its fenced blocks."""
    texts = dict.fromkeys([content, textwrap.dedent(content),
                           *(m.group(3) for m in FENCE.finditer(content[:SNIFF_PARSE_CHARS]))])
    return [_Form(text.splitlines(), _scopes(text)) for text in texts]


def _runs_at(form: _Form, function: str, number: int) -> bool:
    """True if line `number` of the form is a statement's line inside a frame named `function`."""
    if not 1 <= number <= len(form.lines):
        return False
    line = form.lines[number - 1].strip()
    return bool(line) and not line.startswith("#") and \
        any(name == function and first <= number <= last for name, first, last in form.scopes)


def _entered_from(caller: str | None, number: int, content_lines: set[str]) -> bool | None:
    """For a `<module>` frame of code from a string: False if its caller's line shows it ran something else (a call
    that is no `exec`/`eval`, as a generated `__init__`'s caller is, or `eval("...")` of other code), True if that
    literal is the content's, None when the caller does not say (no caller shown: `python -c`, the sandbox)."""
    if not caller:
        return None
    call = _EXEC_CALL.search(caller)
    if call is None:
        return False
    if call.group(1) is None:
        return None  # `exec(code, ...)`: which code, the line does not say
    try:
        code = ast.literal_eval(call.group(1))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    code_lines = code.splitlines() if isinstance(code, str) else []
    return 1 <= number <= len(code_lines) and code_lines[number - 1].strip() in content_lines


def ran_content(traceback: str | None, content: str | None) -> bool:
    """True if the traceback shows the content's own frames: a frame whose source line is a line of the content,
    or a frame of code run from a string (`<string>`, as `exec`, `python -c` and the sandbox name it) that shows no
    source line but is at a statement of the content, in its `<module>` (entered by `exec`/`eval` of it) or in a def
    of the content spanning that line. A generated function (a dataclass's `__init__` is `<string>` too), another
    `eval`, a session (`<stdin>`, `<ipython-input-...>`: the person's code, unless its line shown is the content's)
    and the interpreter's frozen modules prove nothing."""
    if not traceback or not content:
        return False
    lines = {line.strip() for line in content.splitlines() if len(line.strip()) > 3}
    short_lines = {line.strip() for line in content.splitlines() if line.strip()}
    forms: list[_Form] | None = None
    tail = traceback[-20_000:]
    caller: str | None = None  # the calling frame's source line; "" if not shown, None if there is no calling frame
    end = 0
    for m in _TRACEBACK_FRAME.finditer(tail):
        if "Traceback (" in tail[end:m.start()]:
            caller = None  # a chained exception's traceback starts afresh
        end = m.end()
        filename, number, function = m.group(1), int(m.group(2)), (m.group(3) or "").strip()
        source = (m.group(4) or "").strip().lstrip("|").strip()
        called_from, caller = caller, source
        if source in lines:
            return True
        if not filename.startswith("<") or filename.startswith("<frozen"):
            continue
        if source:  # code from a string, its line shown: the content's only if that line is
            if source in short_lines:
                return True
            continue
        if not function or _SESSION_FILE.fullmatch(filename):
            continue
        if function == "<module>":
            entered = _entered_from(called_from, number, short_lines)
            if entered is not None:
                if entered:
                    return True
                continue
        if forms is None:
            forms = _runnable_forms(content)
        if any(_runs_at(form, function, number) for form in forms):
            return True
    return False


def _content_fails(content: str, kind: ContentKind) -> bool:
    if kind is ContentKind.JSON:
        try:
            json.loads(content)
        except (ValueError, RecursionError):
            return True
        return False
    if kind is ContentKind.PYTHON:
        try:
            ast.parse(content)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return True
    return False


class Classification(NamedTuple):
    kind: ErrorKind
    content_kind: ContentKind | None
    rule: str  # which rule decided, for the record


def content_kind_of(incident: IncidentData, table_kind: ContentKind | None, *,
                    max_sniff_chars: int = 1_000_000) -> ContentKind | None:
    """The content's kind from evidence, strongest first: the caller's word, a schema (JSON), a parser's own
    error (JSONDecodeError: JSON, SyntaxError: Python) unless the content plainly says otherwise, the content.
    A generic exception type (ValueError, RuntimeError...) is never evidence."""
    content = incident.get("content")
    given = incident.get("content_kind")
    if given:
        return ContentKind(given)
    if not content:
        return None
    if incident.get("output_schema") is not None:
        return ContentKind.JSON
    sniffed = sniff_content(content[:max_sniff_chars])
    if table_kind is ContentKind.JSON:
        return ContentKind.JSON
    if table_kind is ContentKind.PYTHON and sniffed is not ContentKind.JSON:
        return ContentKind.PYTHON
    return sniffed


def classify_incident(incident: IncidentData, *, max_sniff_chars: int = 1_000_000) -> Classification:
    """Decide the ErrorKind: exception type (most specific first), HTTP status, content, then message text."""
    content = incident.get("content")
    names = list(incident.get("error_mro") or []) or [incident.get("error_type") or ""]
    status = incident.get("status_code")

    row = _table_row(names)
    table_kind = row[1][1] if row is not None and row[1][0] != EXECUTED else None
    content_kind = content_kind_of(incident, table_kind, max_sniff_chars=max_sniff_chars)
    if row is not None:
        name, (kind, _) = row
        if kind == BY_STATUS:
            by_status = status_kind(status)
            if by_status is not None:
                return Classification(by_status, content_kind, f"type {name} with status {status}")
            return Classification(ErrorKind.UNKNOWN, content_kind, f"type {name} without a decisive status")
        if kind == EXECUTED:
            if content_kind is ContentKind.PYTHON and (
                incident.get("content_kind") == ContentKind.PYTHON or ran_content(incident.get("traceback"), content)
            ):
                return Classification(ErrorKind.EXECUTION, content_kind, f"type {name} raised by running the code")
        elif kind in (ErrorKind.SYNTAX, ErrorKind.SCHEMA) and content_kind is ContentKind.TEXT:
            return Classification(ErrorKind(kind), ContentKind.JSON if kind is ErrorKind.SCHEMA else content_kind,
                                  f"type {name}")
        else:
            return Classification(ErrorKind(kind), content_kind, f"type {name}")

    by_status = status_kind(status)
    if by_status is not None:
        return Classification(by_status, content_kind, f"status {status}")

    if content and content_kind in (ContentKind.JSON, ContentKind.PYTHON):
        if len(content) > max_sniff_chars or _content_fails(content, content_kind):
            return Classification(ErrorKind.SYNTAX, content_kind, f"content does not parse as {content_kind}")
        if content_kind is ContentKind.JSON:
            rule = "content parses; checked against the schema" if incident.get("output_schema") is not None \
                else "content is JSON that parses"
            return Classification(ErrorKind.SCHEMA if incident.get("output_schema") is not None else ErrorKind.SYNTAX,
                                  content_kind, rule)
        if incident.get("content_kind") == ContentKind.PYTHON or ran_content(incident.get("traceback"), content):
            return Classification(ErrorKind.EXECUTION, content_kind, "content is Python that parses and ran")

    message = incident.get("message") or ""
    for pattern, kind in _MESSAGE_RULES:
        if pattern.search(message[:10_000]):
            return Classification(kind, content_kind, f"message matches {pattern.pattern[:40]!r}")
    if content_kind is ContentKind.PYTHON:  # `here is the` and `Thought: I` parse as Python, too
        return Classification(ErrorKind.UNKNOWN, content_kind, "content parses as Python, but nothing shows it ran "
                                                               "(content_kind='python' or its traceback would): not run")
    return Classification(ErrorKind.UNKNOWN, content_kind, "no rule matched")
