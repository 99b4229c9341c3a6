"""Backoff policy and node: wait windows, tenacity equivalence, Retry-After, attempt counts, what is not retried."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
from tenacity import RetryCallState, wait_fixed, wait_random_exponential

from kgot_errors import ErrorKind, Layer, Verdict, history, recover
from kgot_errors.runtime.api_errors import APIErrorManager, with_api_retry
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.operations import BackoffPolicy, NotJSON, json_value, registry
from kgot_errors.runtime.settings import ApiSettings, Settings, load_settings

TRANSIENT = {"error_type": "ConnectionResetError", "error_mro": ["ConnectionResetError", "ConnectionError"],
             "message": "connection reset by peer"}


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def flaky(failures: int, exc: type[Exception] = ConnectionResetError):
    """An async operation that raises `exc` `failures` times, then returns its argument; `.calls` counts."""

    async def op(x: int = 0) -> dict:
        op.calls += 1
        if op.calls <= failures:
            raise exc(f"failure {op.calls}")
        return {"x": x, "calls": op.calls}

    op.calls = 0
    return op


def run(op, *, incident=TRANSIENT, arguments=None, sleeps=None, seed=0, store=None, checkpointer="memory", **api):
    settings = Settings(api_error_management=ApiSettings(**api)) if api else Settings()
    ctx = RecoveryContext(settings=settings, operations={"op": op}, sleep=sleeps or Sleeps(),
                          rng=random.Random(seed), breakers=store or BreakerStore())
    return recover(incident, operation="op", arguments={"x": 1} if arguments is None else arguments,
                   checkpointer=checkpointer, runtime_context=ctx)


def state_after(calls: int) -> RetryCallState:
    state = RetryCallState(None, None, (), {})
    state.attempt_number = calls
    return state


# --- waits -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("calls", "top"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 32.0), (7, 60.0),
                                            (30, 60.0)])
def test_wait_window_tops_double_from_one_second_up_to_max(calls, top):
    wait = BackoffPolicy().wait_after(calls, None, random.Random(1))
    assert (wait.low, wait.high) == (1.0, top)
    assert wait.low <= wait.seconds <= wait.high


def test_six_attempts_wait_at_most_31_seconds_in_all_whatever_max_says():
    policy = BackoffPolicy(max_wait=60)
    tops = [policy.wait_after(n, None, random.Random()).high for n in range(1, policy.max_attempts)]
    assert tops == [1, 2, 4, 8, 16] and sum(tops) == 31


@pytest.mark.parametrize("seed", [0, 1, 7, 2024])
def test_draws_equal_tenacitys_own_wait_random_exponential_given_the_same_random_state(seed):
    saved = random.getstate()
    try:
        random.seed(seed)
        strategy = wait_random_exponential(multiplier=1, min=1, max=60)
        expected = [strategy(state_after(n)) for n in range(1, 9)]
    finally:
        random.setstate(saved)
    rng = random.Random(seed)
    assert [BackoffPolicy().wait_after(n, None, rng).seconds for n in range(1, 9)] == expected


def test_the_injected_rng_decides_the_jitter():
    draws = {seed: [BackoffPolicy().wait_after(4, None, random.Random(seed)).seconds for _ in range(3)]
             for seed in (1, 2)}
    assert draws[1] == [BackoffPolicy().wait_after(4, None, random.Random(1)).seconds] * 3
    assert draws[1] != draws[2]


@pytest.mark.parametrize(("retry_after", "cap", "expected"), [
    (None, 120, 1.0),  # the window [1, 1] alone
    (0.5, 120, 1.0),  # shorter than the computed wait: the computed one wins
    (7, 120, 7.0),  # longer: the server's wins
    (500, 120, 120.0),  # capped
    (500, 0, 1.0),  # a zero cap ignores Retry-After
])
def test_retry_after_wins_when_longer_and_is_capped(retry_after, cap, expected):
    wait = BackoffPolicy(max_retry_after=cap).wait_after(1, retry_after, random.Random(3))
    assert wait.seconds == expected


def test_without_exponential_backoff_every_wait_is_uniform_between_min_and_max():
    policy = BackoffPolicy(exponential=False, min_wait=2, max_wait=9)
    assert {(w.low, w.high) for w in (policy.wait_after(n, None, random.Random(n)) for n in range(1, 6))} == {(2, 9)}


def test_the_wait_is_a_tenacity_strategy_that_composes():
    combined = BackoffPolicy().wait_strategy(random.Random(0)) + wait_fixed(5)
    assert combined(state_after(1)) == 6.0


def test_policy_follows_the_settings_profiles():
    prod = BackoffPolicy.from_settings(load_settings(profile="production", environ={}).api_error_management)
    assert (prod.max_attempts, prod.min_wait, prod.max_wait, prod.breaker_threshold) == (10, 2, 120, 10)
    assert BackoffPolicy.from_settings(ApiSettings()) == BackoffPolicy()


# --- the node, through the graph ---------------------------------------------------------------

@pytest.mark.parametrize(("outage", "op_calls", "recovered"), [(1, 1, True), (3, 3, True), (5, 5, True),
                                                                (6, 5, False), (20, 5, False)])
def test_an_outage_of_k_failures_takes_k_plus_1_calls_and_never_more_than_six(outage, op_calls, recovered):
    op = flaky(outage - 1)  # the incident itself is the first failure
    result = run(op)
    assert op.calls == op_calls and result.recovered is recovered
    assert [a.try_no for a in result.attempts_by(Layer.BACKOFF)] == list(range(1, op_calls + 1))
    if recovered:
        assert result.value == {"x": 1, "calls": op_calls} and result.attempts[-1].validator == "operation"


def test_max_retries_setting_bounds_the_calls_the_original_included():
    op = flaky(10)
    result = run(op, max_retries=3)
    assert op.calls == 2 and not result.recovered
    assert result.attempts[-1].evidence["max_calls"] == 3


def test_the_incidents_retry_after_sets_the_first_wait():
    sleeps = Sleeps()
    run(flaky(0), incident={**TRANSIENT, "retry_after": 4}, sleeps=sleeps)
    assert sleeps.waits == [4.0]


def test_a_permanent_failure_is_not_retried():
    op = flaky(5, PermissionError)
    result = run(op, arguments={})
    assert op.calls == 1 and not result.recovered
    [only] = result.attempts
    assert only.evidence["kind"] == ErrorKind.PERMANENT and only.evidence["final"] is True
    assert "PermissionError" in only.evidence["traceback"]


def test_a_failure_that_is_neither_transient_nor_permanent_is_not_retried_either():
    op = flaky(5, KeyError)
    result = run(op, arguments={})
    assert op.calls == 1 and result.attempts[0].evidence["final"] is True
    assert result.attempts[0].evidence["kind"] != ErrorKind.TRANSIENT


def test_arguments_that_do_not_fit_are_never_called_and_go_to_refine():
    op = flaky(0)
    sleeps = Sleeps()
    result = run(op, arguments={"y": 2}, sleeps=sleeps)
    assert op.calls == 0 and sleeps.waits == []
    first = result.attempts[0]
    assert first.evidence["kind"] == ErrorKind.PERMANENT and "arguments do not fit" in first.reason
    assert result.attempts[1].layer is Layer.REFINE


def test_an_open_circuit_ends_the_attempt_at_once_without_a_call_or_a_wait():
    store = BreakerStore()
    breaker = store.get("op", threshold=1, reset_seconds=30)
    breaker.settle(breaker.try_acquire(), failed=True)
    op, sleeps = flaky(0), Sleeps()
    result = run(op, store=store, sleeps=sleeps)
    assert op.calls == 0 and sleeps.waits == []
    [only] = result.attempts
    assert only.verdict is Verdict.FAILED and only.reason.startswith("circuit open") and only.evidence["final"]


def test_breaker_disabled_keeps_calling_through_a_long_outage():
    op = flaky(10)
    run(op, circuit_breaker_threshold=1, circuit_breaker_enabled=False)
    assert op.calls == 5


def test_a_non_json_return_value_proves_nothing_and_checkpoints_strictly(tmp_path):
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque 42>"

    circular: dict = {}
    circular["self"] = circular
    store = str(tmp_path / "v.sqlite")
    for returned in (Opaque(), {"x": float("nan")}, circular):
        async def op(x: int, returned: object = returned) -> object:
            return returned

        result = run(op, checkpointer=store)
        assert not result.recovered and result.value is None
        assert "is not strict JSON" in result.attempts_by("backoff")[-1].reason
        assert history(result.thread_id, checkpointer=store, settings=Settings())["result"].recovered is False


@pytest.mark.parametrize(("value", "plain", "noted"), [
    ({"a": [1, 2.5, None]}, {"a": [1, 2.5, None]}, False),
    ((1, 2), [1, 2], True),
    ({1: "a"}, {"1": "a"}, True),
])
def test_json_value_keeps_json_and_says_what_it_changed(value, plain, noted):
    got, text, note = json_value(value)
    assert got == plain and (note is not None) is noted


@pytest.mark.parametrize("value", [float("nan"), float("inf"), b"\x00", object(), "\ud800"])
def test_json_value_refuses_what_strict_json_cannot_carry(value):
    with pytest.raises(NotJSON):
        json_value(value)


def test_sync_operations_run_off_the_event_loop_thread():
    seen = []

    def op(x: int) -> int:
        seen.append(threading.current_thread() is threading.main_thread())
        return x + 1

    result = run(op)
    assert result.value == 2 and seen == [False]


def test_a_wrong_breaker_store_is_a_programmer_error_that_raises():
    ctx = RecoveryContext(operations={"op": flaky(0)}, breakers=object(), sleep=Sleeps())
    with pytest.raises(TypeError, match="BreakerStore"):
        recover(TRANSIENT, operation="op", arguments={}, checkpointer=None, runtime_context=ctx)


def test_registry_names_callables_and_refuses_duplicates():
    async def search(q: str) -> str:
        return q

    assert registry(search, fetch=print) == {"search": search, "fetch": print}
    with pytest.raises(ValueError, match="twice"):
        registry(search, search=print)
    with pytest.raises(ValueError, match="__name__"):
        registry(lambda: 1)


# --- APIErrorManager: the same machinery in one call -------------------------------------------

def test_manager_and_graph_make_the_same_calls_and_waits():
    graph_sleeps, manager_sleeps = Sleeps(), Sleeps()
    graph_op = flaky(2)
    run(graph_op, sleeps=graph_sleeps, seed=9, incident=TRANSIENT)
    manager_op = flaky(3)  # the manager makes the first call itself
    api = APIErrorManager(sleep=manager_sleeps, rng=random.Random(9), breakers=BreakerStore())
    assert asyncio.run(api.execute_with_retry(manager_op, "op", 1)) == {"x": 1, "calls": 4}
    assert manager_sleeps.waits == graph_sleeps.waits


def test_manager_raises_a_permanent_error_at_once_and_the_last_error_when_calls_run_out():
    api = APIErrorManager(max_retries=4, sleep=Sleeps(), breakers=BreakerStore())
    denied = flaky(9, PermissionError)
    with pytest.raises(PermissionError):
        asyncio.run(api.execute_with_retry(denied, "denied"))
    assert denied.calls == 1
    down = flaky(9)
    with pytest.raises(ConnectionResetError, match="failure 4"):
        asyncio.run(api.execute_with_retry(down, "down"))
    assert down.calls == 4
    stats = api.get_api_error_statistics()
    assert stats["total_api_errors"] == stats["total_errors"] == 5
    assert stats["error_breakdown"] == {"PermissionError": 1, "ConnectionResetError": 4}
    assert stats["most_common_error"] == ["ConnectionResetError", 4]
    assert (stats["calls"], stats["retries"], stats["gave_up"]) == (5, 3, 1)


def test_manager_decorator_retries_a_sync_function():
    sleeps = Sleeps()
    api = APIErrorManager(sleep=sleeps, rng=random.Random(0), breakers=BreakerStore())
    attempts = []

    @api.with_retry("read")
    def read(path: str) -> str:
        attempts.append(path)
        if len(attempts) < 3:
            raise TimeoutError("slow disk")
        return path.upper()

    assert asyncio.run(read("a")) == "A" and attempts == ["a", "a", "a"]
    assert len(sleeps.waits) == 2 and read.__name__ == "read"
    assert with_api_retry("x", manager=api)(read) is not read


def test_manager_defaults_are_the_original_systems():
    api = APIErrorManager()
    assert (api.max_retries, api.min_wait, api.max_wait) == (6, 1, 60)
    assert APIErrorManager(10, 2, 120).policy.max_attempts == 10
    with pytest.raises(ValueError):
        APIErrorManager(min_wait=90, max_wait=60)
