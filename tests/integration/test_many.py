"""Many incidents at once: bounded concurrency, input order, every result accounted for, on real stores."""

from __future__ import annotations

import asyncio

import pytest

from kgot_errors import arecover_many, recover_many
from kgot_errors.runtime.settings import Settings


def _incidents(n: int) -> list[dict]:
    return [{"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": f"{{'i': {i}, 'ok': True,}}"}
            for i in range(n)]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_thousand_incidents_concurrently_every_result_in_order(store, tmp_path, request):
    target = str(tmp_path / "many.sqlite") if store == "sqlite" else request.getfixturevalue("postgres_url")
    seen: list[int] = []
    results = recover_many(_incidents(1000), max_concurrency=50, checkpointer=target, settings=Settings(),
                           on_result=lambda i, r: seen.append(i))
    assert [r.value for r in results] == [{"i": i, "ok": True} for i in range(1000)]
    assert sorted(seen) == list(range(1000))
    assert len({r.thread_id for r in results}) == 1000


def test_one_bad_incident_does_not_sink_the_others():
    batch = [*_incidents(3), {"message": "no error_type"}, {"error_type": "E", "message": "m", "operation": "nope"}]
    results = recover_many(batch, checkpointer=None, settings=Settings())
    assert [r.outcome for r in results] == ["recovered"] * 3 + ["invalid", "invalid"]
    assert "error_type" in results[3].summary and "unknown operation 'nope'" in results[4].summary


async def test_concurrency_is_bounded():
    in_flight = peak = 0
    gate = asyncio.Event()

    async def slow_op(**_: object) -> dict:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return {"ok": True}

    gate.set()
    batch = [{"error_type": "TimeoutError", "message": "t", "operation": "slow", "arguments": {}}] * 20
    results = await arecover_many(batch, max_concurrency=4, checkpointer=None, settings=Settings(),
                                  operations={"slow": slow_op})
    assert len(results) == 20
    assert peak <= 4


async def test_waiting_incidents_cost_no_task_each():
    """A long batch holds `max_concurrency` workers, not one waiting task per incident (memory stays flat)."""
    tasks: list[int] = []
    results = await arecover_many(_incidents(300), max_concurrency=3, checkpointer="memory", settings=Settings(),
                                  on_result=lambda i, r: tasks.append(len(asyncio.all_tasks())))
    assert [r.value["i"] for r in results] == list(range(300))
    assert max(tasks) < 30  # a task per incident would be over 300 at the first result


def test_max_concurrency_must_be_positive():
    with pytest.raises(ValueError):
        recover_many(_incidents(1), max_concurrency=0, checkpointer=None)
