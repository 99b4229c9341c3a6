"""The kgot-errors command: exit codes, stdout/stderr contract, history and resume, help that helps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "broken_output.txt"
EXAMPLE_SCHEMA = ROOT / "examples" / "review.schema.json"


def _cli(*args: str, stdin: bytes | None = None, env: dict | None = None, timeout: float = 60):
    exe = shutil.which("kgot-errors") or f"{sys.executable} -m kgot_errors.cli"
    cmd = [*exe.split(), *args] if " " in exe else [exe, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=env)


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KGOT_", "OPENAI_", "LANGSMITH_"))}
    e["KGOT_DATA_DIR"] = str(tmp_path / "data")
    return e


def test_repairs_the_shipped_example_against_its_schema(env):
    out = _cli("repair", str(EXAMPLE), "--schema", str(EXAMPLE_SCHEMA), env=env)
    assert out.returncode == 0, out.stderr.decode()
    value = json.loads(out.stdout)
    assert value == {"title": "Shipping Service Model", "rating": 4.5, "pros": ["fast", "cheap"],
                     "cons": ["sarcasm detection"], "would_recommend": True}
    verdict = out.stderr.decode().strip().splitlines()
    assert len(verdict) == 1 and verdict[0].startswith("recovered by ") and "[thread " in verdict[0]


def test_stdin_json_output_and_history_and_resume_of_the_thread(env):
    out = _cli("repair", "-", "--json", stdin=b'{"a": 1, "b": [1, 2,],}', env=env)
    assert out.returncode == 0
    result = json.loads(out.stdout)
    assert result["recovered"] and result["value"] == {"a": 1, "b": [1, 2]}
    thread = result["thread_id"]
    hist = _cli("history", thread, env=env)
    assert hist.returncode == 0
    lines = hist.stdout.decode().splitlines()
    assert lines[0].startswith(f"thread {thread}: syntax")
    assert any("parser_fix" in ln and "recovered" in ln for ln in lines)
    assert lines[-1].startswith("finished: recovered by")
    hist_json = json.loads(_cli("history", thread, "--json", env=env).stdout)
    assert [a["layer"] for a in hist_json["attempts"]] == [a["layer"] for a in result["attempts"]]
    resumed = _cli("resume", thread, env=env)
    assert resumed.returncode == 0 and json.loads(resumed.stdout) == {"a": 1, "b": [1, 2]}


def test_not_recovered_exits_1_with_the_reason_and_nothing_on_stdout(env):
    out = _cli("repair", "-", "--no-checkpoint", stdin=b"I cannot help with that.", env=env)
    assert out.returncode == 1
    assert out.stdout == b""
    assert out.stderr.decode().startswith("not recovered (syntax): ")
    assert "no chat model configured" in out.stderr.decode()


def test_python_files_are_repaired_as_code(env, tmp_path):
    src = tmp_path / "gen.py"
    src.write_text("```python\nimport math\nprint(math.sqrt(16))\n```\n")
    out = _cli("repair", str(src), "--no-checkpoint", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == "import math\nprint(math.sqrt(16))"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["repair", "/nonexistent/file.txt"], "No such file"),
        (["repair", "-", "--schema", "/nonexistent/schema.json"], "No such file"),
        (["repair", "--bogus"], "unrecognized arguments"),
        (["history"], "required: thread"),
        (["repair", "-", "--profile", "staging"], "invalid choice"),
        ([], "usage:"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(env, args, message):
    out = _cli(*args, stdin=b"{}", env=env)
    assert out.returncode == 2
    assert message in out.stderr.decode()
    assert "Traceback" not in out.stderr.decode()


def test_a_bad_schema_file_is_a_usage_error_and_bad_settings_a_config_error(env, tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text('{"type": 5}')
    out = _cli("repair", "-", "--schema", str(bad), stdin=b"{}", env=env)
    assert out.returncode == 2 and "schema" in out.stderr.decode().lower()
    out = _cli("repair", "-", stdin=b"{}", env={**env, "KGOT_API_ERROR_MANAGEMENT__MAX_RETRIES": "lots"})
    assert out.returncode == 3 and "KGOT_API_ERROR_MANAGEMENT__MAX_RETRIES" in out.stderr.decode()


def test_an_unknown_thread_in_an_existing_store_is_a_usage_error(env):
    _cli("repair", "-", stdin=b"{}", env=env)  # the store now exists
    out = _cli("history", "no-such-thread", env=env)
    assert out.returncode == 2 and "no recovery thread 'no-such-thread'" in out.stderr.decode()


def test_an_unwritable_checkpoint_store_is_reported_by_setting_name(env, tmp_path):
    store = tmp_path / "ro.sqlite"
    _cli("repair", "-", "--checkpoint", str(store), stdin=b"{}", env=env)
    store.chmod(0o444)
    if os.geteuid() == 0:  # root ignores file modes; a directory in the way fails for everyone
        store.unlink()
        store.mkdir()
    out = _cli("repair", "-", "--checkpoint", str(store), stdin=b"{}", env=env)
    assert out.returncode == 3  # a store error (exit codes: 2 is for bad arguments)
    assert "KGOT_CHECKPOINT_URL" in out.stderr.decode() and "Traceback" not in out.stderr.decode()


def test_help_explains_every_command():
    top = _cli("--help")
    assert top.returncode == 0
    text = top.stdout.decode()
    for word in ("repair", "history", "resume", "examples:", "KGOT_DATA_DIR"):
        assert word in text
    for command in ("repair", "history", "resume"):
        sub = _cli(command, "--help")
        assert sub.returncode == 0 and "--checkpoint" in sub.stdout.decode()


def test_repair_jsonl_prints_one_result_per_incident_in_input_order(env, tmp_path):
    lines = [{"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": "{'i': %d,}" % i} for i in range(3)]
    lines.insert(1, {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": "no JSON here at all"})
    batch = tmp_path / "incidents.jsonl"
    batch.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")  # blank lines are skipped
    out = _cli("repair", "--jsonl", str(batch), "--concurrency", "3", env=env)
    assert out.returncode == 1  # not every incident recovered
    results = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [r["recovered"] for r in results] == [True, False, True, True]
    assert [r["value"] for r in results if r["recovered"]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert out.stderr.decode().strip().endswith("3/4 recovered")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_repair_jsonl_lines_of_content_alone_are_recovered_from_their_evidence(env, tmp_path, workers):
    """No error_type or message on the lines: broken JSON is repaired, valid JSON comes back as written, code that
    nothing shows ran is not run."""
    lines = [{"id": "a", "content": "{'i': 1,}"}, {"id": "b", "content": '{"n":  2}'},
             {"id": "c", "content": "import os\nos.remove('x')"}]
    batch = tmp_path / "incidents.jsonl"
    batch.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = _cli("repair", "--jsonl", str(batch), "--no-checkpoint", "--workers", workers, env=env)
    results = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert out.returncode == 1, out.stderr.decode()
    assert [(r["id"], r["recovered"], r["kind"]) for r in results] == [("a", True, "syntax"), ("b", True, "syntax"),
                                                                     ("c", False, "unknown")]
    assert results[0]["value"] == {"i": 1} and results[1]["text"] == '{"n":  2}'
    assert all(a["layer"] != "sandbox" for a in results[2]["attempts"])


def test_batch_output_streams_in_input_order(capsys):
    from kgot_errors.cli import _InOrder, _Progress

    class Done:
        def __init__(self, i: int) -> None:
            self.i = i

        def to_data(self) -> dict:
            return {"i": self.i}

    out = _InOrder(_Progress(4))
    printed = lambda: [json.loads(x)["i"] for x in capsys.readouterr().out.splitlines()]  # noqa: E731
    out.add(2, Done(2))
    assert printed() == []  # held until 0 and 1 are out
    out.add(0, Done(0))
    assert printed() == [0]
    out.add(1, Done(1))
    assert printed() == [1, 2]
    out.add(3, Done(3))
    assert printed() == [3]
