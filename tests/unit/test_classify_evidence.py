"""classify: the content's kind and whether it ran come from evidence; a ```python block is Python whatever the
handover, and only the content's own frames in a traceback make an execution incident."""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from dataclasses import dataclass

import pytest

from kgot_errors import recover
from kgot_errors.repair import repair_json
from kgot_errors.repair._classify import classify_incident, ran_content, sniff_content
from kgot_errors.state import ContentKind, ErrorKind, Incident, Layer

FENCED_CODE = [
    "```python\nprint('hi')\n```",
    '```python\nprint("hello world")\n```',
    "```python\nimport os\nos.remove('x')\n```",
    "```python\nresult = compute(42)\n```",
    "```py\nresult = compute(42)\n```",
    "```\nprint('hi')\n```",
]


def _agent_raised(exc: Exception) -> Exception:
    try:  # the agent's own raise: its traceback shows only agent code
        raise exc
    except Exception as caught:  # noqa: BLE001
        return caught


def _incident(exc: Exception | None, content: str) -> dict:
    if exc is None:
        return Incident.parse({"error_type": "AgentError", "message": "unusable", "content": content}).to_data()
    return Incident.from_exception(_agent_raised(exc), content=content).to_data()


@pytest.mark.parametrize(
    ("content", "kind"),
    [(content, ContentKind.PYTHON) for content in FENCED_CODE] + [
        # backticks, quotes and fences that do hold JSON stay JSON
        ('```json\n{"a": 1,}\n```', ContentKind.JSON),
        ('```\n{"a": 1}\n```', ContentKind.JSON),
        ('```\n"hello"\n```', ContentKind.JSON),
        ("```python\n{'a': 1}\n```", ContentKind.JSON),
        ('`{"a": 1}`', ContentKind.JSON),
        ('`"x"`', ContentKind.JSON),
        ('```{"a": 1}```', ContentKind.JSON),
        ('"see ```python\nx = f(1)\n``` here"', ContentKind.JSON),
        ('{"code": "```python\\nprint(1)\\n```"}', ContentKind.JSON),
    ],
)
def test_a_fenced_block_is_judged_by_its_fence_and_block_not_by_its_backticks(content, kind):
    assert sniff_content(content) is kind


@pytest.mark.parametrize("content", FENCED_CODE)
@pytest.mark.parametrize("exc", [ValueError("x"), RuntimeError("x"), Exception("x"), None])
def test_a_python_block_is_python_under_any_generic_handover_and_is_not_run(content, exc):
    got = classify_incident(_incident(exc, content))
    assert got.content_kind is ContentKind.PYTHON, got.rule
    assert got.kind is not ErrorKind.EXECUTION, got.rule


@pytest.mark.parametrize("exc", [ValueError("x"), None])
def test_a_python_block_is_never_recovered_as_a_json_string(exc):
    content = "```python\nprint('hi')\n```"
    if exc is None:
        result = recover({"error_type": "Unknown", "message": "x", "content": content}, checkpointer=None)
    else:
        result = recover(exc, content=content, checkpointer=None)
    assert result.value != "hi" and Layer.SANDBOX not in [a.layer for a in result.attempts], result.summary


CODE = "import json\ndata = json.loads(open('input.json').read())\nprint(data['total'] / len(data['items']))\n"


@dataclass
class _Config:
    retries: int

    def __post_init__(self):
        if self.retries < 0:
            raise ValueError("retries must be >= 0")


def _traceback_of(run) -> tuple[Exception, str]:
    try:
        run()
    except Exception as exc:  # noqa: BLE001
        return exc, "".join(traceback.format_exception(exc))
    raise AssertionError


def _exec(code: str, filename: str = "<string>") -> None:
    exec(compile(code, filename, "exec"), {})  # noqa: S102 - test input we wrote


def _exec_then_call(code: str) -> None:
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - test input we wrote
    namespace["solve"]()


APP_TRACEBACKS = {
    "a dataclass's generated __init__": lambda: _Config(retries=-1),
    "an eval of other code": lambda: eval("int('x')"),  # noqa: S307 - test input we wrote
}

SESSION_TRACEBACK = ('Traceback (most recent call last):\n  File "{name}", line 1, in <module>\n'
                     '  File "/app/config.py", line 3, in load\n    raise ValueError("bad")\nValueError: bad\n')


@pytest.mark.parametrize("case", APP_TRACEBACKS)
def test_generated_frames_of_the_app_are_no_proof_the_content_ran(case):
    exc, text = _traceback_of(APP_TRACEBACKS[case])
    assert '"<string>"' in text  # the frame that once counted as proof
    assert not ran_content(text, CODE)
    got = classify_incident(Incident.from_exception(exc, content=CODE).to_data())
    assert got.kind is not ErrorKind.EXECUTION, got.rule


@pytest.mark.parametrize("name", ["<stdin>", "<ipython-input-3-5f2c>", "<console>"])
def test_a_session_frame_without_the_contents_line_is_no_proof(name):
    assert not ran_content(SESSION_TRACEBACK.format(name=name), CODE)


@pytest.mark.parametrize(
    ("run", "content"),
    [
        (lambda: _exec("items = [1, 2]\ntotal = items[5]\n"), "items = [1, 2]\ntotal = items[5]\n"),
        (lambda: _exec("x = 1\ny = int('x')\n", "<generated>"), "x = 1\ny = int('x')\n"),
        (lambda: _exec("import json\njson.loads('{')\n"), "```python\nimport json\njson.loads('{')\n```"),
        (lambda: _exec_then_call("def solve():\n    return 1 / 0\n"), "def solve():\n    return 1 / 0\n"),
    ],
)
def test_the_contents_own_frames_are_proof(run, content):
    _, text = _traceback_of(run)
    assert ran_content(text, content)


def test_code_run_by_python_c_as_the_sandbox_runs_it_shows_its_frames():
    code = "a = 1\nb = 0\nprint(a / b)\n"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1 and "ZeroDivisionError" in done.stderr
    assert ran_content(done.stderr, code)
    beyond = done.stderr.replace("line 3,", "line 9,")  # a line the content does not have
    assert not ran_content(beyond, code)


# --- a program handed over as broken JSON is not mined for values ---------------------------------------------

PROGRAMS = [
    "x = {'a': 1}\nprint(x)\n",  # was [{"a": 1}, "x"]: a dict and a variable's name collected into an array
    "```python\nx = {'a': 1}\nprint(x)\n```",
    "import json\nprint(json.dumps({'a': 1}))",
    "for i in range(3):\n    print({'i': i})",
    "def answer():\n    return {'a': 1}\n",
    "print(1); import os",  # one line: its second statement starts after a `;`, not a line start
    "print({'a': 1}); del x",
    # one binding with other literals around it: not "the literal is the answer" (review finding)
    'result = {"a": 1}\nNone',
    'x = [1, 2]\n"done"',
    'result = {"a": 1}\n{"b": 2}',
    'a = 1\n{"b": 2}',
    'x = {"a": 1}\nx + 1',
    'result = {"a": 1}\nnull',  # JSON's literals are Python names, but not echoes of a variable
    'x = [1, 2]\nfalse',
]


@pytest.mark.parametrize("content", PROGRAMS)
def test_a_program_handed_over_as_a_json_failure_is_not_recovered_as_data(content: str) -> None:
    engine = repair_json(content)
    assert engine.verdict == "failed" and "the content is Python code, not JSON (line 1: " in engine.reason
    result = recover(json.JSONDecodeError("Expecting value", content, 0), content=content, checkpointer=None)
    assert not result.recovered and "the content is Python code, not JSON" in result.summary


@pytest.mark.parametrize(("content", "value"), [
    ('data = {"a": 1,}', {"a": 1}),  # one name bound to a literal: the literal is the answer
    ("Answer: {'a': 1}", {"a": 1}),  # a label, which Python reads as an annotation
    ("callback([1, 2,])", [1, 2]),
    ('json\nresult = {"a": 1}', {"a": 1}),  # a stray fence language, then the one binding
    ('result = {"a": 1}\nresult', {"a": 1}),  # the binding, then its name echoed as in a REPL
    ("{'a': 1,}", {"a": 1}),
])
def test_a_value_with_a_little_python_shape_around_it_is_still_repaired(content: str, value: object) -> None:
    assert repair_json(content).value == value
