"""Statistics over real stores filled by real recoveries with known outcomes: every figure asserted exactly."""

from __future__ import annotations

import random
import uuid

import pytest

from kgot_errors import recover
from kgot_errors.observability.statistics import Tally, get_comprehensive_statistics, get_statistics
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings, load_settings

BROKEN = [{"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": f"{{'i': {i}, 'ok': True,}}"}
          for i in range(3)]
VALID = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": '{"valid": true}'}
TRUNCATED = {"error_type": "json.decoder.JSONDecodeError", "message": "Unterminated string",
             "content": '{"items": [1, 2, 3], "note": "cut off he'}
REFUSAL = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value",
           "content": "Sorry, I cannot do that."}
FLAKY = {"error_type": "TimeoutError", "message": "timed out", "operation": "flaky", "arguments": {}}
SLOW = {"error_type": "openai.RateLimitError", "message": "429", "status_code": 429, "retry_after": 45,
        "operation": "steady", "arguments": {}}
DENIED = {"error_type": "openai.AuthenticationError", "message": "401", "status_code": 401}
HUMAN = load_settings(environ={}, error_recovery={"escalate_to_human": True})


class FakeTime:
    """A clock that moves only when the graph sleeps: each attempt's duration is exactly the waits in it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def fill(target: str) -> tuple[list, BreakerStore]:
    """Ten incidents: 3 repaired by parser_fix, 1 valid as given, 2 unrecoverable, 1 flaky operation that
    succeeds on its 2nd re-run, 1 rate-limited one recovered after a 45 s Retry-After, 1 permanent 401, and
    1 paused for a person."""
    calls = {"flaky": 0}

    def flaky() -> dict:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise TimeoutError("still down")
        return {"ok": "flaky"}

    time, breakers = FakeTime(), BreakerStore()
    ctx = RecoveryContext(settings=Settings(), operations={"flaky": flaky, "steady": lambda: {"ok": "steady"}},
                          sleep=time.sleep, clock=time.clock, rng=random.Random(7), breakers=breakers)
    results = [recover(i, checkpointer=target, runtime_context=ctx)
               for i in (*BROKEN, VALID, REFUSAL, REFUSAL, FLAKY, SLOW, DENIED)]
    paused = recover(REFUSAL, checkpointer=target, settings=HUMAN)
    assert [r.outcome for r in results] + [paused.outcome] == \
        ["recovered"] * 4 + ["not_recovered"] * 2 + ["recovered"] * 2 + ["not_recovered", "escalated"]
    return results, breakers


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "stats.sqlite")
    return _fresh_database(request.getfixturevalue("postgres_url"))


def _fresh_database(url: str) -> str:
    """A database of its own: other tests share the server, and statistics read every thread in a store."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"kgot_stats_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def test_figures_over_a_store_of_known_incidents(store):
    results, breakers = fill(store)
    s = get_statistics(checkpointer=store, breakers=breakers)

    assert (s.incidents, s.finished, s.paused, s.open) == (10, 9, 1, 0)
    assert (s.recovered, s.not_recovered, s.escalated) == (6, 3, 1)
    assert s.recovery_rate == 0.6
    assert {k: (v.incidents, v.recovered) for k, v in s.by_kind.items()} == \
        {"syntax": (7, 4), "transient": (2, 2), "permanent": (1, 0)}
    assert s.recovered_by == {"unicode_fix": 1, "parser_fix": 3, "backoff": 2}
    layers = {k: (v.attempts, v.recovered, v.failed, v.skipped, v.error) for k, v in s.layers.items()}
    assert layers == {
        "unicode_fix": (7, 1, 6, 0, 0),
        "parser_fix": (6, 3, 3, 0, 0),
        "llm_fix": (3, 0, 0, 3, 0),
        "backoff": (3, 2, 1, 0, 0),
        "refine": (3, 0, 0, 3, 0),
        "vote": (3, 0, 0, 3, 0),
    }
    assert (s.llm_calls, s.tokens) == (0, 0)

    # time to recovery = the time the layers took on the injected clock: the backoff waits, nothing else
    flaky, slow = results[6], results[7]
    assert flaky.duration_s > 0 and slow.duration_s >= 45
    times = sorted(r.duration_s for r in results if r.recovered)
    assert times == [0.0, 0.0, 0.0, 0.0, flaky.duration_s, slow.duration_s]
    t = s.time_to_recovery
    assert (t.count, t.p50, t.p95, t.max, t.over_target) == (6, 0.0, slow.duration_s, slow.duration_s, 1)
    assert t.mean == round((flaky.duration_s + slow.duration_s) / 6, 6)
    assert list(s.recovery_times) == times

    assert {name: b["state"] for name, b in s.breakers.items()} == {"flaky": "closed", "steady": "closed"}
    assert s.sandbox.runs == 0
    # health: 0.5 * 0.6 + 0.2 * 5/6 + 0.15 * 1 + 0.15 * 1
    assert s.health.components == {"recovery": 0.6, "speed": 0.8333, "breakers": 1.0, "backends": 1.0}
    assert s.health.score == 0.7667 and s.health.status == "warning"
    assert [a["alert_type"] for a in s.health.alerts] == ["HEALTH_WARNING"]


def test_statistics_survive_a_restart_and_match_a_second_reader(tmp_path):
    store = str(tmp_path / "again.sqlite")
    _, breakers = fill(store)
    first = get_statistics(checkpointer=store, breakers=breakers).to_dict()
    # a new process knows nothing of the first one's counters; the figures come from the store alone
    import subprocess
    import sys

    code = ("import json, sys; from kgot_errors.observability import get_statistics; "
            "from kgot_errors.runtime.breaker import BreakerStore; "
            "print(json.dumps(get_statistics(checkpointer=sys.argv[1], breakers=BreakerStore()).to_dict()))")
    out = subprocess.run([sys.executable, "-c", code, store], capture_output=True, text=True, timeout=120, check=True)
    import json

    second = json.loads(out.stdout)
    for key in ("incidents", "recovered", "recovery_rate", "by_kind", "recovered_by", "layers", "time_to_recovery"):
        assert second[key] == first[key], key


def test_comprehensive_statistics_have_the_original_keys(tmp_path):
    store = str(tmp_path / "c.sqlite")
    _, breakers = fill(store)
    c = get_comprehensive_statistics(checkpointer=store, breakers=breakers)
    assert c["kgot_error_management"]["total_errors_handled"] == 10
    assert c["kgot_error_management"]["successful_recoveries"] == 6
    assert c["kgot_error_management"]["recovery_rate"] == 60.0  # percent, as the original reports it
    assert c["syntax_error_manager"]["total_syntax_errors"] == 7
    assert c["api_error_manager"]["total_api_errors"] == 3
    assert c["api_error_manager"]["retry_attempts"] == 3
    assert c["python_executor_manager"]["total_executions"] == 0
    assert c["integration_health_score"] == 0.7667


def test_an_in_memory_saver_and_a_missing_file_are_read_too(tmp_path):
    from kgot_errors.graph.recover import run_sync
    from kgot_errors.observability.statistics import aget_statistics
    from kgot_errors.runtime.checkpoint import open_checkpointer

    async def go():
        async with open_checkpointer("memory") as saver:
            from kgot_errors import arecover

            await arecover(BROKEN[0], checkpointer=saver, settings=Settings())
            await arecover(REFUSAL, checkpointer=saver, settings=Settings())
            cut = await arecover(TRUNCATED, checkpointer=saver, settings=Settings())
            assert cut.outcome == "degraded"
            return await aget_statistics(checkpointer=saver, breakers=BreakerStore())

    s = run_sync(go)
    # the completed truncation keeps its value but is no recovery: counted apart, and against the rate
    assert (s.incidents, s.recovered, s.degraded, s.not_recovered, s.recovered_by) == (3, 1, 1, 1, {"parser_fix": 1})
    assert s.recovery_rate == round(1 / 3, 6)
    empty = get_statistics(checkpointer=str(tmp_path / "nothing-here.sqlite"), breakers=BreakerStore())
    assert (empty.incidents, empty.recovery_rate, empty.health.score) == (0, None, 1.0)
    assert not (tmp_path / "nothing-here.sqlite").exists()  # reading never creates a store


@pytest.mark.filterwarnings("ignore:sandbox backend 'unsafe-subprocess':RuntimeWarning")
def test_sandbox_runs_and_kills_come_from_the_attempt_evidence():
    from kgot_errors.sandbox import get_sandbox

    sandbox = get_sandbox("unsafe-subprocess")
    ok = sandbox.run("print(sum(range(10)))", timeout=10).to_dict()
    hung = sandbox.run("while True:\n    pass", timeout=1).to_dict()
    assert ok["ok"] and hung["killed_by"] == "timeout"

    def attempt(n, verdict, run):
        return {"layer": "sandbox", "try_no": n, "verdict": verdict, "reason": "r", "validator": "sandbox",
                "evidence": {"run": run}, "candidate": None, "duration_s": run["duration"], "llm_calls": 0,
                "tokens": 0}

    tally = Tally()
    tally.add_result({"recovered": True, "kind": "execution", "outcome": "recovered", "recovered_by": "sandbox",
                      "attempts": [attempt(1, "failed", hung), attempt(2, "recovered", ok)],
                      "duration_s": hung["duration"] + ok["duration"]})
    s = tally.statistics(store="t")
    assert (s.sandbox.runs, s.sandbox.ok, s.sandbox.killed) == (2, 1, {"timeout": 1})
    assert s.sandbox.by_backend == {"unsafe-subprocess": 2}
    assert s.layers["sandbox"].attempts == 2 and s.recovered_by == {"sandbox": 1}
