"""repair_many: the same verdicts as repair_json, in input order, on worker processes, reading its input lazily."""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path

import pytest

from kgot_errors.repair import repair_json, repair_many

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "corpus" / "json_public.jsonl"


def _square_or_die(item, options):
    if item == "die":
        if os.getpid() != options["parent"]:
            os._exit(9)  # a worker killed mid-chunk
        return 40 * 40  # done again here, in the parent
    return item * item


def _texts() -> list[str]:
    return [json.loads(line)["input"] for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_same_results_as_repair_json_in_input_order(workers):
    texts = _texts()[:150]
    got = list(repair_many(texts, workers=workers, chunk_size=7))
    want = [repair_json(t) for t in texts]
    assert [(r.verdict, r.text, r.changes) for r in got] == [(r.verdict, r.text, r.changes) for r in want]


def test_a_pydantic_schema_reaches_the_workers_as_json_schema():
    from pydantic import BaseModel

    class Item(BaseModel):
        id: int

    got = list(repair_many(["{'id': '7',}", '{"id": 1}', "nothing"], Item, workers=2, chunk_size=1))
    assert [r.verdict for r in got] == ["recovered", "recovered", "failed"] and got[0].value == {"id": 7}


def test_an_endless_stream_is_read_only_as_far_as_it_is_consumed():
    taken = itertools.count()

    def endless():
        for i in taken:
            yield '{"n": %d,}' % i

    stream = repair_many(endless(), workers=2, chunk_size=10)
    first = [next(stream) for _ in range(25)]
    assert [r.value for r in first] == [{"n": i} for i in range(25)]
    assert next(taken) <= 25 + 2 * 2 * 10 + 10  # at most two chunks per worker ahead of the consumer
    stream.close()


def test_workers_start_clean_when_this_process_runs_other_threads():
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, daemon=True)
    busy.start()
    try:
        from kgot_errors.repair._batch import _context

        assert _context().get_start_method() == "forkserver"
        assert [r.value for r in repair_many(["[1, 2,]", "{'a': 1}"], workers=2, chunk_size=1)] == [[1, 2], {"a": 1}]
    finally:
        stop.set()
        busy.join()


@pytest.mark.parametrize("bad", [{"workers": 0}, {"chunk_size": 0}])
def test_nonsense_counts_are_refused(bad):
    with pytest.raises(ValueError):
        list(repair_many(["{}"], **bad))


def test_a_worker_that_dies_costs_speed_not_results(caplog):
    from kgot_errors.repair._batch import map_in_order

    items = [*range(40), "die", *range(41, 200)]
    got = list(map_in_order(_square_or_die, items, {"parent": os.getpid()}, workers=2, chunk_size=8))
    assert got == [i * i for i in range(200)]
    assert "a worker process died" in caplog.text


def test_a_pool_that_broke_before_a_chunk_went_out_keeps_that_chunk(caplog):
    """The pool breaks while the source is still being read: the next submit is refused, and its chunk is done here."""
    import time

    from kgot_errors.repair._batch import map_in_order

    def items():
        yield "die"
        time.sleep(1.5)  # the worker holding "die" is dead and the pool broken by the time the next chunk is read
        yield from range(41, 60)

    got = list(map_in_order(_square_or_die, items(), {"parent": os.getpid()}, workers=2, chunk_size=1))
    assert got == [40 * 40, *(i * i for i in range(41, 60))]
    assert "a worker process died" in caplog.text


def _mark_started(options):
    Path(options["warm_dir"], str(os.getpid())).write_text("warm")


def test_workers_start_and_warm_up_before_any_item_is_given(tmp_path):
    """The CLI starts its workers before it reads its input: they load the engine while it reads."""
    import time

    from kgot_errors.repair._batch import Workers

    with Workers(_square_or_die, {"parent": os.getpid(), "warm_dir": str(tmp_path)}, 2, warm=_mark_started) as workers:
        deadline = time.monotonic() + 30
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = {int(p.name) for p in tmp_path.iterdir()}
        assert len(started) == 2 and os.getpid() not in started  # two processes, warmed, no item given yet
        assert list(workers.map(range(30), chunk_size=4)) == [i * i for i in range(30)]
