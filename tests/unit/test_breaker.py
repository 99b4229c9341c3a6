"""The circuit breaker state machine, driven by an injected clock: open, half-open, one probe, store snapshots."""

from __future__ import annotations

import json
import threading

import pytest

from kgot_errors.runtime.breaker import BreakerState, BreakerStore, CircuitBreaker, default_store


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        breaker.settle(breaker.try_acquire(), failed=True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("op", threshold=3, reset_seconds=30, clock=clock)


def test_opens_after_threshold_consecutive_transient_failures(breaker):
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert breaker.try_acquire() is None


def test_a_success_or_a_permanent_answer_resets_the_consecutive_count(breaker):
    fail(breaker, 2)
    breaker.settle(breaker.try_acquire(), failed=False)  # reachable: a success, or a 401
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 2


def test_open_circuit_counts_down_on_the_injected_clock_then_half_opens(breaker, clock):
    fail(breaker, 3)
    clock.now += 10
    assert breaker.retry_in() == pytest.approx(20)
    clock.now += 19.9
    assert breaker.state is BreakerState.OPEN and breaker.try_acquire() is None
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN and breaker.retry_in() == 0


def test_half_open_admits_exactly_one_probe_at_a_time(breaker, clock):
    fail(breaker, 3)
    clock.now += 30
    probe = breaker.try_acquire()
    assert probe is not None and probe.probe
    assert breaker.try_acquire() is None  # a second caller is refused while the probe runs
    assert breaker.retry_in() > 0
    breaker.settle(probe, failed=False)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.try_acquire() is not None


def test_a_failed_probe_reopens_and_restarts_the_reset_timer(breaker, clock):
    fail(breaker, 3)
    clock.now += 45
    breaker.settle(breaker.try_acquire(), failed=True)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(30)  # from the probe's failure, not the first opening
    assert breaker.snapshot()["opened"] == 2


def test_an_abandoned_probe_frees_the_slot_and_proves_nothing(breaker, clock):
    fail(breaker, 3)
    clock.now += 30
    breaker.settle(breaker.try_acquire(), failed=None)  # cancelled mid-call
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire() is not None


def test_late_answers_from_calls_admitted_before_opening_do_not_close_it(breaker):
    early = breaker.try_acquire()
    fail(breaker, 3)
    breaker.settle(early, failed=False)
    assert breaker.state is BreakerState.OPEN


def test_concurrent_threads_get_one_probe_between_them(breaker, clock):
    fail(breaker, 3)
    clock.now += 30
    tickets = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        tickets.append(breaker.try_acquire())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(t is not None for t in tickets) == 1


def test_store_shares_one_circuit_per_name_and_snapshots_plain_data(clock):
    store = BreakerStore(clock=clock)
    a = store.get("search", threshold=2, reset_seconds=5)
    assert store.get("search", threshold=2, reset_seconds=5) is a
    fail(a, 2)
    store.get("fetch")
    snap = store.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert list(snap) == ["fetch", "search"]
    assert snap["search"] == {"state": "open", "consecutive_failures": 2, "threshold": 2, "reset_seconds": 5.0,
                              "retry_in_s": 5.0, "probe_in_flight": False, "admitted": 2, "rejected": 0,
                              "successes": 0, "failures": 2, "opened": 1}
    assert snap["fetch"]["state"] == "closed"


def test_store_applies_the_latest_settings_to_an_existing_circuit(clock):
    store = BreakerStore(clock=clock)
    store.get("op", threshold=5, reset_seconds=30)
    b = store.get("op", threshold=1, reset_seconds=2)
    fail(b)
    assert b.state is BreakerState.OPEN and b.retry_in() == pytest.approx(2)


def test_default_store_is_one_per_process():
    assert default_store() is default_store()


def test_threshold_below_one_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker("x", threshold=0)


def test_refusal_says_how_long_the_circuit_stays_shut_and_counts_it(breaker, clock):
    assert breaker.refusal() is None
    fail(breaker, 3)
    clock.now += 12
    assert breaker.refusal() == pytest.approx(18)
    assert breaker.snapshot()["rejected"] == 1
    clock.now += 18
    assert breaker.refusal() is None  # half-open: a probe would be admitted


def test_a_failed_call_carrying_several_callers_counts_once_for_each(breaker):
    breaker.settle(breaker.try_acquire(), failed=True, calls=2)
    assert breaker.state is BreakerState.CLOSED and breaker.snapshot()["consecutive_failures"] == 2
    breaker.settle(breaker.try_acquire(), failed=True)
    assert breaker.state is BreakerState.OPEN
