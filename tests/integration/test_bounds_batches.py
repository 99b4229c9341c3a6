"""Batches an operator can account for: thread ids known as incidents start, on every result, and a
resume-all after a crash that leaves no incident unaccounted for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver

from kgot_errors import arecover_many, history
from kgot_errors.errors import CheckpointError
from kgot_errors import resume_unfinished, unfinished
from kgot_errors.runtime.settings import Settings

WORKER = Path(__file__).with_name("batch_crash_worker.py")
GOOD = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": "{'a': 1,}"}


class FailingSaver(InMemorySaver):
    """An in-memory store whose writes fail with a CheckpointError after `ok` of them (a store gone bad mid-run)."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok = ok

    async def aput(self, *args, **kwargs):
        self.ok -= 1
        if self.ok < 0:
            raise CheckpointError("scripted store failure", target="memory")
        return await super().aput(*args, **kwargs)


async def test_thread_ids_are_reported_as_incidents_start_and_carried_by_every_result(tmp_path):
    started: list[tuple[int, str]] = []
    ended: list[int] = []
    batch = [GOOD, {"message": "m", "status_code": 42}, GOOD]

    def on_start(index: int, tid: str | None) -> None:
        assert index not in ended  # before its result
        started.append((index, tid))

    results = await arecover_many(batch, checkpointer=str(tmp_path / "s.sqlite"), settings=Settings(),
                                  on_start=on_start, on_result=lambda i, r: ended.append(i))
    ids = dict(started)
    assert sorted(ids) == [0, 2]  # the malformed incident never started a thread
    assert [r.thread_id for r in results] == [ids[0], None, ids[2]]
    assert results[1].outcome == "invalid"


async def test_a_result_the_store_failed_carries_the_thread_it_started():
    started: list[tuple[int, str]] = []
    # its one write fails (the deterministic layers that settle it are written once, when they end)
    results = await arecover_many([GOOD], checkpointer=FailingSaver(ok=0), settings=Settings(),
                                  on_start=lambda i, tid: started.append((i, tid)))
    (result,) = results
    assert result.outcome == "error" and "scripted store failure" in result.summary
    assert result.thread_id is not None and result.thread_id == started[0][1]


def test_a_batch_killed_mid_way_is_accounted_for_and_resumed_by_resume_unfinished(tmp_path):
    store, events, n = tmp_path / "batch.sqlite", tmp_path / "events.log", 16
    proc = subprocess.Popen([sys.executable, str(WORKER), str(store), str(events), str(n)],
                            env={**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while sum(line.startswith("done") for line in _lines(events)) < 6:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    lines = [line.split() for line in _lines(events)]
    starts = {int(i): tid for kind, i, tid, *_ in lines if kind == "start"}
    done = {int(i): tid for kind, i, tid, *_ in lines if kind == "done"}
    assert all(starts[i] == tid for i, tid in done.items())  # each result carries the id it started with
    cut_off = {tid for i, tid in starts.items() if i not in done}
    assert cut_off and n // 2 in starts and n // 2 not in done

    assert set(unfinished(checkpointer=str(store), settings=Settings())) <= cut_off

    def step(i: int) -> dict:
        return {"i": i}

    resumed = resume_unfinished(checkpointer=str(store), settings=Settings(), operations={"step": step})
    # a thread killed before its first checkpoint has nothing to resume: it is still its incident's to redo;
    # one that finished just before the kill (its result not yet handed over) is finished in the store
    stored = {tid for tid in cut_off if _exists(store, tid)}
    assert set(resumed) <= stored
    assert all(history(tid, checkpointer=str(store), settings=Settings())["finished"] for tid in stored - set(resumed))
    assert all(r.recovered and r.thread_id == tid for tid, r in resumed.items())
    by_thread = {tid: i for i, tid in starts.items()}
    assert all(r.value == {"i": by_thread[tid]} for tid, r in resumed.items())
    # every incident accounted for: finished before the kill, resumed now, or never started (redo those)
    never_started = set(range(n)) - set(starts)
    redo = never_started | {by_thread[tid] for tid in cut_off - stored}
    assert set(done) | {by_thread[tid] for tid in stored} | redo == set(range(n))
    assert unfinished(checkpointer=str(store), settings=Settings()) == []
    assert history(next(iter(resumed)), checkpointer=str(store), settings=Settings())["finished"]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _exists(store: Path, tid: str) -> bool:
    import sqlite3

    with sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1", (tid,)).fetchone() is not None

