"""Store lifecycle from the command line, on real SQLite and PostgreSQL stores: list with filters, prune, vacuum."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "kgot_errors.cli"]
DECODE = "json.decoder.JSONDecodeError"


def _cli(*args: str, env: dict, timeout: float = 120):
    out = subprocess.run([*EXE, *args], capture_output=True, timeout=timeout, env=env)
    return out


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KGOT_", "OPENAI_", "LANGSMITH_"))}
    e["KGOT_DATA_DIR"] = str(tmp_path / "data")
    return e


def _batch(path: Path, contents: list[str]) -> str:
    path.write_text("".join(json.dumps({"error_type": DECODE, "message": "m", "content": c}) + "\n" for c in contents))
    return str(path)


def _fill(store: str, env: dict, tmp_path: Path, name: str, contents: list[str]) -> list[dict]:
    out = _cli("repair", "--jsonl", _batch(tmp_path / f"{name}.jsonl", contents), "--checkpoint", store, env=env)
    assert out.returncode in (0, 1), out.stderr.decode()
    return [json.loads(x) for x in out.stdout.decode().splitlines()]


def _listed(store: str, env: dict, *filters: str) -> list[dict]:
    out = _cli("list", "--checkpoint", store, "--json", *filters, env=env)
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout)


def _lifecycle(store: str, env: dict, tmp_path: Path) -> None:
    old = _fill(store, env, tmp_path, "old", ["{'a': 1,}", "no JSON at all", "[1, 2,"])
    # a cut-off just after the old threads: a CLI's start-up (seconds, under load) moves it later, never earlier
    gap = time.time() + 0.5
    time.sleep(6)
    new = _fill(store, env, tmp_path, "new", ["{'b': 2,}"])

    def age() -> str:
        return f"{time.time() - gap:.3f}s"

    ids = {r["thread_id"] for r in old + new}

    everything = _listed(store, env)
    assert {t["thread_id"] for t in everything} == ids
    assert everything[0]["thread_id"] == new[0]["thread_id"]  # newest first
    failed = _listed(store, env, "--status", "not_recovered")
    assert [t["thread_id"] for t in failed] == [old[1]["thread_id"]]
    assert {t["thread_id"] for t in _listed(store, env, "--since", age())} == {new[0]["thread_id"]}
    assert {t["thread_id"] for t in _listed(store, env, "--layer", "parser_fix", "--older-than", age())} \
        == {r["thread_id"] for r in old}
    assert [t["thread_id"] for t in _listed(store, env, "--layer", "llm_fix")] == [old[1]["thread_id"]]
    assert _listed(store, env, "--kind", "transient") == [] and _listed(store, env, "--unfinished") == []
    row = everything[0]
    assert row["status"] == "recovered" and row["kind"] == "syntax" and row["recovered_by"] == "parser_fix"
    assert row["started_at"] <= row["updated_at"] and row["updated_at"].startswith(time.strftime("%Y-", time.gmtime()))
    text = _cli("list", "--checkpoint", store, env=env).stdout.decode().splitlines()
    assert len(text) == 4 and text[0].startswith(new[0]["thread_id"])

    dry = json.loads(_cli("prune", "--checkpoint", store, "--older-than", age(), "--dry-run", "--json", env=env).stdout)
    assert sorted(dry["deleted"]) == sorted(r["thread_id"] for r in old) and dry["dry_run"]
    assert len(_listed(store, env)) == 4
    kept = _cli("prune", "--checkpoint", store, "--older-than", age(), "--keep-failed", env=env)
    assert kept.returncode == 0 and "deleted 2 thread(s), kept 2" in kept.stderr.decode()
    assert {t["thread_id"] for t in _listed(store, env)} == {old[1]["thread_id"], new[0]["thread_id"]}
    history = _cli("history", old[0]["thread_id"], "--checkpoint", store, env=env)
    assert history.returncode == 2 and "no recovery thread" in history.stderr.decode()
    assert _cli("history", new[0]["thread_id"], "--checkpoint", store, env=env).returncode == 0
    everything_old = json.loads(_cli("prune", "--checkpoint", store, "--older-than", "0s", "--vacuum", "--json",
                                     env=env).stdout)
    assert len(everything_old["deleted"]) == 2 and everything_old["vacuumed"] and _listed(store, env) == []


def test_list_and_prune_a_sqlite_store(env, tmp_path):
    _lifecycle(str(tmp_path / "store.sqlite"), env, tmp_path)


def test_prune_vacuum_gives_sqlite_space_back(env, tmp_path):
    store = str(tmp_path / "big.sqlite")
    _fill(store, env, tmp_path, "big", ["{'pad': '%s', 'i': %d,}" % ("x" * 20_000, i) for i in range(60)])
    before = sum(p.stat().st_size for p in (Path(store), Path(store + "-wal")) if p.exists())
    report = json.loads(_cli("prune", "--checkpoint", store, "--older-than", "0s", "--vacuum", "--json",
                             env=env).stdout)
    assert len(report["deleted"]) == 60 and report["bytes_before"] == before
    assert report["bytes_after"] < before / 10, report


@pytest.fixture
def postgres_db(postgres_url):
    """A database of its own (prune deletes every old thread of a store: never a shared one)."""
    import psycopg

    name = f"kgot_retention_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, _ = postgres_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_list_and_prune_a_postgresql_store(env, tmp_path, postgres_db):
    _lifecycle(postgres_db, env, tmp_path)
    import psycopg

    with psycopg.connect(postgres_db) as conn:
        left = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")]
    assert left == [0, 0, 0]
