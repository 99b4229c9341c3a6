"""refine against a loopback OpenAI-compatible server: revisions driven by external feedback only, proven by
re-running the operation, the sandbox or the JSON validators, stopped early when no progress is made."""

from __future__ import annotations

import json
import re

import pytest

from kgot_errors import recover
from kgot_errors.errors import SandboxUnavailable
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import LlmSettings, RecoverySettings, Settings, SyntaxSettings
from kgot_errors.state import Layer, RecoveryResult
from kgot_errors.testing import RecordingSleep, answer, by_layer, error, layer_of, loopback_model, loopback_openai

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
BROKEN = "{name: Bob, age: thirty"
PARTIAL = '{"name": "Bob"}'
GOOD = '{"name": "Bob", "age": 30}'


def settings(*, tries: int = 3, refine: int = 3, **llm: object) -> Settings:
    return Settings(syntax_error_management=SyntaxSettings(max_retries=tries),
                    error_recovery=RecoverySettings(max_refinement_iterations=refine), llm=LlmSettings(**llm))


def refines(result: RecoveryResult) -> list:
    return result.attempts_by(Layer.REFINE)


def sent(server, layer: str = "refine") -> list:
    return [r for r in server.requests if layer_of(r) == layer]


def quoted(text: str) -> dict[str, str]:
    return {label: body for label, _, body in
            re.findall(r'<data label="([^"]*)" id="([0-9a-f]{16})">\n(.*?)\n</data id="\2">', text, re.S)}


def counted(result: RecoveryResult, server) -> None:
    assert result.llm_calls == len(server.requests)


def division_incident() -> dict:
    return {"error_type": "ZeroDivisionError", "error_mro": ["ZeroDivisionError", "ArithmeticError", "Exception"],
            "message": "division by zero", "operation": "divide", "arguments": {"a": 1, "b": 0},
            "traceback": 'Traceback (most recent call last):\n  File "app.py", line 3, in divide\n'
                         "ZeroDivisionError: division by zero\n"}


def test_rejected_arguments_are_revised_from_the_error_and_proven_by_calling_the_operation_again(divide):
    with loopback_openai(by_layer(refine=[answer('{"a": 1, "b": 2}')])) as server:
        result = recover(division_incident(), model=loopback_model(server), operations={"divide": divide},
                         checkpointer=None, settings=settings())
    assert (result.recovered, result.value, result.recovered_by) == (True, 0.5, Layer.REFINE)
    [fix] = refines(result)
    assert (fix.verdict, fix.validator, fix.llm_calls) == ("recovered", "operation re-run", 1)
    assert fix.evidence["arguments"] == {"a": 1, "b": 2} and fix.evidence["target"] == "arguments"
    assert divide.calls == [(1, 2)]
    [request] = server.requests
    data = quoted(request.text)
    assert data["output"] == '{"a": 1, "b": 0}'
    assert "ZeroDivisionError: division by zero" in data["error"]
    assert "signature `divide(a: float, b: float) -> float`" in request.text
    counted(result, server)


def test_each_iteration_sees_the_previous_revision_and_why_it_failed(divide):
    script = by_layer(refine=[answer('{"x": 1}'), answer('{"a": 1, "b": "two"}'), answer('{"a": 1, "b": 4}')])
    with loopback_openai(script) as server:
        result = recover(division_incident(), model=loopback_model(server), operations={"divide": divide},
                         checkpointer=None, settings=settings())
    first, second, third = refines(result)
    assert first.verdict == "failed" and "do not fit divide" in first.reason  # signature check: never called
    assert second.verdict == "failed" and "TypeError" in second.reason
    assert second.evidence["operation_error"]["error_type"] == "TypeError"
    assert (third.verdict, result.value) == ("recovered", 0.25)
    assert divide.calls == [(1, "two"), (1, 4)]
    last_prompt = quoted(sent(server)[2].text)
    assert json.loads(last_prompt["attempt 1"]) == {"x": 1}
    assert json.loads(last_prompt["attempt 2"]) == {"a": 1, "b": "two"}
    assert "TypeError" in last_prompt["feedback 2"] and "TypeError" in last_prompt["validator"]
    counted(result, server)


def test_a_revision_that_repeats_the_original_stops_refine_without_calling_the_operation(divide):
    with loopback_openai(by_layer(refine=[answer('{"b": 0, "a": 1}')] * 3)) as server:
        result = recover(division_incident(), model=loopback_model(server), operations={"divide": divide},
                         checkpointer=None, settings=settings(max_llm_calls=1))
    [only] = refines(result)
    assert (only.verdict, only.evidence["no_progress"]) == ("failed", True)
    assert only.reason == "no progress: the revision repeats an earlier candidate"
    assert divide.calls == []
    assert result.attempts_by(Layer.VOTE)[0].reason.startswith("LLM budget exhausted")
    counted(result, server)


def test_json_refine_sees_llm_fix_answers_and_errors_and_its_answer_is_checked_by_the_schema():
    incident = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting property name",
                "content": BROKEN, "output_schema": SCHEMA}
    with loopback_openai(by_layer(llm_fix=[answer(PARTIAL)], refine=[answer(GOOD)])) as server:
        result = recover(incident, model=loopback_model(server), checkpointer=None, settings=settings(tries=1))
    assert (result.recovered_by, result.value) == (Layer.REFINE, {"name": "Bob", "age": 30})
    [fix] = refines(result)
    assert (fix.validator, fix.evidence["target"], fix.evidence["method"]) == ("json+schema", "json", "json_schema")
    data = quoted(sent(server)[0].text)
    assert data["attempt 1"] == PARTIAL and "'age' is a required property" in data["feedback 1"]
    counted(result, server)


def test_json_refine_that_repeats_llm_fix_makes_no_progress():
    incident = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting property name",
                "content": BROKEN, "output_schema": SCHEMA}
    with loopback_openai(by_layer(llm_fix=[answer(PARTIAL)], refine=[answer(PARTIAL)])) as server:
        result = recover(incident, model=loopback_model(server), checkpointer=None,
                         settings=settings(tries=1, max_llm_calls=2))
    [only] = refines(result)
    assert only.evidence["no_progress"] is True and not result.recovered
    counted(result, server)


def test_a_transient_failure_in_refine_is_retried_without_a_second_record(divide):
    sleep = RecordingSleep()
    script = by_layer(refine=[error(503), answer('{"a": 3, "b": 1}')])
    with loopback_openai(script) as server:
        ctx = RecoveryContext(settings=settings(), model=loopback_model(server), operations={"divide": divide},
                              sleep=sleep)
        result = recover(division_incident(), runtime_context=ctx, checkpointer=None)
    [fix] = refines(result)
    assert (fix.verdict, fix.llm_calls, fix.evidence["provider_retries"]) == ("recovered", 2, 1)
    assert sleep.waits == [1.0]
    counted(result, server)


def test_code_that_crashed_is_not_refined_without_a_sandbox():
    incident = {"error_type": "NameError", "message": "name 'y' is not defined", "content": "x = 1\nprint(y)\n",
                "content_kind": "python"}
    with loopback_openai(by_layer()) as server:
        ctx = RecoveryContext(settings=settings(), model=loopback_model(server), sandbox=None)
        result = recover(incident, runtime_context=ctx, checkpointer=None)
    [skipped] = refines(result)
    assert skipped.verdict == "skipped" and skipped.reason.startswith("no sandbox backend")
    assert server.requests == []


CRASHING = "values = [3, 4]\nprint(sum(values) / len(valuez))\n"


def code_incident(**extra: object) -> dict:
    return {"error_type": "NameError", "message": "name 'valuez' is not defined", "content": CRASHING,
            "content_kind": "python", **extra}


def test_code_is_refined_from_the_sandbox_stderr_until_it_exits_zero(bwrap_sandbox):
    script = by_layer(refine=[answer("```python\nvalues = [3, 4]\nprint(sum(values) / len(vals))\n```"),
                              answer("```python\nvalues = [3, 4]\nprint(sum(values) / len(values))\n```")])
    with loopback_openai(script) as server:
        result = recover(code_incident(), model=loopback_model(server), sandbox=bwrap_sandbox, checkpointer=None,
                         settings=settings())
    first, second = refines(result)
    assert first.verdict == "failed" and first.reason == "the code exited 1 in the sandbox"
    assert "NameError: name 'vals' is not defined" in first.evidence["run"]["stderr"]
    assert "NameError: name 'vals' is not defined" in quoted(sent(server)[1].text)["validator"]
    assert (second.verdict, second.validator, second.evidence["run"]["stdout"]) == ("recovered", "sandbox", "3.5\n")
    assert result.recovered_by == Layer.REFINE and "len(values)" in result.value
    counted(result, server)


def test_code_must_print_the_expected_output(bwrap_sandbox):
    script = by_layer(refine=[answer("```python\nprint(3.5)\n```"),
                              answer("```python\nprint(7 / 2)\nprint('ok')\n```")])
    with loopback_openai(script) as server:
        result = recover(code_incident(expected_output="3.5\nok\n"), model=loopback_model(server),
                         sandbox=bwrap_sandbox, checkpointer=None, settings=settings())
    first, second = refines(result)
    assert first.reason == "the code exits 0 but its output differs from the expected output"
    assert second.verdict == "recovered"
    assert quoted(sent(server)[0].text)["expected"] == "3.5\nok\n"
    counted(result, server)


class NoIsolation:
    """A sandbox that cannot isolate here, as LazySandbox behaves without bwrap or Docker."""

    async def arun(self, code: str, **kwargs: object) -> object:
        raise SandboxUnavailable("no isolating sandbox backend is available, so code will not be run")


def test_a_sandbox_that_cannot_run_makes_refine_an_error_that_ends_the_loop():
    script = by_layer(refine=[answer("```python\nprint(1)\n```")] * 3)
    with loopback_openai(script) as server:
        ctx = RecoveryContext(settings=settings(max_llm_calls=1), model=loopback_model(server), sandbox=NoIsolation())
        result = recover(code_incident(), runtime_context=ctx, checkpointer=None)
    [broken] = refines(result)
    assert (broken.verdict, broken.evidence["final"], broken.validator) == ("error", True, "sandbox")
    assert broken.reason.startswith("the sandbox could not run the code: no isolating sandbox")
    assert not result.recovered
    counted(result, server)
