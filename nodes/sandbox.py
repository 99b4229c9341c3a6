"""sandbox: runs the incident's code in an isolated backend and accepts it only on exit 0 (and the expected output); never runs code unisolated."""

from __future__ import annotations

from langgraph.runtime import Runtime

from kgot_errors.errors import SandboxUnavailable
from kgot_errors.nodes._base import attempt, proven, skip
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import ContentKind, Layer, RecoveryState, RecoveryUpdate, Verdict

__all__ = ["sandbox"]

LAYER = Layer.SANDBOX


async def sandbox(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Run the failing code as it is; a clean run (the failure was the environment's) proves it, else refine takes over."""
    from kgot_errors.nodes.refine import prove

    ctx = context_of(runtime)
    code = state["incident"].get("content")
    if code is None:
        return skip(LAYER, state, ctx, "the incident carries no code to run")
    if state.get("content_kind") != ContentKind.PYTHON:
        return skip(LAYER, state, ctx, f"content is {state.get('content_kind') or 'empty'}, not Python code")
    if ctx.sandbox is None:
        return skip(LAYER, state, ctx, "no sandbox backend configured: code is never run unisolated")
    started = ctx.clock()
    request = {"run": True, "expected_output": state["incident"].get("expected_output")}
    try:
        proof = await prove("python", code, request, ctx)
    except SandboxUnavailable as exc:
        return skip(LAYER, state, ctx, f"no isolating sandbox here: {exc}")
    verdict = Verdict.RECOVERED if proof.ok else Verdict.ERROR if proof.broken else Verdict.FAILED
    record = attempt(LAYER, state, verdict, proof.reason, validator=proof.validator, evidence=proof.evidence,
                     candidate=proof.text if proof.ok else None, started=started, now=ctx.clock())
    if not proof.ok:
        return {"attempts": [record]}
    return {"attempts": [record], "recovered": proven(LAYER, proof)}
