"""Python code repair: fences and prose stripped, dedent, typography, REPL prompts; ast.parse decides."""

from __future__ import annotations

import ast

import pytest

from kgot_errors.nodes._code import code_layer, syntax_error

REPAIRS = [
    # (input, expected code, expected steps)
    ("def f():\n    return 1\n", "def f():\n    return 1\n", ()),
    ("x = 1", "x = 1", ()),
    ("```python\ndef f(x):\n    return x * 2\n```", "def f(x):\n    return x * 2", ("extracted a fenced code block",)),
    ("Here is the code:\n```py\nimport os\n```\nIt imports os.", "import os", ("extracted a fenced code block",)),
    ("```bash\npip install x\n```\n```python\nprint(1)\n```", "print(1)", ("extracted a fenced code block",)),
    ("```\nprint(1)\n", "print(1)", ("extracted a fenced code block",)),  # unclosed fence
    (
        "Sure! Here you go:\n\ndef add(a, b):\n    return a + b\n\nThis function adds two numbers.",
        "def add(a, b):\n    return a + b",
        ("dropped prose around the code",),
    ),
    ("    x = 1\n    if x:\n        y = 2\n", "x = 1\nif x:\n    y = 2", ("dedented",)),
    ("print(\u201chello\u201d)", 'print("hello")', ("replaced smart quotes and odd spaces",)),
    ("print(\u2018hi\u2019)", "print('hi')", ("replaced smart quotes and odd spaces",)),
    ("x = 1\u00a0+ 2", "x = 1 + 2", ("replaced smart quotes and odd spaces",)),
    ("x\u200b = 3", "x = 3", ("replaced smart quotes and odd spaces",)),
    (">>> x = 1\n>>> print(x)\n1", "x = 1\nprint(x)", ("removed interactive prompts and output",)),
    (
        "<think>use a loop</think>\n```python\nfor i in range(3):\n    print(i)\n```",
        "for i in range(3):\n    print(i)",
        ("removed <think> blocks", "extracted a fenced code block"),
    ),
    ("<code>y = [1, 2]</code>", "y = [1, 2]", ("extracted a <code> block",)),
]


@pytest.mark.parametrize(("text", "code", "steps"), REPAIRS)
def test_code_layer_recovers_python(text: str, code: str, steps: tuple[str, ...]) -> None:
    out = code_layer(text)
    assert out.ok, out.reason
    assert out.value == code and out.text == code
    assert out.steps == steps
    ast.parse(out.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty input"),
        ("   \n", "empty input"),
        ("def f(:\n    pass", "SyntaxError: invalid syntax (line 1)"),
        ("Sorry\nI can't do that.", "SyntaxError: unterminated string literal"),
        ("if x:\nprint(1)", "SyntaxError: expected an indented block"),
    ],
)
def test_code_layer_fails_with_the_syntax_error_and_its_line(text: str, reason: str) -> None:
    out = code_layer(text)
    assert not out.ok and out.value is None
    assert (out.reason or "").startswith(reason)


def test_code_layer_does_not_mistake_prose_words_for_code() -> None:
    assert not code_layer("Thanks!\nI can't help with that, sorry.").ok


@pytest.mark.parametrize("text", [None, 5, b"x=1"])
def test_code_layer_refuses_non_text(text: object) -> None:
    out = code_layer(text)  # type: ignore[arg-type]
    assert not out.ok and "expected text" in (out.reason or "")


@pytest.mark.parametrize("text", ["\x00", "(" * 10_000, "x = '" + "a" * 100_000, "```" * 1000, "\ud83d"])
def test_code_layer_never_raises(text: str) -> None:
    out = code_layer(text)
    assert out.ok or out.reason


@pytest.mark.parametrize(
    ("code", "error"),
    [("x = 1", None), ("x = (", "SyntaxError: '(' was never closed (line 1)"), ("a\x00b", "SyntaxError")],
)
def test_syntax_error_reports_message_and_line(code: str, error: str | None) -> None:
    found = syntax_error(code)
    assert found == error if error is None else (found or "").startswith(error)
