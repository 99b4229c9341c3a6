"""Model calls end at a total deadline per call and per incident, even when every read arrives in time."""

from __future__ import annotations

import asyncio
import json
import time

from kgot_errors.graph.builder import build_graph
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import load_settings
from kgot_errors.state import Layer, RecoveryResult
from kgot_errors.testing import RecordingSleep, loopback_model, loopback_openai
from kgot_errors.testing.openai_server import trickle

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
INCIDENT = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value", "output_schema": SCHEMA,
            "content": "{name: Bob, age: thirty"}  # parser_fix cannot make "thirty" fit: the model is asked
GOOD = '{"name": "Bob", "age": 30}'
BYTE_EVERY = 0.2  # seconds: a ~300-byte answer takes a minute, each read well inside the client's 5 s


async def _recover(server, **groups) -> tuple[RecoveryResult, float]:
    settings = load_settings(environ={}, **groups)
    ctx = RecoveryContext(settings=settings, model=loopback_model(server, timeout=5.0), sleep=RecordingSleep())
    started = time.monotonic()
    out = await asyncio.wait_for(build_graph().ainvoke({"incident": INCIDENT}, context=ctx), timeout=30)
    return RecoveryResult.from_data(out["result"]), time.monotonic() - started


async def test_a_trickled_answer_ends_at_the_per_call_deadline_not_after_every_byte():
    with loopback_openai(lambda request: trickle(BYTE_EVERY, GOOD)) as server:
        result, elapsed = await _recover(
            server, llm={"timeout_seconds": 1.0}, syntax_error_management={"max_retries": 1},
            error_recovery={"max_refinement_iterations": 0, "voting_rounds": 1})
        calls = len(server.chat_requests)
    assert not result.recovered
    (fix,) = result.attempts_by(Layer.LLM_FIX)
    assert fix.verdict == "failed" and fix.llm_calls == 1
    assert "did not answer within 1 s (llm.timeout_seconds)" in fix.reason
    assert fix.duration_s < 1.8  # one deadline: not re-run at once by the provider RetryPolicy
    assert calls <= 3 and elapsed < 1.0 * calls + 2  # each later layer's call cut at 1 s too


async def test_the_incident_deadline_caps_all_model_calls_together():
    with loopback_openai(lambda request: trickle(BYTE_EVERY, GOOD)) as server:
        result, elapsed = await _recover(
            server, llm={"timeout_seconds": 1.0, "incident_timeout_seconds": 2.5},
            syntax_error_management={"max_retries": 3})
        calls = len(server.chat_requests)
    fixes = result.attempts_by(Layer.LLM_FIX)
    assert [f.verdict for f in fixes] == ["failed"] * 3
    assert "(llm.timeout_seconds)" in fixes[0].reason and "(llm.incident_timeout_seconds)" in fixes[2].reason
    assert sum(f.duration_s for f in fixes) < 2.5 + 0.6
    later = [a for a in result.attempts if a.layer in (Layer.REFINE, Layer.VOTE)]
    assert later and all(a.verdict == "skipped" and "LLM budget exhausted" in a.reason for a in later)
    assert calls == 3 and elapsed < 2.5 + 2.5


async def test_the_vote_samples_share_what_the_incident_has_left_not_a_whole_call_each():
    """The samples run side by side; each is cut at what is left of llm.incident_timeout_seconds (here about
    0.5 s after llm_fix and refine used 2 s each), not at the per-call 2 s."""
    with loopback_openai(lambda request: trickle(BYTE_EVERY, GOOD)) as server:
        result, elapsed = await _recover(
            server, llm={"timeout_seconds": 2.0, "incident_timeout_seconds": 4.6},
            syntax_error_management={"max_retries": 1},
            error_recovery={"max_refinement_iterations": 0, "voting_rounds": 3})
    used = sum(a.duration_s for a in result.attempts if a.layer in (Layer.LLM_FIX, Layer.REFINE))
    assert 4.0 <= used < 4.6  # llm_fix and refine: one cut call of 2 s each
    (vote,) = result.attempts_by(Layer.VOTE)
    assert not result.recovered and vote.llm_calls == 3
    assert "(llm.incident_timeout_seconds)" in json.dumps(vote.evidence)  # each sample cut at what was left
    assert elapsed < 4.6 + 1.2  # not a further 2 s per-call deadline
