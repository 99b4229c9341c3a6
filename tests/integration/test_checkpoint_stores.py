"""Checkpoint stores for real: SQLite files and PostgreSQL, round-trips across connections, clear errors."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid

import pytest

from kgot_errors import history, recover, resume
from kgot_errors.errors import CheckpointError
from kgot_errors.runtime import checkpoint
from kgot_errors.runtime.checkpoint import open_checkpointer
from kgot_errors.runtime.settings import Settings

BROKEN = '{"name": "kgot", "tags": ["a", "b",], "score": NaN}'


def _incident() -> dict:
    return {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value", "content": BROKEN}


def test_postgres_store_round_trips_a_recovery_across_connections(postgres_url):
    result = recover(_incident(), checkpointer=postgres_url, settings=Settings())
    assert result.recovered and result.value == {"name": "kgot", "tags": ["a", "b"], "score": None}
    h = history(result.thread_id, checkpointer=postgres_url, settings=Settings())  # a new connection
    assert h["finished"] and h["result"] == result
    assert resume(result.thread_id, checkpointer=postgres_url, settings=Settings()) == result


def test_postgres_and_sqlite_record_the_same_attempts(postgres_url, tmp_path):
    on_pg = recover(_incident(), checkpointer=postgres_url, settings=Settings())
    on_sqlite = recover(_incident(), checkpointer=str(tmp_path / "s.sqlite"), settings=Settings())
    strip = lambda r: [(a.layer, a.verdict, a.reason) for a in r.attempts]  # noqa: E731
    assert strip(on_pg) == strip(on_sqlite)


def test_unreachable_postgres_names_the_setting_and_hides_the_password():
    url = "postgresql://kgot:s3cret@127.0.0.1:1/nothing"
    with pytest.raises(CheckpointError) as info:
        recover(_incident(), checkpointer=url, settings=Settings())
    assert "KGOT_CHECKPOINT_URL" in str(info.value) and "s3cret" not in str(info.value)
    assert info.value.target == "postgresql://kgot:***@127.0.0.1:1/nothing"


def test_sqlite_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are my notes, not a database " * 100)
    with pytest.raises(CheckpointError, match="not a SQLite database"):
        recover(_incident(), checkpointer=str(path), settings=Settings())
    assert path.read_text().startswith("these are my notes")  # nothing lost


def test_locked_sqlite_store_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "SQLITE_TIMEOUT_S", 0.2)
    path = tmp_path / "locked.sqlite"
    recover(_incident(), checkpointer=str(path), settings=Settings())
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CheckpointError, match="locked"):
            recover(_incident(), checkpointer=str(path), settings=Settings())
    finally:
        holder.rollback()
        holder.close()


def test_sqlite_store_in_a_directory_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot create the checkpoint directory"):
        recover(_incident(), checkpointer=str(blocker / "sub" / "r.sqlite"), settings=Settings())


def test_sqlite_uses_wal_so_readers_do_not_block_the_writer(tmp_path):
    path = tmp_path / "wal.sqlite"

    async def mode() -> str:
        async with open_checkpointer(str(path)):
            pass
        return sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]

    assert asyncio.run(mode()) == "wal"


def test_strict_msgpack_checkpoint_holds_only_plain_data(tmp_path):
    """Under LANGGRAPH_STRICT_MSGPACK a custom class would not load back; everything must be JSON data."""
    path = str(tmp_path / "strict.sqlite")
    tid = uuid.uuid4().hex
    recover(_incident(), checkpointer=path, thread_id=tid, settings=Settings())
    h = history(tid, checkpointer=path, settings=Settings())
    assert json.loads(json.dumps(h["incident"])) == h["incident"]
    assert h["result"].value == {"name": "kgot", "tags": ["a", "b"], "score": None}
