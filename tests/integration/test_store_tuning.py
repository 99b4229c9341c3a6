"""How the stores carry many small writes: SQLite on the loop without stalling it, PostgreSQL writes grouped.

The stores change only how writes reach the database (runtime/sqlite_store.py, runtime/postgres_store.py):
these tests hold them to what the stock savers promise (every write durable before the step
returns, listings complete, a failure reaches its caller) and to what the change is for.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid

import psycopg
import pytest

from kgot_errors.errors import CheckpointError
from kgot_errors.graph.recover import ahistory, arecover, arecover_many
from kgot_errors.runtime import checkpoint
from kgot_errors.runtime.checkpoint import open_checkpointer
from kgot_errors.runtime.settings import Settings
from kgot_errors.runtime.sqlite_store import SqliteStore

WRITES_PER_RECOVERY = 1  # a deterministic recovery: its layers are written once, as one checkpoint


def _incident(i: int) -> dict:
    return {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting property name enclosed in double "
            "quotes", "content": f"{{'i': {i}, 'ok': True,}}"}


async def _ticks_while(coro, period_s: float = 0.005) -> tuple[object, int]:
    """Run `coro`, counting how often a timer on the same loop got to run meanwhile."""
    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            await asyncio.sleep(period_s)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        return await coro, ticks
    finally:
        running = False
        await task


async def test_sqlite_waits_for_another_writer_without_stalling_the_loop(tmp_path):
    path = tmp_path / "busy.sqlite"
    async with open_checkpointer(str(path)) as store:
        assert isinstance(store, SqliteStore)
        # warm (first-use imports of the layers): the store writes only when the deterministic layers end, so on
        # a cold process their imports, not the lock, would fill the 0.4 s
        assert (await arecover(_incident(0), checkpointer=store, settings=Settings())).recovered
        holder = sqlite3.connect(path)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock for 0.4 s

        async def release() -> None:
            await asyncio.sleep(0.4)
            holder.rollback()

        started = time.monotonic()
        releaser = asyncio.create_task(release())
        result, ticks = await _ticks_while(arecover(_incident(1), checkpointer=store, settings=Settings()))
        await releaser
        holder.close()
    assert result.recovered and result.value == {"i": 1, "ok": True}
    assert time.monotonic() - started >= 0.4  # it did wait for the lock...
    assert ticks >= 20  # ...while the loop kept serving others (a blocking wait would give ~0)
    h = await ahistory(result.thread_id, checkpointer=str(path), settings=Settings())
    assert h["finished"] and [a.layer for a in h["attempts"]] == [a.layer for a in result.attempts]


async def test_sqlite_gives_up_on_a_lock_held_too_long(tmp_path, monkeypatch):
    path = tmp_path / "held.sqlite"
    monkeypatch.setattr(checkpoint, "SQLITE_TIMEOUT_S", 0.3)
    async with open_checkpointer(str(path)) as store:
        holder = sqlite3.connect(path)
        holder.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(CheckpointError, match="locked by another process"):
                await arecover(_incident(2), checkpointer=store, settings=Settings())
            assert 0.3 <= time.monotonic() - started < 5
        finally:
            holder.rollback()
            holder.close()
        # the lock gone, the same store works again
        assert (await arecover(_incident(3), checkpointer=store, settings=Settings())).recovered


async def test_sqlite_listing_pages_and_never_holds_the_lock_across_an_await(tmp_path, monkeypatch):
    monkeypatch.setattr(SqliteStore, "PAGE", 4)
    path = str(tmp_path / "list.sqlite")
    async with open_checkpointer(path) as store:
        first = await arecover_many([_incident(i) for i in range(13)], checkpointer=store, settings=Settings())
        listed = []

        async def list_while_writing() -> None:
            async for tup in store.alist(None):
                listed.append(tup)
                if len(listed) == 2:  # a write on the same loop, mid-listing: the old saver would deadlock here
                    assert (await arecover(_incident(9), checkpointer=store, settings=Settings())).recovered

        await asyncio.wait_for(list_while_writing(), timeout=30)
        ids = [t.config["configurable"]["checkpoint_id"] for t in listed]
        assert len(ids) == len(set(ids)) and ids == sorted(ids, reverse=True)  # newest first, no repeats
        threads = {t.config["configurable"]["thread_id"] for t in listed}
        assert {r.thread_id for r in first} <= threads
        assert len(ids) >= 13  # a checkpoint for each of the first 13 recoveries: pages of 4
        now = [t.config["configurable"]["checkpoint_id"] async for t in store.alist(None)]  # recovery 9 included
        assert len(now) == len(set(now)) and set(ids) <= set(now)
        assert [t.config["configurable"]["checkpoint_id"] async for t in store.alist(None, limit=6)] == now[:6]


async def test_postgres_groups_the_writes_of_concurrent_recoveries(postgres_url, tmp_path):
    n = 60
    async with open_checkpointer(postgres_url) as store:
        before = store.writer.batches
        results = await arecover_many([_incident(i) for i in range(n)], max_concurrency=30, checkpointer=store,
                                      settings=Settings())
        batches = store.writer.batches - before
    assert all(r.recovered for r in results) and [r.value["i"] for r in results] == list(range(n))
    assert batches < n * WRITES_PER_RECOVERY / 2  # several writes per round trip, measured in bench_scale
    on_sqlite = await arecover(_incident(0), checkpointer=str(tmp_path / "s.sqlite"), settings=Settings())
    layers = [(a.layer, a.verdict) for a in on_sqlite.attempts]
    for r in results[:: n // 6]:  # each read back whole through a new connection
        h = await ahistory(r.thread_id, checkpointer=postgres_url, settings=Settings())
        assert h["finished"] and h["result"] == r and [(a.layer, a.verdict) for a in h["attempts"]] == layers


async def test_postgres_a_failing_write_fails_alone(postgres_url):
    """Writes sent together share one transaction: when one is refused, the others still land."""
    async with open_checkpointer(postgres_url) as store:
        threads = [f"good-{uuid.uuid4().hex}" for _ in range(6)]
        bad = "bad\x00thread"  # PostgreSQL refuses NUL in text

        async def write(thread: str) -> None:
            config = {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": "1"}}
            await store.aput_writes(config, [("note", {"thread": thread})], task_id="t")

        outcomes = await asyncio.gather(*(write(t) for t in [threads[0], bad, *threads[1:]]), return_exceptions=True)
    assert isinstance(outcomes[1], CheckpointError) and isinstance(outcomes[1].__cause__, psycopg.DataError)
    assert [o for i, o in enumerate(outcomes) if i != 1] == [None] * len(threads)
    with psycopg.connect(postgres_url) as conn:
        stored = conn.execute("SELECT count(DISTINCT thread_id) FROM checkpoint_writes WHERE thread_id = ANY(%s)",
                              (threads,)).fetchone()[0]
    assert stored == len(threads)


@pytest.mark.parametrize("bad, error", [("bad\x00", psycopg.DataError),  # refused here: psycopg cannot send NUL
                                        (None, psycopg.IntegrityError)])  # refused by the server: NOT NULL
async def test_postgres_a_batch_is_one_transaction(postgres_url, bad, error):
    """Whichever side refuses a write, nothing of its batch stays behind, and the connection is fit for the next."""
    table = f"kgot_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (v text NOT NULL)")
    try:
        async with open_checkpointer(postgres_url) as store:
            insert = f"INSERT INTO {table} VALUES (%s)"
            with pytest.raises(CheckpointError) as refused:
                await store.writer.submit([(insert, [("first",)]), (insert, [(bad,)])])
            assert isinstance(refused.value.__cause__, error)
            await store.writer.submit([(insert, [("after",)])])
        with psycopg.connect(postgres_url) as conn:
            assert [r[0] for r in conn.execute(f"SELECT v FROM {table}")] == ["after"]
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")


async def test_sqlite_long_listing_hands_the_loop_back(tmp_path, monkeypatch):
    monkeypatch.setattr(SqliteStore, "PAGE", 10)
    async with open_checkpointer(str(tmp_path / "long.sqlite")) as store:
        await arecover_many([_incident(i) for i in range(100)], checkpointer=store, settings=Settings())
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        other = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        listed = [t async for t in store.alist(None)]  # the consumer itself never waits
        other.cancel()
    assert len(listed) >= 100 and turns >= len(listed) // 10 - 1


async def test_postgres_copies_of_a_store_share_its_writer(postgres_url):
    """LangGraph copies a saver to give it another serializer: a write through either is committed on return."""
    import copy

    async with open_checkpointer(postgres_url) as store:
        clone = copy.copy(store)

        async def write_then_look(saver, thread: str) -> int:
            config = {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": "1"}}
            await saver.aput_writes(config, [("note", {"n": 1})], task_id="t")
            async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
                cur = await conn.execute("SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s", (thread,))
                return (await cur.fetchone())[0]

        threads = [f"copy-{uuid.uuid4().hex}" for _ in range(12)]
        seen = await asyncio.gather(*(write_then_look(store if i % 2 else clone, t) for i, t in enumerate(threads)))
    assert seen == [1] * len(threads)
