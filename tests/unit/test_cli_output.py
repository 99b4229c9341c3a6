"""What the command line writes, and where: passed-through fields, -o/--indent/--inline, progress, operations for resume."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "kgot_errors.cli"]
DECODE = "json.decoder.JSONDecodeError"


def _cli(*args: str, env: dict, stdin: bytes | None = None, timeout: float = 90):
    return subprocess.run([*EXE, *args], input=stdin, capture_output=True, timeout=timeout, env=env)


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KGOT_", "OPENAI_", "LANGSMITH_"))}
    e["KGOT_DATA_DIR"] = str(tmp_path / "data")
    return e


def _jsonl(path: Path, *items: dict) -> str:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return str(path)


def test_jsonl_lines_carry_their_own_fields_to_the_output_line(env, tmp_path):
    batch = _jsonl(tmp_path / "in.jsonl",
                   {"id": "req-1", "error_type": DECODE, "message": "m", "content": "{'a': 1,}"},
                   {"id": 2, "trace": {"span": "s"}, "error_type": DECODE, "message": "m", "content": "no JSON"})
    out = _cli("repair", "--jsonl", batch, "--no-checkpoint", env=env)
    lines = [json.loads(x) for x in out.stdout.decode().splitlines()]
    assert [x["id"] for x in lines] == ["req-1", 2] and lines[1]["trace"] == {"span": "s"}
    assert lines[0]["recovered"] and lines[0]["value"] == {"a": 1} and not lines[1]["recovered"]


def test_a_passed_through_field_that_a_result_field_would_overwrite_is_refused(env, tmp_path):
    batch = _jsonl(tmp_path / "in.jsonl", {"summary": "mine", "error_type": DECODE, "message": "m", "content": "[1,"})
    out = _cli("repair", "--jsonl", batch, "--no-checkpoint", env=env)
    assert out.returncode == 2 and out.stdout == b""
    assert "in.jsonl:1: field 'summary' cannot be passed through" in out.stderr.decode()


def test_jsonl_lines_get_the_schema_given_on_the_command_line(env, tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "required": ["title"]}))
    batch = _jsonl(tmp_path / "in.jsonl", {"error_type": DECODE, "message": "m", "content": '{"b": 2,}'},
                   {"error_type": DECODE, "message": "m", "content": '{"title": "t",}'})
    out = _cli("repair", "--jsonl", batch, "--schema", str(schema), "--no-checkpoint", env=env)
    lines = [json.loads(x) for x in out.stdout.decode().splitlines()]
    assert out.returncode == 1
    assert [x["recovered"] for x in lines] == [False, True]
    assert "title" in lines[0]["summary"] and lines[1]["value"] == {"title": "t"}


def test_output_file_and_indent(env, tmp_path):
    target = tmp_path / "out.json"
    out = _cli("repair", "-", "-o", str(target), "--indent", "4", "--no-checkpoint", stdin=b"{'a': [1,],}", env=env)
    assert out.returncode == 0 and out.stdout == b""
    assert target.read_text() == '{\n    "a": [\n        1\n    ]\n}\n'
    many = _cli("repair", "--jsonl", _jsonl(tmp_path / "in.jsonl", {"error_type": DECODE, "message": "m",
                                                                      "content": "[1,]"}),
                "-o", str(tmp_path / "out.jsonl"), "--no-checkpoint", env=env)
    assert many.returncode == 0 and json.loads((tmp_path / "out.jsonl").read_text())["value"] == [1]
    refused = _cli("repair", "--jsonl", str(tmp_path / "in.jsonl"), "--indent", "2", env=env)
    assert refused.returncode == 2 and "--indent applies to one repaired value" in refused.stderr.decode()


def test_inline_rewrites_recovered_files_and_leaves_the_others(env, tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text("```json\n{'a': 1, 'b': [2,],}\n```\n")
    bad.write_text("I cannot help with that.")
    single = _cli("repair", str(good), "--inline", "--indent", "2", "--no-checkpoint", env=env)
    assert single.returncode == 0 and single.stdout == b""
    assert json.loads(good.read_text()) == {"a": 1, "b": [2]} and good.read_text().startswith('{\n  "a"')
    both = _cli("repair", str(good), str(bad), "--inline", "--no-checkpoint", env=env)
    assert both.returncode == 1 and both.stdout == b""
    assert bad.read_text() == "I cannot help with that."  # not recovered: untouched
    err = both.stderr.decode()
    assert f"{good}: recovered by" in err and f"{bad}: not recovered" in err
    assert not list(tmp_path.glob(".*.tmp"))
    assert _cli("repair", "-", "--inline", stdin=b"{}", env=env).returncode == 2


@pytest.mark.parametrize("text", ['{"a":1,  "b":[2]}', '{"a":1,  "b":[2]}\n'], ids=["no-final-newline", "newline"])
def test_inline_leaves_a_valid_file_byte_for_byte_and_its_time_too(env, tmp_path, text):
    valid = tmp_path / "valid.json"
    valid.write_bytes(text.encode())
    os.utime(valid, (1_000_000_000, 1_000_000_000))
    out = _cli("repair", str(valid), "--inline", "--no-checkpoint", env=env)
    assert out.returncode == 0, out.stderr.decode()
    assert valid.read_bytes() == text.encode() and valid.stat().st_mtime == 1_000_000_000
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_jsonl_line_nested_past_max_depth_is_an_invalid_result_in_its_place(env, tmp_path):
    deep = '{"id": "r2", "error_type": "%s", "message": "m", "content": "x", "deep": %s, "n": 7}' % (
        DECODE, "[" * 20_000 + "]" * 20_000)
    batch = tmp_path / "in.jsonl"
    batch.write_text(json.dumps({"error_type": DECODE, "message": "m", "content": "[1,]"}) + "\n" + deep + "\n"
                     + json.dumps({"error_type": DECODE, "message": "m", "content": "[2,]"}) + "\n")
    for extra in ([], ["--no-checkpoint"], ["--no-checkpoint", "--workers", "2"]):
        out = _cli("repair", "--jsonl", str(batch), *extra, env=env)
        assert out.returncode == 1, out.stderr.decode()
        lines = [json.loads(x) for x in out.stdout.decode().splitlines()]
        assert [x["recovered"] for x in lines] == [True, False, True] and lines[2]["value"] == [2]
        assert lines[1]["outcome"] == "invalid" and f"{batch}:2: the line nests deeper than max_depth (512) levels" \
            in lines[1]["summary"]
        assert lines[1]["id"] == "r2" and lines[1]["n"] == 7  # its passed-through scalars, read without the depth
        assert "Traceback" not in out.stderr.decode()


def test_progress_lines_when_stderr_is_not_a_terminal(env, tmp_path):
    items = [{"error_type": DECODE, "message": "m", "content": "{'i': %d,}" % i} for i in range(5)]
    out = _cli("repair", "--jsonl", _jsonl(tmp_path / "in.jsonl", *items), "--progress", "--no-checkpoint", env=env)
    progress = [x for x in out.stderr.decode().splitlines() if x.startswith("kgot-errors: ")]
    assert progress and progress[-1].startswith("kgot-errors: 5/5 done, 5 recovered, ")


def test_a_long_batch_reports_progress_without_a_terminal(capsys):
    from kgot_errors.cli import _Progress

    class Done:
        recovered = True

    now = [0.0]
    progress = _Progress(100, clock=lambda: now[0])
    for i in range(100):
        now[0] = i * 0.5  # one result every half second: 50 s in all
        progress.update(i, Done())
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "kgot-errors: 21/100 done, 21 recovered, 10.0 s"
    assert len(lines) == 4  # every 10 s, and nothing for a short batch
    quick = _Progress(3, clock=lambda: 1.0)
    for i in range(3):
        quick.update(i, Done())
    quick.close()
    assert capsys.readouterr().err == ""


OPS = '''
import os, time
from pathlib import Path

CALLS = Path(os.environ["OPS_CALLS"])


def fetch(n):
    calls = int(CALLS.read_text()) + 1 if CALLS.exists() else 1
    CALLS.write_text(str(calls))
    if calls == 1:
        time.sleep(600)  # the first re-run hangs: the CLI is killed here
    return {"fetched": n, "calls": calls}


OPERATIONS = {"fetch": fetch}
'''


def test_resume_of_a_cut_off_backoff_thread_loads_operations(env, tmp_path):
    (tmp_path / "app_ops.py").write_text(OPS)
    env = {**env, "PYTHONPATH": str(tmp_path), "OPS_CALLS": str(tmp_path / "calls")}
    batch = _jsonl(tmp_path / "in.jsonl", {"error_type": "httpx.HTTPStatusError", "message": "503 Service Unavailable",
                                           "status_code": 503, "operation": "fetch", "arguments": {"n": 7}})
    proc = subprocess.Popen([*EXE, "repair", "--jsonl", batch, "--operations", "app_ops:OPERATIONS"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "calls").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the operation was never called"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    unfinished = json.loads(_cli("list", "--unfinished", "--json", env=env).stdout)
    assert [t["status"] for t in unfinished] == ["unfinished"] and unfinished[0]["kind"] == "transient"
    thread = unfinished[0]["thread_id"]
    told = _cli("history", thread, env=env).stdout.decode().splitlines()[-1]
    assert told.startswith("unfinished: next backoff") and "--operations MODULE:NAME (it re-runs 'fetch')" in told

    without = _cli("resume", thread, env=env)
    assert without.returncode == 3 and "unknown operation 'fetch'" in without.stderr.decode()
    resumed = _cli("resume", thread, "--operations", "app_ops:OPERATIONS", env=env)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert json.loads(resumed.stdout) == {"fetched": 7, "calls": 2}
    again = _cli("resume", thread, env={**env, "KGOT_SERVER_OPERATIONS": "app_ops:OPERATIONS"})
    assert again.returncode == 0 and json.loads(again.stdout)["calls"] == 2  # finished: reported, not re-run
    bad = _cli("resume", thread, "--operations", "no_such_module:OPS", env=env)
    assert bad.returncode == 3 and "--operations" in bad.stderr.decode()


def test_workers_repair_json_lines_on_processes_and_print_what_one_process_prints(env, tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "required": ["title"]}))
    items = [{"id": i, "error_type": DECODE, "message": "m", "content": c}
             for i, c in enumerate(['{"title": "t",}', '{"b": 2,}', "no JSON here", "{'title': 'cut off",
                                    '{"title": "x"}', "def f(:\n pass", '{"title": "x\ud800y"}',
                                    '{"title": "x\ud800y",}'] * 5)]  # lone surrogates: the edge replaces them
    batch = _jsonl(tmp_path / "in.jsonl", *items, {"id": "op", "error_type": "TimeoutError", "message": "t"})
    graph = _cli("repair", "--jsonl", batch, "--schema", str(schema), "--checkpoint", "memory", env=env, timeout=180)
    one = _cli("repair", "--jsonl", batch, "--schema", str(schema), "--no-checkpoint", env=env, timeout=180)
    two = _cli("repair", "--jsonl", batch, "--schema", str(schema), "--no-checkpoint", "--workers", "2", env=env,
               timeout=180)
    assert graph.returncode == one.returncode == two.returncode == 1

    def comparable(out):
        lines = [json.loads(x) for x in out.stdout.decode().splitlines()]
        for line in lines:  # timings differ run to run, and without a store there is no thread
            line.pop("duration_s")
            line.pop("thread_id")
            for a in line["attempts"]:
                a.pop("duration_s")
        return lines

    assert comparable(one) == comparable(graph)  # the engine in this process settles what the graph would
    assert comparable(two) == comparable(one)
    assert [x["id"] for x in comparable(two)] == [*range(40), "op"]


def test_a_batch_without_a_store_runs_on_a_worker_per_500_lines_up_to_one_per_core_unless_told(tmp_path, monkeypatch,
                                                                                                capsys):
    from kgot_errors import cli

    asked: list[int] = []
    real = cli._workers
    monkeypatch.setattr(cli, "available_cpus", lambda: 3)
    monkeypatch.setattr(cli, "_workers", lambda settings, count: asked.append(count) or real(settings, 1))
    line = {"error_type": DECODE, "message": "m", "content": "{'a': 1,}"}
    one, some, many = (_jsonl(tmp_path / f"{n}.jsonl", *[line] * n) for n in (1, 1_200, 2_400))
    for batch, extra, want in ((one, [], 1), (some, [], 2), (many, [], 3), (one, ["--workers", "2"], 2),
                               (many, ["--workers", "1"], 1)):
        assert cli.main(["repair", "--jsonl", batch, "--no-checkpoint", *extra]) == 0
        assert {json.dumps(json.loads(x)["value"]) for x in capsys.readouterr().out.splitlines()} == {'{"a": 1}'}
        assert asked.pop() == want
    assert cli.main(["repair", "--jsonl", one, "--checkpoint", "memory"]) == 0 and not asked  # the graph: no workers


def _long_batch_on_workers(tmp_path: Path, env: dict) -> subprocess.Popen:
    """`repair --jsonl` of 20,000 corpus lines on 2 workers, started in a process group of its own."""
    corpus = Path(__file__).resolve().parents[2] / "bench" / "corpus" / "json_public.jsonl"
    cases = [json.loads(x) for x in corpus.read_text(encoding="utf-8").splitlines() if x.strip()]
    batch = _jsonl(tmp_path / "in.jsonl", *({"id": i, "error_type": DECODE, "message": "m",
                                             "content": cases[i % len(cases)]["input"]} for i in range(20_000)))
    return subprocess.Popen([*EXE, "repair", "--jsonl", batch, "--no-checkpoint", "--workers", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_ctrl_c_stops_a_batch_on_workers_with_one_line_and_keeps_what_it_printed(env, tmp_path):
    """Ctrl-C reaches the whole process group: the CLI stops its workers and says so; the workers print nothing.
    Its output is not read until then, so it waits on a full pipe and the workers on it, idle."""
    proc = _long_batch_on_workers(tmp_path, env)
    try:
        assert select.select([proc.stdout], [], [], 60)[0]  # output has begun: the batch is under way
        time.sleep(1.0)  # ~30 lines fill the pipe in milliseconds
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    printed = [json.loads(x) for x in out.splitlines()]
    assert proc.returncode == 130 and err.decode().strip().endswith("kgot-errors: interrupted"), err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    assert 0 < len(printed) < 20_000 and [x["id"] for x in printed] == list(range(len(printed)))


def _running(pid: str) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_batch_killed_leaves_no_worker_behind(env, tmp_path, sig):
    """`kill` of the CLI alone (not its group): its workers, left waiting for work with its pipes open, kept a reader of
    its output waiting forever; they die with it now."""
    proc = _long_batch_on_workers(tmp_path, env)
    try:
        assert select.select([proc.stdout], [], [], 60)[0]  # the batch is under way
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) >= 2
        os.kill(proc.pid, sig)
        proc.communicate(timeout=30)  # the workers held its pipes: this returns once they are gone too
        deadline = time.monotonic() + 10
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(w) for w in workers)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of its group is left (its workers, on a failure)
