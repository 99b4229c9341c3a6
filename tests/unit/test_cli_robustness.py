"""The command line under bad arguments and broken surroundings: usage errors, documented exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "kgot_errors.cli"]
CODE_SLEEPS = "import time\ntime.sleep(20)\nprint('woke')\n"


def _cli(*args: str, env: dict, stdin: bytes | None = None, timeout: float = 90):
    return subprocess.run([*EXE, *args], input=stdin, capture_output=True, timeout=timeout, env=env)


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KGOT_", "OPENAI_", "LANGSMITH_"))}
    e["KGOT_DATA_DIR"] = str(tmp_path / "data")
    return e


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "p.py"
    path.write_text("print('hello from the sandbox')\n")
    return str(path)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--memory", "lots", "not a memory size: 'lots'"),
    ("--memory", "1k", "'1k' is below 16m"),
    ("--timeout", "-1", "must be a positive number of seconds"),
    ("--timeout", "nan", "must be a positive number of seconds"),
    ("--cpus", "0", "must be a positive CPU share"),
])
def test_bad_run_limits_are_usage_errors_with_the_run_usage(env, program, flag, value, message):
    out = _cli("run", program, "--backend", "unsafe-subprocess", flag, value, env=env)
    err = out.stderr.decode()
    assert out.returncode == 2, err
    assert err.startswith("usage: kgot-errors run") and f"argument {flag}: {message}" in err
    assert "Traceback" not in err and out.stdout == b""


def test_cpus_above_the_machines_cores_is_capped_with_a_note(env, program):
    cores = len(os.sched_getaffinity(0))
    out = _cli("run", program, "--backend", "unsafe-subprocess", "--cpus", str(cores + 62), env=env)
    assert out.returncode == 0, out.stderr.decode()
    assert f"--cpus {cores + 62} is more than this machine's {cores} core(s); capped at {cores}" in out.stderr.decode()
    assert out.stdout.decode() == "hello from the sandbox\n"


def test_run_takes_its_backend_and_timeout_from_settings_and_env(env, tmp_path):
    code = tmp_path / "sleepy.py"
    code.write_text(CODE_SLEEPS)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"python_executor": {"default_timeout": 1}}))
    started = time.monotonic()
    out = _cli("run", str(code), "--settings", str(settings), env={**env, "KGOT_SANDBOX_BACKEND": "unsafe-subprocess"})
    assert out.returncode == 124, out.stderr.decode()  # the settings' 1 s, not the built-in 30 s
    assert time.monotonic() - started < 15
    assert "unsafe-subprocess" in out.stderr.decode()  # the backend came from KGOT_SANDBOX_BACKEND
    flag_wins = _cli("run", str(code), "--settings", str(settings), "--timeout", "0.5", "--json",
                     env={**env, "KGOT_SANDBOX_BACKEND": "unsafe-subprocess"})
    assert flag_wins.returncode == 124 and json.loads(flag_wins.stdout)["timed_out"] is True


@pytest.mark.parametrize("command", [["repair", "-"], ["stats"], ["history", "t"], ["list"], ["prune",
                                                                                              "--older-than", "1d"]])
def test_a_bad_flag_shows_that_subcommands_usage(env, command):
    out = _cli(*command, "--bogus", env=env, stdin=b"{}")
    err = out.stderr.decode()
    assert out.returncode == 2
    assert err.startswith(f"usage: kgot-errors {command[0]}"), err
    assert "unrecognized arguments: --bogus" in err and f"(see kgot-errors {command[0]} --help)" in err


@pytest.mark.parametrize(("command", "flag"), [
    (["run", "x.py"], "--checkpoint"),
    (["run", "x.py"], "--no-checkpoint"),
    (["sandbox", "build-image"], "--checkpoint"),
    (["history", "t"], "--no-checkpoint"),
    (["stats"], "--no-checkpoint"),
])
def test_shared_options_exist_only_where_they_mean_something(env, command, flag):
    out = _cli(*command, flag, *([] if flag.startswith("--no-") else ["x"]), env=env)
    assert out.returncode == 2 and f"unrecognized arguments: {flag}" in out.stderr.decode()


def test_run_and_build_image_take_settings():
    for command in (["run"], ["sandbox", "build-image"]):
        text = subprocess.run([*EXE, *command, "--help"], capture_output=True, timeout=60).stdout.decode()
        assert "--settings FILE" in text and "--profile" in text and "--checkpoint" not in text


def test_help_documents_the_exit_codes():
    for command in ([], ["repair"]):
        text = subprocess.run([*EXE, *command, "--help"], capture_output=True, timeout=60).stdout.decode()
        assert "exit codes:" in text
        for line in ("  0    recovered", "  1    not recovered", "  2    usage error",
                     "  3    configuration or store error", "  4    internal error"):
            assert line in text


def test_config_and_store_errors_exit_3(env, tmp_path):
    bad_env = _cli("repair", "-", stdin=b"{}", env={**env, "KGOT_API_ERROR_MANAGEMENT__MAX_RETRIES": "lots"})
    assert bad_env.returncode == 3 and "KGOT_API_ERROR_MANAGEMENT__MAX_RETRIES" in bad_env.stderr.decode()
    (tmp_path / "dir.sqlite").mkdir()
    store = _cli("repair", "-", "--checkpoint", str(tmp_path / "dir.sqlite"), stdin=b"{}", env=env)
    assert store.returncode == 3 and "KGOT_CHECKPOINT_URL" in store.stderr.decode()
    assert "Traceback" not in bad_env.stderr.decode() + store.stderr.decode()


def test_an_internal_crash_exits_4_with_one_line_and_the_traceback_in_a_file(env, tmp_path):
    # fault injection: the recovery itself raises a bug-like error, in a real CLI process
    script = ("import sys, kgot_errors.graph.recover as r, kgot_errors.repair._api as a\n"
              "def broken(*a, **k):\n    raise TypeError('injected bug')\n"
              "r.recover = a.repair_json = broken\n"  # --no-checkpoint repairs JSON with repair_json
              "from kgot_errors.cli import main\nsys.exit(main(['repair', '-', '--no-checkpoint']))\n")
    out = subprocess.run([sys.executable, "-c", script], input=b"{'a': 1,}", capture_output=True, timeout=60,
                         env={**env, "TMPDIR": str(tmp_path)})
    err = out.stderr.decode()
    assert out.returncode == 4, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("kgot-errors: internal error: TypeError: injected bug")
    crash = next(tmp_path.glob("kgot-errors-crash-*.txt"))
    assert str(crash) in err and "Traceback" in crash.read_text() and "injected bug" in crash.read_text()


def test_oversize_input_is_refused_before_any_parse_and_not_stored(env, tmp_path):
    limited = {**env, "KGOT_SYNTAX_ERROR_MANAGEMENT__MAX_CONTENT_CHARS": "1000"}
    code = tmp_path / "big.py"
    code.write_text("x = 1\n" * 400)  # 2,400 characters of valid Python
    for args, stdin in ((["repair", "--kind", "python", str(code)], None), (["repair", "-"], b"[" + b"1," * 800 + b"]")):
        out = _cli(*args, stdin=stdin, env=limited)
        err = out.stderr.decode()
        assert out.returncode == 1 and out.stdout == b"", err
        assert "max_content_chars (1,000)" in err and "neither parsed nor stored" in err
        assert "[thread" not in err  # nothing was recorded
    assert not (tmp_path / "data" / "recoveries.sqlite").exists()


def test_twenty_megabytes_of_python_are_refused_in_seconds(env, tmp_path):
    code = tmp_path / "huge.py"
    code.write_bytes(b"x = (1 +\n" * (20 * 2**20 // 9))  # would take ast.parse minutes and gigabytes
    started = time.monotonic()
    out = _cli("repair", "--kind", "python", str(code), "--no-checkpoint", env=env, timeout=60)
    assert out.returncode == 1 and "neither parsed nor stored" in out.stderr.decode()
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("command", [["stats"], ["list"], ["history", "t1"], ["prune", "--older-than", "1d"],
                                     ["pending"]])
def test_reading_a_missing_sqlite_store_says_it_does_not_exist(env, tmp_path, command):
    missing = tmp_path / "typo.sqlite"
    out = _cli(*command, "--checkpoint", str(missing), env=env)
    err = out.stderr.decode()
    assert out.returncode == 3, err
    assert f"no checkpoint store at {missing}: it does not exist" in err
    assert not missing.exists()  # reading did not create it


def test_stats_on_postgresql_without_psycopg_gives_the_install_hint(env, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "psycopg.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    out = _cli("stats", "--checkpoint", "postgresql://kgot@127.0.0.1:1/none", env={**env, "PYTHONPATH": str(shadow)})
    err = out.stderr.decode()
    assert out.returncode == 3, err
    assert "pip install 'kgot-errors[postgres]'" in err and "Traceback" not in err


def test_history_shows_when_each_step_was_recorded_and_memory_says_it_is_gone(env):
    made = _cli("repair", "-", "--json", stdin=b'{"a": 1,}', env=env)
    thread = json.loads(made.stdout)["thread_id"]
    lines = _cli("history", thread, env=env).stdout.decode().splitlines()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert f"started {today}" in lines[0] and "last step" in lines[0]
    assert all(line[2:4].isdigit() and line[4] == ":" for line in lines[1:-1])  # HH:MM:SS.mmm per attempt
    recorded = json.loads(_cli("history", thread, "--json", env=env).stdout)["recorded_at"]
    assert len(recorded) == len(json.loads(made.stdout)["attempts"]) and all(recorded)
    memory = _cli("repair", "-", "--checkpoint", "memory", stdin=b'{"a": 1,}', env=env)
    assert "the 'memory' store ends with this command" in memory.stderr.decode()
    assert "cannot be read later" in memory.stderr.decode()


def test_the_fields_of_a_line_too_deep_to_parse_are_read_in_linear_time():
    from kgot_errors.cli import _passed_scalars

    line = '{"id": 1, "meta": ' + "[" * 600 + '"' + '\\"' * 40_000  # an unclosed string of escaped quotes
    started = time.monotonic()
    assert {k: v for k, v in _passed_scalars(line).items() if isinstance(v, int)} == {"id": 1}
    assert time.monotonic() - started < 5.0  # rescanning from every quote: about 45 s


def test_a_line_too_deep_to_parse_meets_the_same_rules_as_any_other(env, tmp_path):
    deep = "[" * 600 + "]" * 600
    batch = tmp_path / "in.jsonl"
    batch.write_text('{"id": 4, "id": 5, "error_type": "E", "message": "m", "meta": %s}\n' % deep)
    out = _cli_json_lines(env, batch)
    assert out[0]["id"] == 5 and out[0]["outcome"] == "invalid"  # the last of duplicate keys, as json.loads reads it
    batch.write_text('{"id": 3, "summary": {"a": 1}, "error_type": "E", "message": "m", "meta": %s}\n' % deep)
    clash = subprocess.run([sys.executable, "-m", "kgot_errors.cli", "repair", "--jsonl", str(batch),
                            "--no-checkpoint"], capture_output=True, env=env, timeout=120)
    assert clash.returncode == 2 and "field 'summary' cannot be passed through" in clash.stderr.decode()


def _cli_json_lines(env, batch):
    done = subprocess.run([sys.executable, "-m", "kgot_errors.cli", "repair", "--jsonl", str(batch), "--no-checkpoint"],
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr.decode()
    return [json.loads(x) for x in done.stdout.decode().splitlines()]

