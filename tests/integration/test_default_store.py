"""The default store stays open for the process, closes at exit, and a deterministic incident costs one small write."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kgot_errors import arecover, history, recover, resume
from kgot_errors.runtime import checkpoint
from kgot_errors.runtime.settings import Settings, load_settings
from kgot_errors.testing.typical import ANSWER, SCHEMA, incident_size, typical_error

CHILD = Path(__file__).with_name("store_child.py")


def _typical(**options):
    return recover(typical_error(), content=ANSWER, schema=SCHEMA, **options)


def _counting_opens(monkeypatch) -> list[Path]:
    opened: list[Path] = []
    real = checkpoint._sqlite_saver

    async def counted(path):
        opened.append(path)
        return await real(path)

    monkeypatch.setattr(checkpoint, "_sqlite_saver", counted)
    return opened


def test_the_default_store_is_opened_once_for_many_recoveries_on_every_loop(data_dir, monkeypatch):
    opened = _counting_opens(monkeypatch)
    results = [_typical() for _ in range(5)]

    async def on_its_own_loop():
        return await arecover(typical_error(), content=ANSWER, schema=SCHEMA)

    results += [asyncio.run(on_its_own_loop()) for _ in range(2)]  # two more loops, each closed after
    results.append(_typical())  # and the sync API again, after those loops have gone
    assert all(r.recovered for r in results) and len({r.thread_id for r in results}) == 8
    assert [h["finished"] for h in map(history, [r.thread_id for r in results])] == [True] * 8
    assert opened == [data_dir / "recoveries.sqlite"]
    from kgot_errors import resume_unfinished, unfinished

    assert unfinished() == [] and resume_unfinished() == {}  # the operator's calls use the same open store
    assert opened == [data_dir / "recoveries.sqlite"]


def test_runs_share_one_graph_copy_per_store_and_model_scope(data_dir):
    """The compiled graph is copied once per (store, model scope), not per recovery."""
    import importlib

    from kgot_errors.runtime.context import RecoveryContext

    recover_module = importlib.import_module("kgot_errors.graph.recover")
    settings = load_settings()
    ctx = RecoveryContext(settings=settings, model=None, sandbox=None, operations={})
    first = recover_module._graph(None, ctx)
    assert recover_module._graph(None, ctx) is first
    off = load_settings(environ={"KGOT_SYNTAX_ERROR_MANAGEMENT__CACHE_CORRECTIONS": "false"})
    other = RecoveryContext(settings=off, model=None, sandbox=None, operations={})
    assert recover_module._graph(None, other) is not first
    assert recover_module._graph(None, other).cache.enabled is False
    from langgraph.checkpoint.memory import InMemorySaver

    store = InMemorySaver()
    assert recover_module._graph(store, ctx) is not first and recover_module._graph(store, ctx).checkpointer is store


def test_a_checkpointer_passed_in_is_still_opened_per_call(tmp_path, monkeypatch):
    opened = _counting_opens(monkeypatch)
    path = str(tmp_path / "mine.sqlite")
    for _ in range(3):
        _typical(checkpointer=path, settings=Settings())
    assert len(opened) == 3
    assert not Path(path + "-wal").exists()  # closed after each call, its WAL checkpointed


def test_the_default_store_is_closed_at_exit_leaving_no_wal(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.run([sys.executable, str(CHILD), "recover", "3"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "KGOT_DATA_DIR": str(data)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["wal_while_open"]  # it was open (in WAL mode) up to the exit
    store = data / "recoveries.sqlite"
    assert store.exists() and not Path(f"{store}-wal").exists() and not Path(f"{store}-shm").exists()
    conn = sqlite3.connect(store)  # everything is in the database file itself
    try:
        stored = {row[0] for row in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    finally:
        conn.close()
    assert stored == set(report["threads"])


def _bytes_on_sqlite(path: Path, thread_id: str) -> tuple[int, int, int]:
    conn = sqlite3.connect(path)
    try:
        rows, size = conn.execute("SELECT count(*), sum(length(checkpoint) + length(metadata)) FROM checkpoints "
                                  "WHERE thread_id = ?", (thread_id,)).fetchone()
        writes, written = conn.execute("SELECT count(*), coalesce(sum(length(value)), 0) FROM writes "
                                       "WHERE thread_id = ?", (thread_id,)).fetchone()
    finally:
        conn.close()
    return rows, writes, size + written


def _same_result(a, b) -> None:
    """The same outcome, value and attempt trail (durations aside)."""
    assert (a.value, a.text, a.changes, a.outcome, a.summary, a.recovered_by) == \
        (b.value, b.text, b.changes, b.outcome, b.summary, b.recovered_by)
    assert [x.model_dump(exclude={"duration_s"}) for x in a.attempts] == \
        [x.model_dump(exclude={"duration_s"}) for x in b.attempts]


def test_a_deterministic_incident_writes_one_checkpoint_of_at_most_twice_its_size_on_sqlite(data_dir):
    result = _typical()
    reference = _typical(checkpointer=None)
    _same_result(result, reference)  # the store changes nothing of what the caller gets
    rows, writes, written = _bytes_on_sqlite(data_dir / "recoveries.sqlite", result.thread_id)
    assert (rows, writes) == (1, 0)
    assert written <= 2 * incident_size(typical_error()), written
    h = history(result.thread_id)  # read back whole: the result with its attempts, value and the incident
    assert h["finished"] and h["next"] == [] and h["incident"]["content"] == ANSWER
    assert h["result"] == result and h["attempts"] == result.attempts
    assert resume(result.thread_id) == result  # finished: reported, not re-run


def test_a_deterministic_incident_writes_at_most_twice_its_size_on_postgres(postgres_url):
    result = _typical(checkpointer=postgres_url, settings=Settings())

    async def written() -> tuple[int, int, int]:
        from psycopg import AsyncConnection

        async with await AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = %(t)s), "
                "(SELECT count(*) FROM checkpoint_writes WHERE thread_id = %(t)s), "
                "(SELECT sum(octet_length(checkpoint::text) + octet_length(metadata::text)) FROM checkpoints "
                " WHERE thread_id = %(t)s) + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_blobs "
                " WHERE thread_id = %(t)s) + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_writes "
                " WHERE thread_id = %(t)s)", {"t": result.thread_id})
            return await cur.fetchone()

    rows, writes, size = asyncio.run(written())
    assert (rows, writes) == (1, 0)
    assert size <= 2 * incident_size(typical_error()), size
    assert history(result.thread_id, checkpointer=postgres_url, settings=Settings())["result"] == result
    _same_result(result, _typical(checkpointer=None))


class _Legacy:
    """The store as earlier versions wrote it: LangGraph's put (every copy inline) and its long versions."""

    @staticmethod
    def make(path: Path):
        from langgraph.checkpoint.sqlite import SqliteSaver

        from kgot_errors.runtime.sqlite_store import SqliteStore

        class Legacy(SqliteStore):
            put = SqliteSaver.put
            get_next_version = SqliteSaver.get_next_version

        return Legacy(sqlite3.connect(path, check_same_thread=False))


def test_threads_stored_before_the_compact_form_still_read_and_resume(tmp_path):
    from kgot_errors.graph.builder import build_graph
    from kgot_errors.runtime.context import RecoveryContext
    from kgot_errors.state import Incident

    path = tmp_path / "old.sqlite"
    saver = _Legacy.make(path)
    incident = Incident.from_exception(typical_error(), content=ANSWER, output_schema=SCHEMA).to_data()
    graph = build_graph(saver)

    async def write_old() -> None:
        saver.setup()
        for tid, stop in (("finished", []), ("halfway", ["parser_fix"])):
            await graph.ainvoke({"incident": incident}, {"configurable": {"thread_id": tid}},
                                context=RecoveryContext(), interrupt_before=stop, durability="sync")

    asyncio.run(write_old())
    saver.conn.close()
    reference = _typical(checkpointer=None)
    _same_result(history("finished", checkpointer=str(path), settings=Settings())["result"], reference)
    resumed = resume("halfway", checkpointer=str(path), settings=Settings())  # on from an old checkpoint
    _same_result(resumed, reference)
    assert history("halfway", checkpointer=str(path), settings=Settings())["result"] == resumed


def test_a_default_postgres_store_is_kept_per_loop_and_closed_with_its_loop(postgres_url, monkeypatch):
    monkeypatch.setenv("KGOT_CHECKPOINT_URL", postgres_url)
    opened, settings = checkpoint.opened_count, load_settings()
    pools = []

    async def batch() -> list:
        results = [await arecover(typical_error(), content=ANSWER, schema=SCHEMA, settings=settings)
                   for _ in range(3)]
        loop = id(asyncio.get_running_loop())
        pools.extend(e.saver.conn for e in checkpoint._shared.values() if e.key[-1] == loop)
        return results

    for round_ in range(2):
        assert all(r.recovered for r in asyncio.run(batch()))
        assert len(pools) == round_ + 1 and pools[-1].closed  # the loop's end closed its pool
    assert checkpoint.opened_count - opened == 2  # once per loop, not per call
    sync = [_typical(settings=settings)]  # the sync API's own loop: opened at most once, then kept open
    after_first = checkpoint.opened_count
    sync += [_typical(settings=settings) for _ in range(2)]
    assert all(r.recovered for r in sync) and history(sync[0].thread_id, settings=settings)["finished"]
    assert checkpoint.opened_count == after_first <= opened + 3


def test_a_recovery_killed_in_a_durable_layer_resumes_from_the_store(tmp_path):
    """SIGKILL in the middle of the operation call: the store holds the state from before backoff on."""
    data, thread = tmp_path / "data", f"kill-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "KGOT_DATA_DIR": str(data)}
    proc = subprocess.Popen([sys.executable, str(CHILD), "hang", thread], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "calling"  # the operation is running, in backoff
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    settings = load_settings(environ={"KGOT_DATA_DIR": str(data)})
    store = str(data / "recoveries.sqlite")
    before = history(thread, checkpointer=store, settings=settings)
    assert not before["finished"] and before["next"] == ["backoff"] and before["kind"] == "transient"
    calls: list[int] = []

    def fetch(i: int) -> dict:
        calls.append(i)
        return {"i": i}

    result = resume(thread, checkpointer=store, settings=settings, operations={"fetch": fetch})
    assert result.recovered and result.value == {"i": 7} and calls == [7]
    assert history(thread, checkpointer=store, settings=settings)["finished"]


@pytest.mark.parametrize("layer", ["llm_fix", "backoff"])
def test_recover_writes_the_state_before_every_durable_layer(tmp_path, layer):
    """Up to the first layer that must not be lost or repeated nothing is written; from there every step is."""
    path = tmp_path / "s.sqlite"
    if layer == "llm_fix":
        result = recover({"error_type": "json.decoder.JSONDecodeError", "message": "m",
                          "content": "I am sorry, I cannot answer that."}, checkpointer=str(path), settings=Settings())
    else:
        tries: list[int] = []

        def flaky() -> int:
            tries.append(1)
            if len(tries) < 3:
                raise TimeoutError("t")
            return 1

        async def no_wait(_: float) -> None:
            return None

        from kgot_errors.runtime.context import RecoveryContext

        result = recover({"error_type": "TimeoutError", "message": "t", "operation": "flaky"},
                         checkpointer=str(path), runtime_context=RecoveryContext(
                             settings=Settings(), operations={"flaky": flaky}, sleep=no_wait))
    conn = sqlite3.connect(path)
    try:
        steps = [json.loads(m)["step"] for (m,) in conn.execute(
            "SELECT metadata FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_id", (result.thread_id,))]
    finally:
        conn.close()
    durable = [a for a in result.attempts if a.layer == layer]
    assert durable and len(steps) >= len(durable) + 1  # one before the layer, one after each of its steps
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


def test_a_default_postgres_store_whose_task_was_cancelled_is_opened_again(postgres_url, monkeypatch):
    monkeypatch.setenv("KGOT_CHECKPOINT_URL", postgres_url)
    settings = load_settings()

    async def main() -> tuple[bool, bool, int]:
        first = await arecover(typical_error(), content=ANSWER, schema=SCHEMA, settings=settings)
        opened = checkpoint.opened_count
        for task in asyncio.all_tasks():  # what a program shutting its own loop down may do
            if task.get_name() == "kgot-checkpoint-store":
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        second = await arecover(typical_error(), content=ANSWER, schema=SCHEMA, settings=settings)
        return first.recovered, second.recovered, checkpoint.opened_count - opened

    assert asyncio.run(main()) == (True, True, 1)


def test_a_batch_writes_one_checkpoint_per_settled_incident(tmp_path):
    from kgot_errors import recover_many

    path = tmp_path / "batch.sqlite"
    results = recover_many([{"error_type": "json.decoder.JSONDecodeError", "message": "m",
                             "content": f"{{'i': {i}, 'ok': True,}}"} for i in range(6)], checkpointer=str(path),
                           settings=Settings())
    assert [r.value for r in results] == [{"i": i, "ok": True} for i in range(6)]
    assert [_bytes_on_sqlite(path, r.thread_id)[:2] for r in results] == [(1, 0)] * 6


def test_held_writes_keep_a_failed_runs_finished_steps_and_write_at_the_first_loud_step():
    """HeldWrites on a tiny graph: quiet steps held, a failure flushes them, a loud step is written before it runs."""
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    from kgot_errors.runtime.checkpoint import HeldWrites

    class S(TypedDict, total=False):
        n: int

    def build(second):
        g = StateGraph(S)
        g.add_node("a", lambda s: {"n": s["n"] + 1})
        g.add_node("b", second)
        g.add_edge(START, "a")
        g.add_edge("a", "b")
        g.add_edge("b", END)
        return g

    def boom(_):
        raise RuntimeError("a layer broke")

    async def run(second, quiet, thread):
        store = InMemorySaver()
        held = HeldWrites(store, frozenset(quiet))
        try:
            await build(second).compile(checkpointer=held).ainvoke({"n": 1}, {"configurable": {"thread_id": thread}},
                                                                  durability="sync")
        except RuntimeError:
            await held.flush()
        return [t.checkpoint["channel_values"] for t in store.list(None)], store.writes

    finished, writes = asyncio.run(run(lambda s: {"n": s["n"] * 10}, {"a", "b"}, "t1"))
    assert finished == [{"n": 20}] and not writes  # all quiet: the end state, written once
    failed, _ = asyncio.run(run(boom, {"a", "b"}, "t2"))
    assert failed == [{"n": 2, "branch:to:b": None}]  # a's step kept, b to run again on resume
    loud, _ = asyncio.run(run(lambda s: {"n": s["n"] * 10}, {"a"}, "t3"))
    assert loud[-1] == {"n": 2, "branch:to:b": None} and loud[0] == {"n": 20}  # written before b, and after it
