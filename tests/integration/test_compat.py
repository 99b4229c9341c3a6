"""The original system's API (integration/compat.py) running the reference document's usage examples on the real
graph, with a loopback model where they need one. Where the document's behaviour was wrong, the test says so."""

from __future__ import annotations

import json

import pytest
from kgot_errors import Layer, Settings
from kgot_errors.errors import ConfigError, SandboxUnavailable
from kgot_errors.integration.compat import (
    APIErrorManager,
    ErrorContext,
    ErrorRecoveryOrchestrator,
    ErrorSeverity,
    ErrorType,
    IntegrationConfig,
    KGoTErrorManagementSystem,
    PythonExecutorManager,
    SyntaxErrorManager,
    create_kgot_alita_error_integration,
    create_kgot_error_management_system,
)
from kgot_errors.runtime import api_errors
from kgot_errors.sandbox import get_sandbox
from kgot_errors.testing import answer, by_layer, loopback_model, loopback_openai


def sandbox_or_skip():
    try:
        return get_sandbox("auto")
    except SandboxUnavailable as exc:
        import os

        if os.environ.get("KGOT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"an isolating sandbox is required here: {exc}")
        pytest.skip(f"no isolating sandbox here: {exc}")


def test_the_documented_mock_client_is_refused_because_llm_client_is_a_langchain_chat_model():
    class MockLLMClient:  # the reference document's example 1
        async def acomplete(self, prompt: str) -> object:
            class MockResponse:
                text = '{"corrected": "syntax fixed"}'

            return MockResponse()

    with pytest.raises(TypeError, match="langchain chat model"):
        create_kgot_error_management_system(MockLLMClient())


async def test_example_1_basic_error_handling_reports_failure_when_there_is_no_output_to_repair(data_dir):
    # The document's example ran its mock LLM and printed "Error corrected": the original echoed the message
    # back and counted any text that does not look like JSON as valid. With no failing output there is
    # nothing a validator can prove, so the honest answer is (None, False), with the reason recorded.
    with loopback_openai([answer('{"corrected": "syntax fixed"}')] * 10) as server:
        error_system = create_kgot_error_management_system(loopback_model(server))
        result, success = await error_system.handle_error(error=SyntaxError("Invalid JSON: {'missing': quote}"),
                                                          operation_context="JSON parsing operation",
                                                          severity=ErrorSeverity.MEDIUM)
    assert (result, success) == (None, False)
    assert error_system.last_result.kind == "syntax" and error_system.last_result.thread_id


async def test_example_1_with_the_broken_output_attached_is_repaired_and_proven(data_dir):
    error = SyntaxError("Invalid JSON")
    error.problematic_content = "{'missing': quote}"  # the original's attribute for the failing content
    with loopback_openai(by_layer(llm_fix=[answer('{"missing": "quote"}')])) as server:
        error_system = create_kgot_error_management_system(loopback_model(server))
        result, success = await error_system.handle_error(error, "JSON parsing operation")
    assert (result, success) == ({"missing": "quote"}, True)
    assert error_system.last_result.recovered_by in (Layer.PARSER_FIX, Layer.LLM_FIX)
    context = error_system.error_contexts[-1]
    assert context.error_type is ErrorType.SYNTAX_ERROR and context.error_id == error_system.last_result.thread_id


def test_controller_integration_config_maps_to_settings():
    system = create_kgot_error_management_system(None, {"syntax_max_retries": 3, "api_max_retries": 6,
                                                        "voting_rounds": 3, "execution_timeout": 12})
    s = system.settings
    assert (s.syntax_error_management.max_retries, s.api_error_management.max_retries,
            s.error_recovery.voting_rounds, s.python_executor.default_timeout) == (3, 6, 3, 12)
    assert system.api_manager.max_retries == 6 and system.recovery_orchestrator.voting_rounds == 3
    with pytest.raises(ConfigError, match="unknown config key 'syntax_retries'"):
        create_kgot_error_management_system(None, {"syntax_retries": 3})


async def test_api_errors_are_rerun_when_the_operation_is_given_the_original_ran_a_stub(data_dir):
    calls = []

    def fetch(url: str) -> dict:
        calls.append(url)
        if len(calls) < 3:
            raise ConnectionError("connection refused")
        return {"status": "ok"}

    system = KGoTErrorManagementSystem(None, {"api_min_wait": 0, "api_max_wait": 0})
    value, success = await system.handle_error(ConnectionError("connection refused"), "External API call",
                                               operation=fetch, arguments={"url": "http://127.0.0.1:9/x"})
    assert (value, success) == ({"status": "ok"}, True) and len(calls) == 3
    assert system.error_contexts[-1].error_type is ErrorType.API_ERROR
    # Without the operation nothing can be re-run: the original "recovered" by running a stub that always succeeded.
    assert await system.handle_error(ConnectionError("refused"), "External API call") == (None, False)


async def test_example_3_integrated_error_and_health_report(data_dir):
    orchestrator = create_kgot_alita_error_integration(
        llm_client=None,
        config=IntegrationConfig(enable_alita_refinement=True, enable_cross_system_recovery=True,
                                 max_cross_system_retries=2))
    try:
        raise RuntimeError("Complex operation failed")
    except Exception as error:  # noqa: BLE001 - the reference example, as written
        result = await orchestrator.handle_integrated_error(
            error=error, context={"operation_context": "Complex data processing", "tool_name": "data_processor",
                                  "requires_web_context": True}, error_source="system")
    assert result["success"] is False and result["recovery_method"] == "not_recovered" and result["error_id"]
    assert "not recovered" in result["summary"]

    def parse(text: str) -> dict:
        return json.loads(text)

    tool_result = await orchestrator.handle_integrated_error(
        json.JSONDecodeError("Expecting ','", "{'rows': 3,}", 0),
        {"tool_name": "parse", "tool_input": {"text": "{'rows': 3,}"}, "tool": parse}, error_source="tool")
    assert tool_result["success"] and tool_result["result"] == {"rows": 3} and tool_result["tool_name"] == "parse"

    health_report = orchestrator.get_integration_health_report()
    metrics = health_report["unified_metrics"]
    assert (metrics["total_errors_across_systems"], metrics["total_recoveries_across_systems"]) == (2, 1)
    assert metrics["integration_health_score"] == 0.5 and metrics["overall_recovery_rate_percent"] == 50.0
    assert health_report["system_breakdown"]["tool_errors"] == {"parse": 1}


async def test_example_4_secure_python_execution():
    sandbox_or_skip()
    executor = PythonExecutorManager(container_image="python:3.9-slim", default_timeout=30, memory_limit="512m",
                                     cpu_limit="1.0")
    dangerous_code = """
import os
import sys

# This code is executed safely in a container
result = sum(range(1000))
print(f"Calculation result: {result}")

# Network and file system access is restricted
"""
    execution_result = await executor.execute_code_safely(code=dangerous_code,
                                                          execution_context="Mathematical calculation", timeout=15)
    assert execution_result["success"] is True
    assert execution_result["output"] == "Calculation result: 499500\n"
    assert execution_result["execution_time"] > 0 and execution_result["backend"] in ("bwrap", "docker")


async def test_mcp_validation_pattern_never_reached_recovery_and_validate_code_does(data_dir):
    sandbox_or_skip()
    mcp_code = "def add(a, b):\n    return a + b\n\nprint(add(2, '3'))\n"
    fixed = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n"
    executor = PythonExecutorManager()
    # The document's pattern: `try: execute_code_safely(...) except: handle_error(...)`. Failing code does not
    # raise, it returns success False, so that except branch never ran and the broken tool passed through.
    plain = await executor.execute_code_safely(code=mcp_code, execution_context="MCP Validation", timeout=30)
    assert plain["success"] is False and "TypeError" in plain["error"]

    with loopback_openai(by_layer(refine=[answer(f"```python\n{fixed}```")])) as server:
        validating = PythonExecutorManager(model=loopback_model(server), settings=Settings())
        report = await validating.validate_code(mcp_code, expected_output="5")
    assert report["valid"] and report["recovered"] and report["code"].strip() == fixed.strip()
    assert report["result"].recovered_by is Layer.REFINE and report["execution"]["success"] is False
    proof = report["result"].attempts_by(Layer.REFINE)[-1]
    assert proof.validator == "sandbox" and proof.verdict == "recovered"
    assert (await validating.validate_code(fixed))["recovered"] is False  # good code is not touched


async def test_handle_syntax_error_never_calls_prose_valid_syntax(data_dir):
    # The original returned (content, True) for any text that does not start like JSON.
    manager = SyntaxErrorManager(None)
    assert await manager.handle_syntax_error("Sure, here you go!", "tool call", "Expecting value") == (
        "Sure, here you go!", False)
    text, ok = await manager.handle_syntax_error("{'tool': 'search', 'query': 'kgot',}", "tool call",
                                                 "Expecting property name enclosed in double quotes")
    assert ok and json.loads(text) == {"tool": "search", "query": "kgot"}
    assert manager.results[-1].recovered_by is Layer.PARSER_FIX


async def test_monitoring_dashboard_keys_come_from_the_handled_results(data_dir):
    system = create_kgot_error_management_system(None)
    await system.handle_error(json.JSONDecodeError("Expecting ','", "[1, 2,]", 0), "parse")
    await system.handle_error(RuntimeError("boom"), "step")
    stats = system.get_comprehensive_statistics()
    assert stats["kgot_error_management"]["total_errors_handled"] == 2
    assert stats["kgot_error_management"]["successful_recoveries"] == 1
    assert stats["kgot_error_management"]["recovery_rate"] == 50.0
    assert stats["syntax_error_manager"]["total_syntax_errors"] == 1
    assert stats["api_error_manager"]["total_api_errors"] == 0
    assert stats["python_executor_manager"]["total_executions"] == 0
    assert stats["integration_health_score"] == 0.5
    assert "total_errors" in stats["api_error_stats"]


async def test_majority_voting_counts_answers_as_the_vote_layer_does():
    answers = iter([{"a": 1, "b": 2.0}, {"b": 2, "a": 1}, {"a": 2}])
    orchestrator = ErrorRecoveryOrchestrator(voting_rounds=3)
    result, confidence = await orchestrator.execute_with_majority_voting(lambda: next(answers), "pick")
    assert result == {"a": 1, "b": 2.0} and confidence == pytest.approx(2 / 3)

    def broken() -> None:
        raise ValueError("no answer")

    with pytest.raises(RuntimeError, match="all 3 voting rounds of broken failed"):
        await orchestrator.execute_with_majority_voting(broken, "broken")


async def test_iterative_refinement_revises_the_arguments_with_the_model_and_proves_them_by_calling(data_dir):
    calls = []

    def divide(a: float, b: float) -> float:
        calls.append((a, b))
        return a / b

    context = ErrorContext(error_id="e1", error_type=ErrorType.EXECUTION_ERROR, severity=ErrorSeverity.HIGH,
                           timestamp=__import__("datetime").datetime.now(), original_operation="ratio",
                           error_message="division by zero",
                           metadata={"arguments": {"a": 1, "b": 0}, "exception_type": "ZeroDivisionError"})
    with loopback_openai(by_layer(refine=[answer('{"a": 1, "b": 4}')])) as server:
        orchestrator = ErrorRecoveryOrchestrator(model=loopback_model(server), settings=Settings())
        assert await orchestrator.iterative_error_refinement(divide, context) == (0.25, True)
    assert calls == [(1, 4)] and context.recovery_attempts[-1]["layer"] == "refine"
    with pytest.raises(TypeError, match="refinement_strategy"):
        await orchestrator.iterative_error_refinement(divide, context, lambda c, i: {})


def test_api_error_manager_is_the_runtime_one():
    assert APIErrorManager is api_errors.APIErrorManager
