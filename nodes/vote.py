"""vote: samples several candidates and accepts the majority only above the consensus threshold; never accepts a tie.

Self-consistency in two passes of this node around a Send fan-out:

    vote (opens the poll) ──Send×N──► vote_sample ──► vote (tallies: the one Attempt) ──► finish

Each `vote_sample` asks the model once at the poll's temperature (> 0) and turns the answer
into a ballot: its canonical form (sorted-key JSON with normalised numbers and whitespace;
for code, the program's sandbox output) or an abstention with the reason (provider failure,
unparseable answer). The tally counts the ballots that carry an answer: the top answer wins
only with a share >= `consensus_threshold`, no tie, and only if it passes its validator
(the schema; exit 0 in the sandbox; the operation returning). Otherwise the incident ends
`escalated`, with the vote table in the attempt's evidence.
"""

from __future__ import annotations

import ast
import json
import math
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from langgraph.runtime import Runtime

from kgot_errors.nodes import _prompts
from kgot_errors.nodes._base import NO_MODEL, fix_verdict, proven, recorder
from kgot_errors.nodes._llm import Answer, Budget, ask, budget
from kgot_errors.nodes.refine import Proof, parse_candidate, prove, revision_request, revision_target
from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.state import Layer, RecoveryState, RecoveryUpdate, Verdict

__all__ = ["Tally", "canonical_code", "canonical_json", "canonical_run", "tally", "vote", "vote_sample"]

LAYER = Layer.VOTE
_PREVIEW = 200
_MIN_SAMPLES = 2


def _number(value: float) -> int | float:
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return int(value)  # 1.0, 1e2 and -0.0 count as the integers they are
    return value


def _normal(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return _number(float(value)) if isinstance(value, float) else value
    if isinstance(value, str):
        return unicodedata.normalize("NFC", " ".join(value.split()))
    if isinstance(value, Mapping):
        return {unicodedata.normalize("NFC", str(k)): _normal(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_normal(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """The form JSON answers are counted in: sorted keys, no layout, 2.0 == 2, whitespace runs in strings collapsed."""
    return json.dumps(_normal(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def _lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").strip().split("\n"))


def canonical_run(run: Mapping[str, Any]) -> str:
    """The form code answers are counted in: how the program ended and what it printed (a crash: its error line)."""
    if run.get("timed_out"):
        return "timed out"
    ending = f"exit {run.get('exit_code')}"
    if run.get("exit_code") != 0:
        last = _lines(run.get("stderr") or "").rsplit("\n", 1)[-1]
        return f"{ending}: {last}"
    return f"{ending}\n{_lines(run.get('stdout') or '')}"


def canonical_code(code: str) -> str | None:
    """Code compared without running it (no sandbox): its syntax tree, so layout and comments do not count."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


@dataclass(frozen=True)
class Tally:
    """The count: one row per distinct answer (most votes first), the abstentions, the top share, tie or not."""

    table: list[dict[str, Any]]
    abstained: list[dict[str, Any]]
    valid_votes: int
    share: float
    tie: bool

    @property
    def winner(self) -> str | None:
        return self.table[0]["key"] if self.table and not self.tie else None

    def evidence(self) -> dict[str, Any]:
        rows = [{"answer": r["key"][:_PREVIEW], "votes": r["votes"], "samples": r["samples"], "valid": r["valid"]}
                for r in self.table]
        return {"table": rows, "abstained": self.abstained, "valid_votes": self.valid_votes,
                "share": round(self.share, 4), "tie": self.tie}


def tally(ballots: Sequence[Mapping[str, Any]]) -> Tally:
    """Count ballots by canonical answer; a ballot without one abstains."""
    counted = [b for b in ballots if b.get("key") is not None]
    counts = Counter(b["key"] for b in counted)
    table = [{"key": key, "votes": n, "samples": sorted(b["index"] for b in counted if b["key"] == key),
              "valid": next(b["valid"] for b in counted if b["key"] == key)}
             for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    abstained = [{"sample": b["index"], "reason": b["reason"]} for b in ballots if b.get("key") is None]
    top = table[0]["votes"] if table else 0
    tie = sum(1 for r in table if r["votes"] == top) > 1
    return Tally(table, sorted(abstained, key=lambda a: a["sample"]), len(counted),
                 top / len(counted) if counted else 0.0, tie)


def _vote(key: str | None, proof: Proof, *, valid: bool, **extra: Any) -> dict[str, Any]:
    return {"key": key, "value": proof.value, "text": proof.text, "valid": valid, "reason": proof.reason,
            **({"changes": list(proof.changes), "degraded": proof.degraded} if proof.changes else {}), **extra}


async def _ballot(target: str, text: str, request: Mapping[str, Any], ctx: RecoveryContext) -> dict[str, Any]:
    """The answer's canonical key and whether it passes validation (code: run in the sandbox here, in parallel)."""
    parsed = await parse_candidate(target, text, request, ctx)
    if target == "json" and not parsed.ok and request.get("schema") is not None:
        loose = await parse_candidate(target, text, {**request, "schema": None}, ctx)
        if loose.ok:  # JSON that misses the schema still counts as a vote; it just cannot win
            return _vote(canonical_json(loose.value), replace(loose, reason=parsed.reason), valid=False)
    if not parsed.ok:
        return {"reason": parsed.reason}
    if target != "python":  # an operation is never run per sample: only the winner's arguments are called
        return _vote(canonical_json(parsed.value), parsed, valid=True)
    if not request.get("run"):
        return _vote(canonical_code(parsed.text or ""), parsed, valid=True)
    proof = await prove(target, text, request, ctx, parsed)
    run = proof.evidence.get("run")
    if proof.broken or run is None:
        return {"reason": proof.reason}
    return _vote(canonical_run(run), replace(parsed, reason=proof.reason), valid=proof.ok, run=run)


async def vote_sample(sample: dict[str, Any], runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """One independent sample for the vote (input: the Send payload); abstains on any failure, never decides."""
    ctx = context_of(runtime)
    ballot: dict[str, Any] = {"index": sample["index"], "key": None, "value": None, "text": None, "valid": False,
                              "reason": "", "llm_calls": 0, "tokens": 0}
    request = sample["request"]
    prompt = _prompts.messages("vote", request, max_chars=ctx.settings.llm.max_prompt_chars)
    seconds_left = sample.get("seconds_left")  # the samples run side by side: each may use what the incident has left
    allowance = Budget(0, 0, sample["calls_each"], sample["tokens_left"],
                       max_seconds=math.inf if seconds_left is None else seconds_left)
    reply = await ask(ctx, runtime, prompt, allowance=allowance, schema=request.get("schema"),
                      start_method=sample.get("method"), temperature=sample["temperature"])
    ballot.update(llm_calls=reply.calls, tokens=reply.tokens)
    if not isinstance(reply, Answer):
        return {"ballots": [{**ballot, "reason": f"abstains: {reply.reason}"}]}
    if not reply.text.strip():
        why = f"the model refused: {reply.refusal}" if reply.refusal else "empty answer"
        return {"ballots": [{**ballot, "reason": f"abstains: {why}"}]}
    found = await _ballot(sample["target"], reply.text, request, ctx)
    if found.get("key") is None:
        found["reason"] = f"abstains: {found.get('reason') or 'no answer found'}"
    return {"ballots": [{**ballot, **found}]}


def _open(state: RecoveryState, ctx: RecoveryContext, record: Any) -> RecoveryUpdate:
    target, why_not = revision_target(state, ctx)
    if target is None:
        return record(Verdict.SKIPPED, why_not)
    if ctx.model is None:
        return record(Verdict.SKIPPED, NO_MODEL)
    allowance = budget(state, ctx.settings)
    rounds = ctx.settings.error_recovery.voting_rounds
    n = min(rounds, allowance.calls_left)
    if allowance.exhausted or n < min(_MIN_SAMPLES, rounds):
        return record(Verdict.SKIPPED, allowance.reason if allowance.exhausted else
                      f"the LLM budget leaves {n} call(s): too few for a vote", evidence=allowance.evidence())
    last_method = next((a["evidence"].get("method") for a in reversed(state.get("attempts", ()))
                        if a["evidence"].get("method") not in (None, "plain")), None)
    temperature = ctx.settings.error_recovery.vote_temperature
    return {"poll": {"target": target, "n": n, "rounds": rounds, "temperature": temperature,
                     "method": last_method, "calls_each": allowance.calls_left // n,
                     "tokens_left": allowance.max_tokens - allowance.tokens_used,
                     "seconds_left": allowance.seconds_left if math.isfinite(allowance.seconds_left) else None,
                     "request": revision_request(state, ctx, target)}}


async def _winner_proof(poll: Mapping[str, Any], ballot: Mapping[str, Any], ctx: RecoveryContext) -> Proof:
    target = poll["target"]
    if target == "arguments":
        parsed = Proof(True, "valid JSON", "json+schema", ballot["value"], ballot["text"])
        return await prove(target, ballot["text"], poll["request"], ctx, parsed)
    validator = {"json": "json+schema", "python": "sandbox" if poll["request"].get("run") else "ast.parse"}[target]
    if not ballot["valid"]:
        return Proof(False, ballot["reason"], validator, evidence=({"run": ballot["run"]} if ballot.get("run") else {}))
    return Proof(True, ballot["reason"], validator, ballot["value"], ballot["text"],
                 changes=tuple(ballot.get("changes", ())), degraded=bool(ballot.get("degraded")))


async def vote(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Opens the poll (first pass) or tallies the ballots (second pass); recovered only by a validated majority."""
    ctx = context_of(runtime)
    started = ctx.clock()
    record = recorder(LAYER, state, ctx, started)

    poll = state.get("poll")
    if poll is None:
        return _open(state, ctx, record)
    ballots = list(state.get("ballots", ()))
    count = tally(ballots)
    threshold = ctx.settings.error_recovery.consensus_threshold
    evidence: dict[str, Any] = {"target": poll["target"], "rounds": poll["n"], "temperature": poll["temperature"],
                                "threshold": threshold, **count.evidence()}
    if poll["n"] < poll["rounds"]:
        evidence["rounds_cut_by_budget"] = poll["rounds"]
    spent = {"llm_calls": sum(b["llm_calls"] for b in ballots), "tokens": sum(b["tokens"] for b in ballots)}
    if count.valid_votes == 0:
        return record(Verdict.FAILED, f"no vote: all {len(ballots)} samples abstained",
                      evidence={**evidence, "final": True}, **spent)
    if count.tie:
        top = count.table[0]["votes"]
        leaders = sum(1 for r in count.table if r["votes"] == top)
        return record(Verdict.FAILED, f"tie: {leaders} answers with {top} vote(s) each",
                      evidence={**evidence, "escalated": True}, **spent)
    if count.share < threshold:
        return record(Verdict.FAILED, f"no consensus: the top answer has {count.share:.0%} of {count.valid_votes} "
                                      f"valid votes, below {threshold:.0%}", evidence={**evidence, "escalated": True},
                      **spent)
    ballot = min((b for b in ballots if b.get("key") == count.winner), key=lambda b: b["index"])
    proof = await _winner_proof(poll, ballot, ctx)
    evidence.update({k: v for k, v in proof.evidence.items() if k not in evidence})
    if not proof.ok:
        return record(Verdict.FAILED, f"the majority answer fails validation: {proof.reason}",
                      validator=proof.validator, candidate=ballot["text"], evidence={**evidence, "escalated": True},
                      **spent)
    reason = f"{count.table[0]['votes']} of {count.valid_votes} valid votes ({count.share:.0%}) for an answer that " \
             f"passes {proof.validator}"
    return {
        **record(fix_verdict(proof), reason, validator=proof.validator, candidate=proof.text, evidence=evidence,
                 **spent),
        "recovered": proven(LAYER, proof),
    }
