"""refine: revises code, operation arguments or JSON from external feedback (validator errors, sandbox output); never trusts the model's own verdict.

The original system's "Alita refinement", driven only by what the outside world said:
the original error and traceback, each earlier attempt's validator verdict, the sandbox's
exit code, stdout and stderr, the operation's exception. One revision per try (budget
`refine`, 3 by default); each is proven by the validator for its target:

- `python`: ast.parse, then a run in the sandbox (exit 0, and the expected output when the
  incident gives one). Without a sandbox only code that merely failed to parse can be
  proven; code that crashed cannot, and refine says so instead of guessing.
- `arguments`: the operation is called again with the revised keyword arguments (after a
  signature check); recovered when it returns.
- `json`: the JSON content is revised from the validator's errors and checked like
  parser_fix checks it. This is a second, feedback-driven pass after llm_fix (it sees every
  earlier answer and why it failed) and the only LLM pass for JSON classified `unknown`.

A revision seen before (the original or any earlier candidate) ends the loop at once:
`no_progress`, not another paid call on the same answer.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.runtime import Runtime

from kgot_errors.errors import SandboxError
from kgot_errors.nodes import _prompts
from kgot_errors.nodes._base import NO_MODEL, fix_verdict, proven, recorder
from kgot_errors.nodes._llm import Answer, ask, budget, check_code, check_json, feedback_of, fingerprint
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.runtime.operations import Failure, NotJSON, argument_error, json_value, run_operation
from kgot_errors.state import ContentKind, ErrorKind, Layer, RecoveryState, RecoveryUpdate, Verdict
from kgot_errors.state.incident import error_line

__all__ = ["Proof", "mark", "parse_candidate", "prove", "refine", "revision_request", "revision_target"]

LAYER = Layer.REFINE
_HISTORY = 5
_TRACEBACK_CHARS = 2_000
_RUN_CHARS = 2_000
_ARGUMENTS_SCHEMA: dict[str, Any] = {"type": "object"}


def revision_target(state: RecoveryState, ctx: RecoveryContext) -> tuple[str | None, str]:
    """What refine (and vote) can revise and prove here: `python`, `json` or `arguments`; else None and why not."""
    incident = state["incident"]
    kind = state.get("content_kind")
    if incident.get("content") is not None and kind == ContentKind.PYTHON:
        if ctx.sandbox is None and state.get("kind") != ErrorKind.SYNTAX:
            return None, "no sandbox backend: a revised program cannot be proven without running it"
        return "python", ""
    if incident.get("content") is not None and kind == ContentKind.JSON:
        return "json", ""
    name = incident.get("operation")
    if name and incident.get("arguments") is not None:
        if name not in ctx.operations:
            return None, f"operation {name!r} is not registered: revised arguments cannot be tried"
        return "arguments", ""
    return None, f"content is {kind or 'empty'} and there are no operation arguments: nothing a validator can check"


def revision_request(state: RecoveryState, ctx: RecoveryContext, target: str) -> dict[str, Any]:
    """The prompt material and the validator's needs for `target`, as plain data (it also travels in Send payloads)."""
    incident = state["incident"]
    attempts = state.get("attempts", ())
    failed = [a for a in attempts if a["verdict"] == Verdict.FAILED]
    error = error_line(incident)
    if target != "json" and incident.get("traceback"):
        error += "\n" + incident["traceback"][-_TRACEBACK_CHARS:]
    request: dict[str, Any] = {
        "target": target,
        "prompt": incident.get("prompt"),
        "context": incident.get("context") or None,
        "error": error,
        "feedback": feedback_of(failed[-1]) if failed else None,
        "history": [{"layer": a["layer"], "candidate": a["candidate"], "feedback": feedback_of(a)}
                    for a in failed if a["candidate"]][-_HISTORY:],
        "seen": sorted({*(a["evidence"].get("fingerprint") for a in attempts if a["evidence"].get("fingerprint")),
                        *(mark(target, a["candidate"]) for a in attempts if a["candidate"])}),
    }
    if target == "arguments":
        name = incident["operation"]
        arguments = incident.get("arguments") or {}
        request.update(content=json.dumps(arguments, ensure_ascii=False, sort_keys=True, default=str),
                       operation=name, signature=_signature(ctx.operations[name]), schema=None)
        request["seen"].append(mark(target, request["content"]))
    else:
        request.update(content=incident["content"], schema=incident.get("output_schema") if target == "json" else None,
                       expected_output=incident.get("expected_output") if target == "python" else None,
                       run=target == "python" and ctx.sandbox is not None)
        request["seen"].append(mark(target, incident["content"]))
    return request


def mark(target: str, text: str) -> str:
    """A candidate's identity for the no-progress check: JSON by its sorted compact form, code by its text."""
    if target != "python":
        with contextlib.suppress(ValueError, RecursionError):  # not JSON: its text is its identity
            text = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return fingerprint(text)


def _signature(operation: Any) -> str | None:
    name = getattr(operation, "__name__", "operation")
    try:
        return f"{name}{inspect.signature(operation, eval_str=True)}"
    except (NameError, SyntaxError, TypeError, ValueError):  # annotations that do not evaluate: show them as written
        try:
            return f"{name}{inspect.signature(operation)}"
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Proof:
    """A validator's verdict on one candidate: ok, the proven value and text, why, and the evidence."""

    ok: bool
    reason: str
    validator: str
    value: Any = None
    text: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    broken: bool = False  # the validator itself could not run (e.g. the sandbox failed)
    changes: tuple[dict[str, str], ...] = ()  # what the fix did to the data (JSON targets)
    degraded: bool = False  # accepted only as degraded


async def parse_candidate(target: str, text: str, request: Mapping[str, Any], ctx: RecoveryContext) -> Proof:
    """The cheap half of proving: parse the answer (JSON extraction, or fences and ast.parse); no run, no call."""
    if target == "python":
        out = await check_code(text)
        evidence = {"steps": list(out.steps), "errors": list(out.errors)}
        if not out.ok:
            why = f"the revision does not parse: {out.reason or 'invalid'}"
            return Proof(False, why, "ast.parse", evidence=evidence)
        return Proof(True, "the revision parses", "ast.parse", out.value, out.text, evidence)
    schema = _ARGUMENTS_SCHEMA if target == "arguments" else request.get("schema")
    out = await check_json(text, schema, ctx.settings)
    evidence = {"steps": list(out.steps), "errors": list(out.errors)}
    if not out.ok:
        why = f"the answer does not validate: {out.reason or 'invalid'}"
        return Proof(False, why, "json+schema", evidence=evidence)
    return Proof(True, "valid JSON" + (" that fits the schema" if schema is not None else ""), "json+schema",
                 out.value, out.text, evidence, changes=tuple(out.changes), degraded=out.degraded)


async def prove(target: str, text: str, request: Mapping[str, Any], ctx: RecoveryContext,
                parsed: Proof | None = None) -> Proof:
    """The whole validator for `target`: parse, then run the code in the sandbox or call the operation again."""
    parsed = parsed or await parse_candidate(target, text, request, ctx)
    if not parsed.ok or target == "json" or (target == "python" and not request.get("run")):
        return parsed
    if target == "python":
        return await _run_code(parsed, request, ctx)
    return await _call_again(parsed, request, ctx)


def _clip_run(run: dict[str, Any]) -> dict[str, Any]:
    out = dict(run)
    for stream in ("stdout", "stderr"):
        text = out.get(stream) or ""
        if len(text) > _RUN_CHARS:
            out[stream] = text[:_RUN_CHARS] + f"... [{len(text) - _RUN_CHARS} more chars]"
    return out


def _same_output(stdout: str, expected: str) -> bool:
    def norm(s: str) -> str:
        return "\n".join(line.rstrip() for line in s.replace("\r\n", "\n").strip().split("\n"))

    return norm(stdout) == norm(expected)


async def _run_code(parsed: Proof, request: Mapping[str, Any], ctx: RecoveryContext) -> Proof:
    code = parsed.text or ""
    try:
        result = await ctx.sandbox.arun(code, timeout=ctx.settings.python_executor.default_timeout)
    except SandboxError as exc:
        return Proof(False, f"the sandbox could not run the code: {exc}", "sandbox", evidence=parsed.evidence,
                     broken=True)
    evidence = {**parsed.evidence, "run": _clip_run(result.to_dict())}
    if not result.ok:
        why = "timed out" if result.timed_out else f"killed ({result.killed_by})" if result.killed_by \
            else f"exited {result.exit_code}"
        return Proof(False, f"the code {why} in the sandbox", "sandbox", evidence=evidence)
    expected = request.get("expected_output")
    if expected is not None and not _same_output(result.stdout, expected):
        return Proof(False, "the code exits 0 but its output differs from the expected output", "sandbox",
                     evidence=evidence)
    return Proof(True, "the code exits 0 in the sandbox" + (" with the expected output" if expected else ""),
                 "sandbox", code, code, evidence)


async def _call_again(parsed: Proof, request: Mapping[str, Any], ctx: RecoveryContext) -> Proof:
    name = request["operation"]
    operation = ctx.operations[name]
    arguments = parsed.value
    why = argument_error(operation, arguments)
    if why:
        return Proof(False, why, "operation re-run", evidence=parsed.evidence)
    try:
        result = await run_operation(operation, (), arguments, name=name,
                                     timeout=ctx.settings.api_error_management.operation_timeout_seconds)
    except Exception as exc:  # noqa: BLE001 - the operation is the caller's code: its failure is the feedback
        failure = Failure.of(exc)
        return Proof(False, f"{name} failed again: {failure.error_type}: {failure.message}", "operation re-run",
                     evidence={**parsed.evidence, "operation_error": failure.evidence()})
    try:
        value, text, note = json_value(result)
    except NotJSON as exc:
        return Proof(False, f"{name} returned, but {exc}", "operation re-run",
                     evidence={**parsed.evidence, "arguments": arguments})
    evidence = {**parsed.evidence, "arguments": arguments, **({"note": note} if note else {})}
    return Proof(True, f"{name} returned with the revised arguments", "operation re-run", value, text, evidence)


async def refine(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """One revision from external feedback; recovered only when its target's validator proves it."""
    ctx = context_of(runtime)
    started = ctx.clock()
    record = recorder(LAYER, state, ctx, started)

    target, why_not = revision_target(state, ctx)
    if target is None:
        return record(Verdict.SKIPPED, why_not)
    if ctx.model is None:
        return record(Verdict.SKIPPED, NO_MODEL)
    allowance = budget(state, ctx.settings)
    if allowance.exhausted:
        return record(Verdict.SKIPPED, allowance.reason, evidence=allowance.evidence())
    request = revision_request(state, ctx, target)
    prompt = _prompts.messages("refine", request, max_chars=ctx.settings.llm.max_prompt_chars)
    reply = await ask(ctx, runtime, prompt, allowance=allowance, schema=request.get("schema"))
    if not isinstance(reply, Answer):
        return record(Verdict.FAILED, reply.reason, evidence={"target": target, **reply.evidence()},
                      llm_calls=reply.calls, tokens=reply.tokens)
    spent = {"llm_calls": reply.calls, "tokens": reply.tokens}
    evidence: dict[str, Any] = {"target": target, **reply.evidence()}
    if not reply.text.strip():
        why = f"the model refused: {reply.refusal}" if reply.refusal else "the model answered with empty content"
        return record(Verdict.FAILED, why, evidence=evidence, **spent)
    parsed = await parse_candidate(target, reply.text, request, ctx)
    candidate = parsed.text if parsed.ok and parsed.text is not None else reply.text
    evidence["fingerprint"] = mark(target, candidate)
    if evidence["fingerprint"] in request["seen"]:
        return record(Verdict.FAILED, "no progress: the revision repeats an earlier candidate", candidate=candidate,
                      evidence={**evidence, "no_progress": True}, **spent)
    proof = await prove(target, reply.text, request, ctx, parsed)
    evidence.update(proof.evidence)
    if proof.broken:
        return record(Verdict.ERROR, proof.reason, validator=proof.validator, candidate=candidate,
                      evidence={**evidence, "final": True}, **spent)
    if not proof.ok:
        return record(Verdict.FAILED, proof.reason, validator=proof.validator, candidate=candidate, evidence=evidence,
                      **spent)
    return {
        **record(fix_verdict(proof), proof.reason, validator=proof.validator, candidate=proof.text,
                 evidence=evidence, **spent),
        "recovered": proven(LAYER, proof),
    }
