"""What the LLM layers share: the per-incident budget, one counted model call, provider failures, checking answers.

A model call here is foreign I/O. What it raises is classified by the same rules as any
incident (runtime/operations.Failure, i.e. nodes/classify.py): a transient failure is raised
again while the node's RetryPolicy has tries left (after the wait, taken through the
context's sleep, with Retry-After honoured), so the node re-runs without having written
anything; any other failure, and a transient one on the last try, comes back as data for a
failed Attempt. Calls and tokens are counted per node run, retried runs included.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from langgraph.types import RetryPolicy

from kgot_errors.errors import KgotError
from kgot_errors.nodes._base import offload
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.model import call_deadline, structured_runnable
from kgot_errors.runtime.operations import BackoffPolicy, Failure
from kgot_errors.runtime.settings import Settings
from kgot_errors.state import AttemptRecord, ErrorKind, RecoveryState

__all__ = [
    "PROVIDER_ATTEMPTS",
    "Answer",
    "Budget",
    "CallFailed",
    "ModelTimeout",
    "ask",
    "budget",
    "check_code",
    "check_json",
    "feedback_of",
    "fingerprint",
    "is_transient",
    "provider_retry_policy",
]

PROVIDER_ATTEMPTS = 3
"""Runs of an LLM node per try while the provider fails transiently (429, 5xx, timeouts): RetryPolicy.max_attempts."""

_STRUCTURED = ("json_schema", "function_calling", "json_mode")
_UNSUPPORTED_STATUS = frozenset({400, 422})  # how servers say "this response_format / tool_choice is not supported"
_FEEDBACK_CHARS = 4_000


class Budget(NamedTuple):
    """LLM calls, tokens and seconds this incident has used (summed from its attempts) against the settings' caps.

    Seconds are the durations of the attempts that called the model (`llm.incident_timeout_seconds`);
    each call also has `llm.timeout_seconds` in all, whatever the incident has left.
    """

    calls_used: int
    tokens_used: int
    max_calls: int
    max_tokens: int
    seconds_used: float = 0.0
    max_seconds: float = math.inf

    @property
    def calls_left(self) -> int:
        return max(0, self.max_calls - self.calls_used)

    @property
    def seconds_left(self) -> float:
        return max(0.0, self.max_seconds - self.seconds_used)

    @property
    def exhausted(self) -> bool:
        return self.calls_left == 0 or self.tokens_used >= self.max_tokens or self.seconds_left == 0

    @property
    def reason(self) -> str:
        spent = f", {self.seconds_used:.1f}/{self.max_seconds:g} s" if self.seconds_left == 0 else ""
        return (f"LLM budget exhausted: {self.calls_used}/{self.max_calls} calls, "
                f"{self.tokens_used}/{self.max_tokens} tokens{spent} used by this incident")

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"calls_used": self.calls_used, "max_calls": self.max_calls,
                               "tokens_used": self.tokens_used, "max_tokens": self.max_tokens}
        if math.isfinite(self.max_seconds):
            out |= {"seconds_used": round(self.seconds_used, 3), "max_seconds": self.max_seconds}
        return out


def budget(state: RecoveryState, settings: Settings) -> Budget:
    attempts = state.get("attempts", ())
    return Budget(sum(a["llm_calls"] for a in attempts), sum(a["tokens"] for a in attempts),
                  settings.llm.max_llm_calls, settings.llm.max_tokens,
                  sum(a["duration_s"] for a in attempts if a["llm_calls"]), settings.llm.incident_timeout_seconds)


class ModelTimeout(KgotError, TimeoutError):
    """A model call did not finish within its deadline (a TimeoutError: transient)."""

    def __init__(self, seconds: float, why: str) -> None:
        super().__init__(f"the model did not answer within {seconds:.3g} s ({why})")
        self.seconds = seconds


def _deadline(ctx: RecoveryContext, allowance: Budget, started: float) -> tuple[float, str]:
    """Seconds this call may take: the per-call deadline, or what is left of the incident's, if less."""
    per_call = ctx.settings.llm.timeout_seconds
    left = allowance.seconds_left - (ctx.clock() - started)
    if left < per_call:
        return max(0.0, left), "llm.incident_timeout_seconds"
    return per_call, "llm.timeout_seconds"


async def _invoke(runnable: Any, prompt: list[Any], seconds: float, why: str) -> Any:
    """`runnable.ainvoke(prompt)`, ended at `seconds` in all (a client's timeout caps each read, not the call)."""
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            with call_deadline(seconds):  # also the worker thread's own connect and reads (runtime/model.py)
                return await runnable.ainvoke(prompt)
    except TimeoutError:
        if not deadline.expired():
            raise  # the client's own timeout
        raise ModelTimeout(seconds, why) from None


def is_transient(exc: BaseException) -> bool:
    """retry_on for the LLM nodes' RetryPolicy: what nodes/classify.py calls transient."""
    return Failure.of(exc).transient


def provider_retry_policy() -> RetryPolicy:
    """Re-runs an LLM node on transient provider failures; the wait happens in the node (ctx.sleep, Retry-After)."""
    return RetryPolicy(max_attempts=PROVIDER_ATTEMPTS, initial_interval=0.0, backoff_factor=1.0, jitter=False,
                       retry_on=is_transient)


@dataclass(frozen=True)
class Answer:
    """The model's answer as text, and what getting it cost."""

    text: str
    calls: int
    tokens: int
    method: str | None  # the structured-output method that answered, None for a plain call
    retries: int  # earlier runs of this node that failed transiently
    refusal: str | None = None
    tokens_estimated: bool = False
    fallbacks: tuple[str, ...] = ()  # methods the server rejected before this one answered

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method or "plain", "provider_retries": self.retries}
        if self.fallbacks:
            out["fallbacks"] = list(self.fallbacks)
        if self.refusal:
            out["refusal"] = self.refusal
        if self.tokens_estimated:
            out["tokens_estimated"] = True
        return out


@dataclass(frozen=True)
class CallFailed:
    """No answer: the provider failed (classified), or the budget ran out between fallbacks."""

    reason: str
    calls: int
    tokens: int
    retries: int
    failure: Failure | None = None
    fallbacks: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        """Trying this layer again cannot help (401, 403, a bad request): routing moves on."""
        return self.failure is None or self.failure.kind is ErrorKind.PERMANENT

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider_retries": self.retries, "final": self.final}
        if self.failure is not None:
            out["provider_error"] = {k: v for k, v in self.failure.evidence().items() if k != "traceback"}
        if self.fallbacks:
            out["fallbacks"] = list(self.fallbacks)
        return out


def _node_attempt(runtime: Any) -> int:
    info = getattr(runtime, "execution_info", None)
    return int(getattr(info, "node_attempt", 1) or 1)


def _methods(schema: dict[str, Any] | None, start: str | None) -> list[str | None]:
    if schema is None:
        return [None]
    if schema.get("type") == "object":
        order: list[str | None] = [*_STRUCTURED, None]
    else:  # OpenAI's json_schema and tools want an object at the root (and langchain a single root type)
        order = ["json_mode", None]
    return order[order.index(start):] if start is not None and start in order else order


def _text(message: Any) -> str:
    tool_calls = getattr(message, "tool_calls", None) or []
    if tool_calls:
        return json.dumps(tool_calls[0].get("args"), ensure_ascii=False)
    invalid = getattr(message, "invalid_tool_calls", None) or []
    if invalid:
        return str(invalid[0].get("args") or "")
    content = getattr(message, "content", "")
    if isinstance(content, list):
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content
                       if isinstance(b, str) or b.get("type") == "text")
    return str(content or "")


def _refusal(message: Any) -> str | None:
    refusal = (getattr(message, "additional_kwargs", None) or {}).get("refusal")
    if refusal:
        return str(refusal)
    content = getattr(message, "content", None)
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "refusal":
                return str(block.get("refusal") or "refused")
    return None


def _tokens(message: Any, prompt: list[Any], text: str) -> tuple[int, bool]:
    """Tokens from the provider's usage metadata; an estimate (4 characters a token), flagged, when it gave none."""
    usage = getattr(message, "usage_metadata", None)
    if usage:
        return int(usage.get("total_tokens") or usage.get("input_tokens", 0) + usage.get("output_tokens", 0)), False
    chars = sum(len(str(getattr(m, "content", ""))) for m in prompt) + len(text)
    return max(1, chars // 4), True


async def ask(
    ctx: RecoveryContext,
    runtime: Any,
    prompt: list[Any],
    *,
    allowance: Budget,
    schema: dict[str, Any] | None = None,
    start_method: str | None = None,
    temperature: float | None = None,
) -> Answer | CallFailed:
    """One answer from `ctx.model`: structured output when `schema` is given, falling back method by method.

    json_schema, then function calling, then json mode, then a plain call, moving on only
    when the server rejects the method (HTTP 400/422) and the budget allows another call.
    Raises the provider's exception when it is transient and the node's RetryPolicy has a
    run left (after waiting); returns CallFailed for anything else. Each call ends within
    `llm.timeout_seconds` in all, or what is left of `llm.incident_timeout_seconds`
    (ModelTimeout, as a failed call; never re-run by the RetryPolicy).
    """
    retries = _node_attempt(runtime) - 1
    started = ctx.clock()
    calls = 0
    fallbacks: list[str] = []

    def room() -> bool:  # another call fits the incident's budget (failed runs of this node count too)
        return allowance.calls_used + retries + calls < allowance.max_calls

    methods = _methods(schema, start_method)
    for i, method in enumerate(methods):
        runnable = structured_runnable(ctx.model, method, schema, temperature)  # built once per loop
        if runnable is None:
            continue
        if not room():
            spent = Budget(allowance.calls_used + retries + calls, *allowance[1:])
            return CallFailed(spent.reason, calls + retries, 0, retries, fallbacks=tuple(fallbacks))
        seconds, why = _deadline(ctx, allowance, started)
        if seconds <= 0:
            spent = Budget(*allowance[:4], allowance.max_seconds, allowance.max_seconds)
            return CallFailed(spent.reason, calls + retries, 0, retries, fallbacks=tuple(fallbacks))
        calls += 1
        try:
            out = await _invoke(runnable, prompt, seconds, why)
        except Exception as exc:  # noqa: BLE001 - the provider's client is foreign I/O: what it raises is classified
            failure = Failure.of(exc)
            # a call that used its whole deadline is not re-run at once: the layer's next try (recorded, its
            # time counted against the incident's) is the retry
            if failure.transient and not isinstance(exc, ModelTimeout) and retries + 1 < PROVIDER_ATTEMPTS and room():
                policy = BackoffPolicy.from_settings(ctx.settings.api_error_management)
                await ctx.sleep(policy.wait_after(retries + 1, failure.retry_after, ctx.rng).seconds)
                raise
            unsupported = failure.status_code in _UNSUPPORTED_STATUS and method is not None
            if unsupported and i + 1 < len(methods):
                fallbacks.append(f"{method}: HTTP {failure.status_code}")
                continue
            after = f" (after {retries + 1} runs)" if failure.transient else ""
            return CallFailed(f"provider failed{after}: {failure.kind} {failure.error_type}: {failure.message}",
                              calls + retries, 0, retries, failure, tuple(fallbacks))
        raw = out["raw"] if isinstance(out, dict) else out
        text = _text(raw)
        tokens, estimated = _tokens(raw, prompt, text)
        return Answer(text, calls + retries, tokens, method, retries, _refusal(raw), estimated, tuple(fallbacks))
    return CallFailed("the model supports none of the ways to ask", calls + retries, 0, retries,
                      fallbacks=tuple(fallbacks))


async def check_json(text: str, schema: dict[str, Any] | None, settings: Settings) -> Any:
    """The shared candidate rule (nodes/_validate.json_text) on a model's answer, off the loop when large."""
    from kgot_errors.nodes._validate import json_text

    limits = settings.syntax_error_management
    return await offload(json_text, text, schema, max_chars=limits.max_content_chars, max_depth=limits.max_depth,
                         policy=limits.changes)


async def check_code(text: str) -> Any:
    """parser_fix's validator for Python: fences stripped, dedented, ast.parse."""
    from kgot_errors.nodes._code import code_layer

    return await offload(code_layer, text)


def fingerprint(text: str) -> str:
    """Identity of a candidate for the no-progress check (surrounding whitespace ignored)."""
    return hashlib.sha256(text.strip().encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _clip(text: Any, limit: int = 1_500) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def feedback_of(record: AttemptRecord) -> str:
    """What an attempt's validator and run said, as text for the next prompt (external feedback only)."""
    lines = [f"{record['layer']} {record['verdict']}: {record['reason']}"]
    evidence = record.get("evidence") or {}
    lines += [f"- {e}" for e in list(evidence.get("errors") or [])[:10]]
    nested = evidence.get("run")
    run: dict[str, Any] = nested if isinstance(nested, dict) else evidence
    if "exit_code" in run or "stderr" in run:
        lines.append(f"exit code: {run.get('exit_code')}" + (" (timed out)" if run.get("timed_out") else ""))
        for stream in ("stdout", "stderr"):
            if run.get(stream):
                lines.append(f"{stream}:\n{_clip(run[stream])}")
    error = evidence.get("provider_error") or evidence.get("operation_error") or evidence
    if isinstance(error, dict) and error.get("message") and error.get("error_type"):
        lines.append(f"error: {error['error_type']}: {_clip(error['message'], 500)}")
        if error.get("traceback"):
            lines.append("traceback (last lines):\n" + str(error["traceback"])[-800:])
    return "\n".join(lines)[:_FEEDBACK_CHARS]
