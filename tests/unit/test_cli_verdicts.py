"""The CLI tells the truth of a verdict: valid input printed byte for byte, a degraded fix printed with exit 5 and
its changes on the verdict line, strict JSON only, nothing recovered from invalid UTF-8."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXE = [sys.executable, "-m", "kgot_errors.cli", "repair", "-", "--no-checkpoint"]


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KGOT_", "OPENAI_", "LANGSMITH_"))}
    e["KGOT_DATA_DIR"] = str(tmp_path / "data")
    return e


def _repair(stdin: bytes, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *args], input=stdin, capture_output=True, timeout=90, env=env)


def test_valid_input_is_printed_byte_for_byte(env) -> None:
    text = b'{"v":"C:\\\\users\\\\u1234\\\\docs",  "n": 1E5, "s": "\\u00e9"}'
    out = _repair(text, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == text + b"\n"
    assert b"valid as given" in out.stderr


def test_a_completed_truncated_document_is_degraded_exit_5_with_its_changes(env) -> None:
    out = _repair(b'{"items": [1, 2, 3], "note": "cut', env)
    assert out.returncode == 5, out.stderr
    assert out.stdout.strip() == b'{"items": [1, 2, 3], "note": "cut"}'
    assert b"degraded" in out.stderr and b"[changes: truncated" in out.stderr


def test_numbers_beyond_a_double_are_not_strict_json(env) -> None:
    out = _repair(b'{"k":[-6E58585,1e999]}', env)
    assert out.returncode == 1 and out.stdout == b""
    assert b"Infinity" not in out.stdout


def test_invalid_utf8_is_never_recovered(env) -> None:
    out = _repair(b'{"city": "S\xe3o Paulo"}', env)
    assert out.returncode == 1 and out.stdout == b""
    assert b"invalid UTF-8" in out.stderr


def test_the_policy_setting_can_accept_what_the_default_refuses(env) -> None:
    text = b'{"a": 1, "extra": 2}'
    schema = b'{"type": "object", "additionalProperties": false, "properties": {"a": {"type": "integer"}}}'
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(schema)
    refused = _repair(text, env, "--schema", f.name)
    assert refused.returncode == 1 and b"policy refuses" in refused.stderr
    lenient = _repair(text, {**env, "KGOT_SYNTAX_ERROR_MANAGEMENT__CHANGES": '{"removed": "degrade"}'},
                      "--schema", f.name)
    assert lenient.returncode == 5 and lenient.stdout.strip() == b'{"a": 1}'
    os.unlink(f.name)
