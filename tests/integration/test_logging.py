"""JSON-lines log files: errors to error_management.log, everything to combined.log, secrets and prompts kept out."""

from __future__ import annotations

import json
import logging

import pytest

from kgot_errors import recover
from kgot_errors.observability.events import record_result
from kgot_errors.observability.logs import configure_logging
from kgot_errors.runtime.settings import Settings

BROKEN = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": "{'a': 1,}"}


def _lines(path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def logs(tmp_path):
    setup = configure_logging(tmp_path / "logs", level="INFO")
    yield setup
    setup.close()


def test_nothing_is_configured_at_import():
    import importlib

    import kgot_errors.observability as obs

    importlib.reload(obs)
    assert not logging.getLogger("kgot_errors").handlers


def test_each_finished_recovery_is_one_json_line_and_errors_go_to_both_files(logs):
    result = recover(BROKEN, checkpointer=None, settings=Settings())  # recover() records its own result
    logging.getLogger("kgot_errors.graph.recover").error("store broke", extra={"event": "store_error",
                                                                               "target": "x.sqlite"})
    for handler in logs.handlers:
        handler.flush()
    combined = _lines(logs.combined_log)
    errors = _lines(logs.error_log)

    finished = [r for r in combined if r.get("event") == "incident_finished"]
    assert len(finished) == 1
    line = finished[0]
    assert line["level"] == "INFO" and line["service"] == "kgot-error-management"
    assert line["logger"] == "kgot_errors.observability.events"
    assert (line["kind"], line["outcome"], line["recovered_by"]) == ("syntax", "recovered", "parser_fix")
    assert line["layers"] == ["unicode_fix:failed", "parser_fix:recovered"]
    assert line["duration_s"] == result.duration_s and line["attempts"] == 2 and "timestamp" in line

    assert [r["message"] for r in errors] == ["store broke"]
    assert errors[0]["level"] == "ERROR" and errors[0]["event"] == "store_error"
    assert any(r["message"] == "store broke" for r in combined)
    assert all(r["level"] in ("ERROR", "CRITICAL") for r in errors)


def test_secrets_and_prompts_do_not_reach_the_files(logs):
    log = logging.getLogger("kgot_errors.runtime.model")
    prompt = "Please fix this output: " + "x" * 5000
    log.info("calling the model at %s", "postgresql://kgot:hunter2@db:5432/k",
             extra={"api_key": "sk-live-1234567890abcdef", "prompt": prompt, "headers": {"Authorization": "Bearer abc"},
                    "tokens": 120})
    log.error("auth failed with key sk-proj-abcdefghijklmnop1234")
    for handler in logs.handlers:
        handler.flush()
    text = logs.combined_log.read_text(encoding="utf-8") + logs.error_log.read_text(encoding="utf-8")
    for secret in ("hunter2", "sk-live-1234567890abcdef", "abcdefghijklmnop1234", "Bearer abc", "x" * 100):
        assert secret not in text
    line = [r for r in _lines(logs.combined_log) if r["message"].startswith("calling the model")][0]
    assert line["api_key"] == "***" and line["prompt"] == f"<{len(prompt)} chars>"
    assert line["headers"] == {"Authorization": "***"} and line["tokens"] == 120
    assert line["message"] == "calling the model at postgresql://kgot:***@db:5432/k"


def test_a_slow_recovery_logs_a_performance_warning(logs):
    from kgot_errors.state import RecoveryResult

    slow = RecoveryResult(recovered=True, value=1, kind="transient", outcome="recovered", summary="ok", attempts=[],
                          recovered_by="backoff", duration_s=45.0, thread_id="t-slow")
    record_result(slow)
    for handler in logs.handlers:
        handler.flush()
    warned = [r for r in _lines(logs.combined_log) if r.get("alert_type") == "PERFORMANCE_WARNING"]
    assert len(warned) == 1 and warned[0]["recovery_time"] == 45.0 and warned[0]["thread_id"] == "t-slow"
    assert _lines(logs.error_log) == []  # a warning, not an error


def test_configuring_again_replaces_the_handlers_and_close_removes_them(tmp_path):
    first = configure_logging(tmp_path / "a")
    second = configure_logging(tmp_path / "b", level="DEBUG")
    try:
        root = logging.getLogger("kgot_errors")
        assert [h for h in root.handlers if h in first.handlers] == []
        assert all(h in root.handlers for h in second.handlers)
        logging.getLogger("kgot_errors.x").debug("debug line")
        for handler in second.handlers:
            handler.flush()
        assert [r["message"] for r in _lines(second.combined_log)] == ["debug line"]
        assert _lines(first.combined_log) == []
    finally:
        second.close()
    assert not logging.getLogger("kgot_errors").handlers


def test_an_unwritable_log_dir_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        configure_logging(blocker / "logs")
