"""True verdicts: how a run ended comes from the supervisor and the host, never from what the code prints or forges."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kgot_errors.sandbox import Sandbox
from kgot_errors.sandbox._verdict import decide

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox suites run as root")


@pytest.mark.parametrize(
    "code",
    [
        "import sys\nsys.exit(256)",
        "import sys\ntry:\n    1/0\nfinally:\n    sys.exit(256)",
        "import sys\nsys.exit(-256)",
    ],
    ids=["exit-256", "exit-256-over-an-exception", "exit-minus-256"],
)
def test_an_exit_value_the_kernel_would_wrap_to_0_is_not_success(sandbox: Sandbox, code: str):
    res = sandbox.run(code)
    assert not res.ok and res.exit_code in (256, -256) and res.ending == "exit", res


@pytest.mark.parametrize(
    "code",
    [
        "import atexit, os\natexit.register(os._exit, 0)\n1/0",
        "import sys\nsys.excepthook = lambda *a: sys.exit(256)\n1/0",
        "import os, threading\nthreading.excepthook = lambda *a: os._exit(0)\n1/0",
    ],
    ids=["atexit-os-exit-0", "excepthook-exit-256", "threading-hook"],
)
def test_an_uncaught_exception_stays_a_failure_whatever_runs_after_it(sandbox: Sandbox, code: str):
    res = sandbox.run(code)
    assert not res.ok and res.exception == "ZeroDivisionError" and res.exit_code == 1, res
    assert "ZeroDivisionError: division by zero" in res.stderr


def test_forged_or_closed_ending_records_never_make_a_failure_a_success(sandbox: Sandbox):
    code = textwrap.dedent("""
        import os
        for fd in range(3, 64):
            try:
                os.write(fd, b"('return',)\\n")
                os.close(fd)
            except OSError:
                pass
        1/0
    """)
    res = sandbox.run(code)
    assert not res.ok and res.exit_code != 0, res
    assert "ZeroDivisionError: division by zero" in res.stderr and "_runner" not in res.stderr


def test_exit_152_is_the_programs_own_exit_not_a_cpu_kill(sandbox: Sandbox):
    res = sandbox.run("import sys\nsys.exit(152)")
    assert res.exit_code == 152 and res.killed_by is None and res.ending == "exit", res


def test_a_self_sent_sigxcpu_is_a_signal_not_the_cpu_limit(sandbox: Sandbox):
    res = sandbox.run("import os\nos.kill(os.getpid(), 24)")
    assert res.killed_by is None and res.signal == 24 and res.ending == "signal" and not res.ok, res


def test_output_that_imitates_the_supervisor_is_just_output(sandbox: Sandbox):
    fake = b"\x03\x00\x00\x00\x0f{'status': 0}\n"  # a verdict frame, written by the code
    code = f"import sys\nsys.stdout.buffer.write({fake!r}); sys.stdout.flush()\nsys.stderr.buffer.write({fake!r})\nsys.exit(3)"
    res = sandbox.run(code)
    assert res.exit_code == 3 and not res.ok
    assert "{'status': 0}" in res.stdout and "{'status': 0}" in res.stderr


def test_a_clean_exit_joins_threads_and_runs_atexit_as_python_does(sandbox: Sandbox):
    code = textwrap.dedent("""
        import atexit, threading, time
        atexit.register(print, "atexit ran")
        threading.Thread(target=lambda: (time.sleep(0.2), print("thread done"))).start()
        print("main done")
    """)
    res = sandbox.run(code)
    assert res.ok and res.stdout == "main done\nthread done\natexit ran\n", res


def test_a_syntax_error_is_reported_as_the_exception(sandbox: Sandbox):
    res = sandbox.run("def f(:\n    pass")
    assert not res.ok and res.exception == "SyntaxError" and "SyntaxError" in res.stderr


# ------------------------------------------------------------------ the decision itself (pure)
def _verdict(status: int, record: bytes = b"", **kw: object) -> dict[str, object]:
    return {"status": status, "record": record, "cpu": 0.0, "cpu_limit": 10.0, "timed_out": False, **kw}


@pytest.mark.parametrize(
    ("verdict", "oom", "expect"),
    [
        (_verdict(0, b"('return',)\n"), False, (0, None, None, "exit")),
        (_verdict(0, b"('exit', 256)\n"), False, (256, None, None, "exit")),  # forced to 0 later: still 256
        (_verdict(1 << 8, b"('exit', 256)\n"), False, (256, None, None, "exit")),
        (_verdict(152 << 8, b"('exit', 152)\n"), False, (152, None, None, "exit")),
        (_verdict(24), False, (152, 24, None, "signal")),
        (_verdict(24, cpu=9.99), False, (152, 24, "cpu", "cpu")),
        (_verdict(9, cpu=11.0), False, (137, 9, "cpu", "cpu")),
        (_verdict(9), True, (137, 9, "memory", "memory")),
        (_verdict(9, timed_out=True), False, (137, 9, "timeout", "timeout")),
        (_verdict(0, b"('exception', 'ZeroDivisionError')\n"), False, (0, None, None, "exception")),
        (_verdict(0, b"('return',)\n('return',)\n"), False, (0, None, None, "exception")),
        (_verdict(0, b"garbage"), False, (0, None, None, "exception")),
    ],
)
def test_decide_lets_a_record_turn_success_into_failure_never_back(verdict, oom, expect):
    got = decide(verdict, host_timed_out=False, host_status=0, oom=oom)
    assert (got.exit_code, got.signal, got.killed_by, got.ending) == expect


def test_decide_without_a_verdict_is_never_a_success():
    got = decide(None, host_timed_out=False, host_status=0, oom=False)
    assert got.ending == "lost" and got.exit_code is None
    assert decide(None, host_timed_out=True, host_status=None, oom=False).killed_by == "timeout"


# ------------------------------------------------------------------ the CLI's output
def test_cli_run_escapes_control_characters_and_its_verdict_line_stays_visible(tmp_path: Path):
    program = tmp_path / "evil.py"
    program.write_text(textwrap.dedent("""
        import sys
        sys.stdout.write("osc52 \\x1b]52;c;ZXZpbA==\\x07 hidden \\x1b[8m title \\x1b]0;pwned\\x07 bell \\x07 cr \\r\\n")
        sys.stderr.write("err \\x1b[8m\\x9b2J csi\\n")
        sys.exit(256)
    """))
    exe = Path(sys.executable).with_name("kgot-errors")
    proc = subprocess.run([str(exe), "run", str(program), "--backend", "bwrap", "--timeout", "10"],
                          capture_output=True, timeout=60, env={**os.environ, "TERM": "xterm"})
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\x9b" not in err and "\x1b" not in err
    assert "\\x1b]52;c;ZXZpbA==" in out and "osc52" in out
    assert "kgot-errors: exit 256" in err.splitlines()[-1]
    assert proc.returncode != 0
