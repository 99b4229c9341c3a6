"""llm_fix: asks the chat model to fix the output with the error fed back; never accepts a fix a validator did not prove.

Each try sends the operation context, the original prompt, the failing output (quoted as
untrusted data, cut to `llm.max_prompt_chars`), the original error, the latest validator
verdict, the schema and this layer's earlier answers; JSON answers use structured output
when a schema is given. The answer goes through parser_fix's validators (extraction,
strict JSON, the schema; `ast.parse` for Python): only they can make the try `recovered`.

Proven corrections are cached by LangGraph's node cache. The key (`correction_key`) is a
digest of the request built from the state alone (content, errors, schema, prompt, this
layer's earlier answers, the try number), so try n+1 never shares try n's entry; the model
identity and the TTL, which live in the runtime context and settings, are added by
`CorrectionCache`, the view over the graph's cache that also refuses to store anything but
a proof and marks a replayed Attempt as served from the cache (no call, no tokens).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.cache.base import BaseCache, FullKey, Namespace
from langgraph.runtime import Runtime

from kgot_errors.nodes import _prompts
from kgot_errors.nodes._base import NO_MODEL, fix_verdict, proven, recorder, tries
from kgot_errors.nodes._llm import Answer, ask, budget, check_code, check_json, feedback_of
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.runtime.model import model_identity
from kgot_errors.state import ContentKind, Layer, RecoveryState, RecoveryUpdate, Verdict
from kgot_errors.state.incident import error_line

__all__ = ["CorrectionCache", "correction_key", "correction_request", "llm_fix"]

LAYER = Layer.LLM_FIX


def correction_request(state: RecoveryState) -> dict[str, Any] | None:
    """What the next try asks the model, as plain data derived from the state alone (None: nothing to correct)."""
    incident = state.get("incident") or {}  # LangGraph also keys an empty state, when it draws the graph
    content = incident.get("content")
    target = state.get("content_kind")
    if content is None or target not in (ContentKind.JSON, ContentKind.PYTHON):
        return None
    attempts = state.get("attempts", ())
    failed = [a for a in attempts if a["verdict"] == Verdict.FAILED]
    return {
        "target": str(target),
        "content": content,
        "schema": incident.get("output_schema") if target == ContentKind.JSON else None,
        "prompt": incident.get("prompt"),
        "context": incident.get("context") or None,
        "error": error_line(incident),
        "feedback": feedback_of(failed[-1]) if failed else None,
        "history": [{"layer": a["layer"], "candidate": a["candidate"], "feedback": feedback_of(a)}
                    for a in failed if a["layer"] == LAYER and a["candidate"]],
        "try_no": tries(state, LAYER) + 1,
    }


def _digest(request: dict[str, Any] | None) -> str:
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def correction_key(state: RecoveryState) -> str:
    """The node cache's key_func: a digest of `correction_request(state)` (the node input is the state)."""
    return _digest(correction_request(state))


class CorrectionCache(BaseCache[Any]):
    """A view of any LangGraph cache for llm_fix: proofs only, keyed per model, replays marked.

    `scope` (the model identity) is prefixed to every key; `ttl`, when set, replaces the
    CachePolicy's; `enabled=False` turns the cache off for a run. Views made with `scoped`
    share the underlying cache.
    """

    def __init__(self, inner: BaseCache[Any], *, scope: str = "", ttl: int | None = None,
                 enabled: bool = True) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.scope = scope
        self.ttl = ttl
        self.enabled = enabled

    def scoped(self, *, scope: str, ttl: int | None, enabled: bool = True) -> CorrectionCache:
        return CorrectionCache(self.inner, scope=scope, ttl=ttl, enabled=enabled)

    def _key(self, key: FullKey) -> FullKey:
        return key[0], f"{self.scope}|{key[1]}"

    def _lookup(self, keys: Sequence[FullKey]) -> dict[FullKey, FullKey]:
        return {self._key(k): k for k in keys} if self.enabled else {}

    def _store(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> dict[FullKey, tuple[Any, int | None]]:
        if not self.enabled:
            return {}
        return {self._key(k): (writes, self.ttl if self.ttl is not None else ttl)
                for k, (writes, ttl) in pairs.items() if _proves(writes)}

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        mapping = self._lookup(keys)
        found = self.inner.get(list(mapping)) if mapping else {}
        return {mapping[k]: _replayed(v) for k, v in found.items()}

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        mapping = self._lookup(keys)
        found = await self.inner.aget(list(mapping)) if mapping else {}
        return {mapping[k]: _replayed(v) for k, v in found.items()}

    def set(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        if stored := self._store(pairs):
            self.inner.set(stored)

    async def aset(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        if stored := self._store(pairs):
            await self.inner.aset(stored)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        self.inner.clear(namespaces)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        await self.inner.aclear(namespaces)


def _proves(writes: Any) -> bool:
    """Only writes that set `recovered` are worth keeping: a failed try is never cached, so never replayed."""
    return any(channel == "recovered" and value for channel, value in writes)


def _served(record: dict[str, Any]) -> dict[str, Any]:
    evidence = {**record["evidence"], "cached": True}
    return {**record, "llm_calls": 0, "tokens": 0, "duration_s": 0.0, "evidence": evidence}


def _replayed(writes: Any) -> list[tuple[str, Any]]:
    """The cached writes as this run's: the Attempt says it came from the cache and cost nothing.

    A layer that proves a fix also writes the result (graph/builder.py), so the result's copy of
    the Attempt and its totals are restated the same way.
    """
    writes = list(writes)
    served = {(a["layer"], a["try_no"]): _served(a) for channel, value in writes if channel == "attempts"
              for a in value}
    out = []
    for channel, value in writes:
        if channel == "attempts":
            value = [served[(a["layer"], a["try_no"])] for a in value]
        elif channel == "result" and isinstance(value, dict) and "attempts" in value:
            attempts = [served.get((a["layer"], a["try_no"]), a) for a in value["attempts"]]
            value = {**value, "attempts": attempts, "llm_calls": sum(a["llm_calls"] for a in attempts),
                     "tokens": sum(a["tokens"] for a in attempts),
                     "duration_s": round(sum(a["duration_s"] for a in attempts), 6)}
        out.append((channel, value))
    return out


async def _validate(target: str, text: str, schema: dict[str, Any] | None, ctx: RecoveryContext) -> tuple[Any, str]:
    if target == ContentKind.PYTHON:
        return await check_code(text), "ast.parse"
    return await check_json(text, schema, ctx.settings), "json+schema"


async def llm_fix(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """One correction try by the model; recovered only when parser_fix's validators accept the answer."""
    ctx = context_of(runtime)
    started = ctx.clock()
    record = recorder(LAYER, state, ctx, started)

    request = correction_request(state)
    if request is None:
        kind = state.get("content_kind") or "empty"
        return record(Verdict.SKIPPED, f"content is {kind}: nothing a validator could check a correction against")
    if not ctx.settings.syntax_error_management.llm_correction_enabled:
        return record(Verdict.SKIPPED, "LLM correction is disabled (syntax_error_management.llm_correction_enabled)")
    if ctx.model is None:
        return record(Verdict.SKIPPED, NO_MODEL)
    allowance = budget(state, ctx.settings)
    if allowance.exhausted:
        return record(Verdict.SKIPPED, allowance.reason, evidence=allowance.evidence())
    prompt = _prompts.messages("llm_fix", request, max_chars=ctx.settings.llm.max_prompt_chars)
    last_method = next((a["evidence"].get("method") for a in reversed(state.get("attempts", ()))
                        if a["layer"] == LAYER and a["evidence"].get("method")), None)
    reply = await ask(ctx, runtime, prompt, allowance=allowance, schema=request["schema"],
                      start_method=None if last_method == "plain" else last_method)
    evidence: dict[str, Any] = {"model": model_identity(ctx.model), "request_key": _digest(request)[:16]}
    if not isinstance(reply, Answer):
        return record(Verdict.FAILED, reply.reason, evidence={**evidence, **reply.evidence()},
                      llm_calls=reply.calls, tokens=reply.tokens)
    evidence.update(reply.evidence())
    spent = {"llm_calls": reply.calls, "tokens": reply.tokens, "candidate": reply.text}
    if not reply.text.strip():
        why = f"the model refused: {reply.refusal}" if reply.refusal else "the model answered with empty content"
        return record(Verdict.FAILED, why, evidence=evidence, **spent)
    out, validator = await _validate(request["target"], reply.text, request["schema"], ctx)
    evidence.update(steps=list(out.steps), errors=list(out.errors))
    if not out.ok:
        return record(Verdict.FAILED, f"the model's answer does not validate: {out.reason or 'invalid'}",
                      validator=validator, evidence=evidence, **spent)
    reason = "the model's answer validates" + (f" after {', '.join(out.steps)}" if out.steps else "")
    return {
        **record(fix_verdict(out), reason, validator=validator,
                 evidence={**evidence, **({"changes": list(out.changes)} if getattr(out, "changes", ()) else {})},
                 **{**spent, "candidate": out.text}),
        "recovered": proven(LAYER, out),
    }
