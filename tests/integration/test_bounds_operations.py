"""A registered operation that hangs: each call ends at its deadline as a failed attempt, and the batch returns."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from kgot_errors import arecover, arecover_many
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.operations import OperationTimeout, run_operation
from kgot_errors.runtime.settings import load_settings


async def _no_wait(_: float) -> None:
    return None


def _context(operations: dict, *, timeout: float = 0.3, calls: int = 3) -> RecoveryContext:
    settings = load_settings(environ={}, api_error_management={"operation_timeout_seconds": timeout,
                                                               "max_retries": calls})
    return RecoveryContext(settings=settings, operations=operations, sleep=_no_wait, breakers=BreakerStore())


def _incident(operation: str) -> dict:
    return {"error_type": "TimeoutError", "message": "timed out", "operation": operation, "arguments": {}}


@pytest.fixture
def release():
    """An event the hung sync operation waits on; set after the test so its thread ends."""
    gate = threading.Event()
    yield gate
    gate.set()


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_a_batch_with_one_hung_operation_returns_in_bounded_time(flavour, release, tmp_path):
    hung_calls = 0

    def hang_sync() -> dict:
        nonlocal hung_calls
        hung_calls += 1
        release.wait()
        return {"late": True}

    async def hang_async() -> dict:
        nonlocal hung_calls
        hung_calls += 1
        await asyncio.Event().wait()
        return {"late": True}

    async def fine() -> dict:
        return {"ok": True}

    ctx = _context({"hang": hang_sync if flavour == "sync" else hang_async, "fine": fine})
    batch = [_incident("fine"), _incident("hang"), _incident("fine")]
    started = time.monotonic()
    results = await asyncio.wait_for(
        arecover_many(batch, checkpointer=str(tmp_path / "s.sqlite"), runtime_context=ctx), timeout=20)
    elapsed = time.monotonic() - started
    assert [r.outcome for r in results][0::2] == ["recovered", "recovered"]
    hung = results[1]
    assert not hung.recovered
    calls = [a for a in hung.attempts if a.layer == "backoff"]
    assert len(calls) == 2 and hung_calls == 2  # the budget of 3 calls, the original one included
    for a in calls:
        assert a.verdict == "failed"
        assert a.evidence["error_type"].endswith("OperationTimeout")
        assert a.evidence["kind"] == "transient"
        assert "did not return within 0.3 s" in a.evidence["message"]
    assert elapsed < 2 * 0.3 + 5  # two deadlines and the store's work


async def test_an_operation_raising_its_own_timeout_error_is_not_called_ours():
    async def own() -> None:
        raise TimeoutError("the upstream said so")

    with pytest.raises(TimeoutError) as caught:
        await run_operation(own, timeout=5)
    assert not isinstance(caught.value, OperationTimeout)


async def test_a_sync_call_past_its_deadline_leaves_the_loop_free_and_its_late_result_is_dropped(release):
    def stuck() -> str:
        release.wait()
        return "late"

    started = time.monotonic()
    with pytest.raises(OperationTimeout, match="'stuck' did not return within 0.2 s"):
        await run_operation(stuck, timeout=0.2)
    assert time.monotonic() - started < 1.5
    release.set()  # the abandoned thread returns now; its answer goes nowhere
    await asyncio.sleep(0.05)
    assert await run_operation(lambda: "next call works", timeout=1) == "next call works"


async def test_refine_calls_the_operation_under_the_same_deadline(release):
    from kgot_errors.testing import answer, by_layer, loopback_model, loopback_openai

    def divide(a: float, b: float) -> float:
        if b == 2:
            release.wait()  # the revised arguments hang the operation
        return a / b

    incident = {"error_type": "ZeroDivisionError", "error_mro": ["ZeroDivisionError", "ArithmeticError", "Exception"],
                "message": "division by zero", "operation": "divide", "arguments": {"a": 1, "b": 0}}
    settings = load_settings(environ={}, api_error_management={"operation_timeout_seconds": 0.3},
                             error_recovery={"max_refinement_iterations": 1, "voting_rounds": 1})
    with loopback_openai(by_layer(refine=[answer('{"a": 1, "b": 2}')])) as server:
        started = time.monotonic()
        result = await asyncio.wait_for(arecover(incident, model=loopback_model(server), operations={"divide": divide},
                                                 checkpointer=None, settings=settings), timeout=20)
    assert time.monotonic() - started < 10
    (fix,) = [a for a in result.attempts if a.layer == "refine"]
    assert fix.verdict == "failed" and "OperationTimeout" in fix.reason and "within 0.3 s" in fix.reason
