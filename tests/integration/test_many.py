"""Many incidents at once: bounded concurrency, input order, every result accounted for, on real stores."""

from __future__ import annotations

import asyncio

import pytest

from kgot_errors import arecover_many, recover_many
from kgot_errors.runtime.settings import Settings


SLOW = {"error_type": "TimeoutError", "message": "t", "operation": "slow", "arguments": {}}
"""An incident whose recovery re-runs the registered operation "slow"."""


class _Slow:
    """The operation "slow": takes 50 ms and counts its calls (a stopped batch must make no more)."""

    def __init__(self) -> None:
        self.started = 0

    async def __call__(self, **_: object) -> dict:
        self.started += 1
        await asyncio.sleep(0.05)
        return {"ok": True}


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
    batch = [*_incidents(3), {"message": "m", "status_code": 42}, {"error_type": "E", "message": "m", "operation": "nope"}]
    results = recover_many(batch, checkpointer=None, settings=Settings())
    assert [r.outcome for r in results] == ["recovered"] * 3 + ["invalid", "invalid"]
    assert "status_code" in results[3].summary and "unknown operation 'nope'" in results[4].summary


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


async def test_a_stream_is_read_lazily_and_yields_as_recoveries_finish():
    from kgot_errors import arecover_iter

    pulled = 0

    def incidents():
        nonlocal pulled
        for inc in _incidents(500):
            pulled += 1
            yield inc

    seen: list[int] = []
    async for index, result in arecover_iter(incidents(), max_concurrency=4, checkpointer=None, settings=Settings()):
        if not seen:
            assert pulled <= 4 + 4 + 1  # in flight plus finished-but-unread: not the whole stream
        assert result.value == {"i": index, "ok": True}
        seen.append(index)
    assert sorted(seen) == list(range(500)) and pulled == 500


async def test_stopping_a_stream_early_cancels_the_rest():
    from kgot_errors import arecover_iter

    slow = _Slow()
    batch = (SLOW for _ in range(100))
    stream = arecover_iter(batch, max_concurrency=3, checkpointer=None, settings=Settings(), operations={"slow": slow})
    got = []
    async for item in stream:
        got.append(item)
        if len(got) == 2:
            break
    await stream.aclose()
    await asyncio.sleep(0.2)  # anything still running would go on starting operations
    assert slow.started < 12
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "kgot-recover-workers"]


async def test_an_input_that_raises_ends_the_stream_with_its_error():
    from kgot_errors import arecover_iter

    def incidents():
        yield from _incidents(5)
        raise OSError("the input file went away")

    got = []
    with pytest.raises(OSError, match="went away"):
        async for item in arecover_iter(incidents(), max_concurrency=2, checkpointer=None, settings=Settings()):
            got.append(item)
    assert sorted(i for i, _ in got) == list(range(5))  # what was read still came back


def test_recover_iter_is_the_sync_stream():
    from kgot_errors import recover_iter

    pairs = list(recover_iter(_incidents(30), max_concurrency=5, checkpointer="memory", settings=Settings()))
    assert sorted(i for i, _ in pairs) == list(range(30))
    assert all(r.value == {"i": i, "ok": True} for i, r in pairs)
    first = next(recover_iter(_incidents(30), checkpointer=None, settings=Settings()))  # abandoned mid-stream
    assert first[1].recovered


async def test_a_failing_on_result_stops_the_batch_at_once():
    slow = _Slow()

    def boom(index: int, result: object) -> None:
        raise RuntimeError("consumer failed")

    batch = [SLOW] * 50
    with pytest.raises(RuntimeError, match="consumer failed"):
        await arecover_many(batch, max_concurrency=4, checkpointer=None, settings=Settings(), operations={"slow": slow},
                            on_result=boom)
    so_far = slow.started
    await asyncio.sleep(0.2)
    assert slow.started == so_far < 12  # nothing went on running behind the error


def test_recover_iter_called_from_inside_a_recovery():
    """An async operation calling the sync stream runs on the recovery loop itself: it must still get every result."""
    from kgot_errors import recover, recover_iter

    seen: list[int] = []

    async def nested(**_: object) -> dict:
        seen.extend(i for i, _ in recover_iter(_incidents(3), checkpointer=None, settings=Settings()))
        return {"ok": True}

    result = recover({"error_type": "TimeoutError", "message": "t", "operation": "nested", "arguments": {}},
                     operations={"nested": nested}, checkpointer=None, settings=Settings())
    assert result.recovered and sorted(seen) == [0, 1, 2]
