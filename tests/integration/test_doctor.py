"""doctor against a good setup (all pass or skip) and a broken one (each broken part failing by name)."""

from __future__ import annotations

import os
import socket

import pytest

from kgot_errors.cli import main
from kgot_errors.observability import doctor
from kgot_errors.runtime.settings import load_settings
from kgot_errors.testing import answer, loopback_openai


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def _bwrap_or_skip() -> None:
    from kgot_errors.errors import SandboxUnavailable
    from kgot_errors.sandbox import get_sandbox

    try:
        get_sandbox("bwrap")
    except SandboxUnavailable as exc:
        if os.environ.get("KGOT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"bwrap sandbox required here: {exc}")
        pytest.skip(f"bwrap sandbox unavailable: {exc}")


def _by_part(checks) -> dict[str, tuple[str, str]]:
    return {c.part: (c.status, c.detail) for c in checks}


def test_a_good_setup_passes_and_unconfigured_parts_are_skipped(tmp_path):
    _bwrap_or_skip()
    with loopback_openai(answer("OK")) as server:
        settings = load_settings(environ={}, python_executor={"backend": "bwrap"},
                                 llm={"model": "openai:loopback", "base_url": server.base_url, "api_key": "k"})
        checks = doctor(settings, checkpointer=str(tmp_path / "ok.sqlite"), log_dir=tmp_path / "logs",
                        docker_host=None)
    parts = _by_part(checks)
    assert {p: s for p, (s, _) in parts.items()} == {
        "packages": "pass", "sandbox bwrap": "pass", "docker": "skip", "model": "pass", "checkpoint store": "pass",
        "postgresql": "skip", "log dir": "pass"}
    assert "isolated" in parts["sandbox bwrap"][1] and "uid 0," not in parts["sandbox bwrap"][1]
    assert "'OK'" in parts["model"][1]
    assert len(server.requests) == 1  # the model was really asked


def test_a_configured_postgres_is_checked(tmp_path, postgres_url):
    checks = doctor(load_settings(environ={}), checkpointer=postgres_url, log_dir=tmp_path / "logs",
                    docker_host=None, ask_model=False)
    parts = _by_part(checks)
    assert parts["postgresql"][0] == "pass" and parts["checkpoint store"][0] == "pass"


def test_each_broken_part_fails_by_name(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    port = _closed_port()
    settings = load_settings(environ={}, python_executor={"backend": "docker"},
                             llm={"model": "openai:gpt-4o-mini", "base_url": f"http://127.0.0.1:{port}/v1",
                                  "api_key": "k", "timeout_seconds": 5})
    checks = doctor(settings, checkpointer=f"postgresql://kgot@127.0.0.1:{port}/kgot", log_dir=blocker / "logs",
                    docker_host=f"tcp://127.0.0.1:{port}")
    parts = _by_part(checks)
    failed = {p for p, (s, _) in parts.items() if s == "fail"}
    assert failed == {"sandbox docker", "docker", "model", "checkpoint store", "postgresql", "log dir"}
    assert parts["packages"][0] == "pass"
    assert "not reachable" in parts["docker"][1] and "did not answer" in parts["model"][1]
    assert "cannot reach PostgreSQL" in parts["checkpoint store"][1]
    assert "not writable" in parts["log dir"][1]


def test_a_checkpoint_path_that_is_a_directory_fails(tmp_path):
    checks = doctor(load_settings(environ={}), checkpointer=str(tmp_path), log_dir=tmp_path / "logs",
                    docker_host=None, ask_model=False)
    status, detail = _by_part(checks)["checkpoint store"]
    assert status == "fail" and "is a directory" in detail


@pytest.mark.filterwarnings("ignore:sandbox backend 'unsafe-subprocess':RuntimeWarning")
def test_cli_exit_code_and_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KGOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KGOT_SANDBOX_BACKEND", "unsafe-subprocess")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    code = main(["doctor", "--checkpoint", str(tmp_path / "c.sqlite"), "--log-dir", str(tmp_path / "logs")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert any(line.startswith("PASS  checkpoint store") for line in out.splitlines())
    assert any(line.startswith("SKIP  model") for line in out.splitlines())
    assert "all checks passed" in err

    blocker = tmp_path / "f"
    blocker.write_text("x")
    code = main(["doctor", "--checkpoint", str(tmp_path / "c.sqlite"), "--log-dir", str(blocker / "logs")])
    out, err = capsys.readouterr()
    assert code == 1 and "FAIL  log dir" in out and "1 failed: log dir" in err
