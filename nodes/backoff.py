"""backoff: re-runs the failed operation once per step after a jittered wait; never retries permanent errors."""

from __future__ import annotations

import inspect
import uuid
from typing import Any

from langgraph.runtime import Runtime

from kgot_errors.nodes._base import attempt, skip, tries
from kgot_errors.runtime.breaker import CircuitBreaker
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.runtime.operations import (BackoffPolicy, Failure, NotJSON, Wait, argument_error, json_value,
                                            run_operation)
from kgot_errors.state import CandidateRecord, ErrorKind, Layer, RecoveryState, RecoveryUpdate, Verdict

__all__ = ["backoff"]

LAYER = Layer.BACKOFF
VALIDATOR = "operation"
KEY_ARGUMENT = "idempotency_key"
"""The keyword an operation names in its signature to receive each call's idempotency key."""


def _idempotency_key(call: int) -> str:
    """`kgot:<thread id>:<call>`: the same for every start of one call of one thread (a thread-less run: a nonce)."""
    from langgraph.config import get_config

    try:
        thread = (get_config().get("configurable") or {}).get("thread_id")
    except RuntimeError:  # called outside a graph run
        thread = None
    return f"kgot:{thread or 'run-' + uuid.uuid4().hex}:{call}"


def _takes_key(operation: Any) -> bool:
    try:
        return KEY_ARGUMENT in inspect.signature(operation).parameters
    except (TypeError, ValueError):
        return False


def _retry_after_so_far(state: RecoveryState) -> float | None:
    """The Retry-After of the latest failure: the last re-run's, else the incident's own."""
    for a in reversed(state.get("attempts", ())):
        if a["layer"] == LAYER:
            return a["evidence"].get("retry_after")
    return state["incident"].get("retry_after")


def _circuit(breaker: CircuitBreaker | None) -> dict[str, Any] | None:
    if breaker is None:
        return None
    snap = breaker.snapshot()
    return {"state": snap["state"], "consecutive_failures": snap["consecutive_failures"]}


async def backoff(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Re-run the incident's operation once; never calls it while its circuit is open.

    The operation is `ctx.operations[incident["operation"]]`, called as
    `operation(**incident["arguments"])`. The incident is call 1 (the original failure);
    this node makes call `try_no + 1` and stops the loop (`evidence["final"]`) when the
    budget of calls (settings.api_error_management.max_retries, the original included) is
    spent, the failure is not transient (classified by nodes/classify.py), or the circuit
    is open. Each step is checkpointed before the next starts, so a resumed thread goes on
    with the same try number; a kill during the wait repeats only the wait.

    Each call takes two steps. The first waits, then records the call as in flight (call number,
    idempotency key `kgot:<thread>:<call>`, and a token armed in this process); the second makes
    the call, if this process armed the token, and records its attempt. A second step that finds
    a token it did not arm knows a process stopped during (or just before) the call: the call's
    outcome is unknown. By default (`on_outcome_unknown="rerun"`) it re-arms and re-runs the call
    with the same key, and the attempt says how many earlier starts had an unknown outcome
    (`evidence["outcome_unknown"]`); with "stop" it records a final failed attempt instead. An
    operation whose signature names `idempotency_key` receives the key, to deduplicate.
    """
    ctx = context_of(runtime)
    incident = state["incident"]
    name = incident.get("operation")
    if not name:
        return skip(LAYER, state, ctx, "the incident names no operation to re-run")
    if name not in ctx.operations:
        return skip(LAYER, state, ctx, f"operation {name!r} is not registered in the runtime context")
    policy = BackoffPolicy.from_settings(ctx.settings.api_error_management)
    budget = int(state.get("budgets", {}).get(str(LAYER), policy.max_attempts))
    calls_made = tries(state, LAYER) + 1  # the original call and the re-runs recorded so far
    if calls_made >= budget:
        return skip(LAYER, state, ctx, f"no calls left: {calls_made} of {budget} made (the original included)")

    started = ctx.clock()
    operation = ctx.operations[name]
    arguments = dict(incident.get("arguments") or {})
    facts: dict[str, Any] = {"operation": name, "call": calls_made + 1, "max_calls": budget}

    def record(verdict: Verdict, reason: str, evidence: dict[str, Any], **extra: Any) -> RecoveryUpdate:
        return {"attempts": [attempt(LAYER, state, verdict, reason, started=started, now=ctx.clock(),
                                     evidence={**facts, **evidence}, **extra)], "in_flight": None}

    takes_key = _takes_key(operation) and KEY_ARGUMENT not in arguments
    problem = argument_error(operation, {**arguments, KEY_ARGUMENT: ""} if takes_key else arguments)
    if problem is not None:
        failure = Failure.bad_arguments(problem)
        return record(Verdict.FAILED, f"not called: {problem}", {**failure.evidence(), "final": True})

    breaker = policy.breaker(ctx.breakers, name)
    if breaker is not None and (closed_for := breaker.refusal()) is not None:
        return record(Verdict.FAILED, f"circuit open: {name!r} is known to be down; no call for {closed_for:.1f} s",
                      {"kind": str(ErrorKind.TRANSIENT), "final": True, "circuit": _circuit(breaker), "calls": 0})

    marker = state.get("in_flight")
    if not marker or marker.get("call") != calls_made + 1:  # first step of this call: wait, then arm it
        wait = policy.wait_after(calls_made, _retry_after_so_far(state), ctx.rng)
        await ctx.sleep(wait.seconds)
        return {"in_flight": {"call": calls_made + 1, "key": _idempotency_key(calls_made + 1),
                              "token": ctx.calls.arm(), "unknown": 0, "wait": list(wait),
                              "elapsed": ctx.clock() - started}}
    wait = Wait(*marker["wait"])
    started -= float(marker.get("elapsed") or 0.0)  # the attempt's duration includes its wait, as before
    facts["idempotency_key"] = marker["key"]
    if not ctx.calls.claim(marker["token"]):
        # armed by a process that stopped (or a run that broke) during or just before the call: it may have run
        unknown = int(marker.get("unknown", 0)) + 1
        if ctx.settings.api_error_management.on_outcome_unknown == "stop":
            facts["outcome_unknown"] = {"starts": unknown, "policy": "stop"}
            return record(Verdict.FAILED, f"call {calls_made + 1}: outcome unknown (the process stopped while it "
                          f"ran, idempotency key {marker['key']!r}); not re-run (on_outcome_unknown=stop)",
                          {**wait.evidence(), "kind": str(ErrorKind.TRANSIENT), "final": True})
        return {"in_flight": {**marker, "unknown": unknown, "token": ctx.calls.arm()}}  # re-armed, then re-run
    if marker.get("unknown"):
        facts["outcome_unknown"] = {"starts": int(marker["unknown"]), "policy": "rerun"}
    if takes_key:
        arguments[KEY_ARGUMENT] = marker["key"]
    ticket = breaker.try_acquire() if breaker is not None else None
    if breaker is not None and ticket is None:
        return record(Verdict.FAILED, f"circuit open: {name!r} went down during the wait; not called",
                      {**wait.evidence(), "kind": str(ErrorKind.TRANSIENT), "final": True,
                       "circuit": _circuit(breaker), "calls": 0})

    failure: Failure | None = None
    failed: bool | None = None  # None until the call has an outcome (a cancelled call proves nothing)
    try:
        value = await run_operation(operation, (), arguments, timeout=policy.call_timeout, name=name)
        failed = False
    except Exception as exc:  # noqa: BLE001 - the operation's failure is data; only transient ones are retried
        failure = Failure.of(exc)
        failed = failure.transient
    finally:
        if breaker is not None:
            breaker.settle(ticket, failed=failed)

    if failure is None:
        try:
            plain, text, note = json_value(value)
        except NotJSON as exc:
            return record(Verdict.FAILED, f"call {calls_made + 1} returned, but {exc}: no proof the operation worked",
                          {**wait.evidence(), "final": True, "circuit": _circuit(breaker)})
        evidence = {**wait.evidence(), "circuit": _circuit(breaker), "value_note": note}
        update = record(Verdict.RECOVERED, f"the operation returned on call {calls_made + 1}", evidence,
                        validator=VALIDATOR, candidate=text)
        update["recovered"] = CandidateRecord(layer=str(LAYER), value=plain, text=text)
        return update

    last_call = calls_made + 1 >= budget
    final = not failure.transient or last_call
    status = f" {failure.status_code}" if failure.status_code else ""
    why = ("no calls left" if failure.transient else f"{failure.kind} error, not retried") if final else "will retry"
    reason = f"call {calls_made + 1} failed: {failure.error_type}{status} ({failure.kind}); {why}"
    return record(Verdict.FAILED, reason,
                  {**wait.evidence(), **failure.evidence(), "final": final, "circuit": _circuit(breaker)})
