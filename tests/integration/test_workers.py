"""Four worker processes share one PostgreSQL store; every other process sees, resumes and counts their threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from kgot_errors import Layer, history, pending, resume
from kgot_errors.observability.statistics import get_statistics

psycopg = pytest.importorskip("psycopg")

CHILD = Path(__file__).with_name("worker_child.py")
WORKERS = {"A": (24, 1), "B": (20, 5), "C": (20, 5), "D": (20, 5)}  # name -> (recoverable, prose); A escalates
TIMEOUT_S = 90


@pytest.fixture
def fresh_db(postgres_url):
    """A new, empty database on the fixture's server, so counts over the whole store are exact."""
    name = f"kgot_workers_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(postgres_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_")) and k != "KGOT_ESCALATE_TO_HUMAN"}
    env["KGOT_DATA_DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


def _run_workers(url: str, tmp_path: Path) -> dict[str, list[dict]]:
    """Start the four workers at once, wait for all, and return each one's [{thread_id, outcome}]."""
    procs = {}
    for name, (ok, prose) in WORKERS.items():
        extra = {"KGOT_ESCALATE_TO_HUMAN": "true"} if name == "A" else {}
        procs[name] = subprocess.Popen([sys.executable, str(CHILD), url, name, str(ok), str(prose)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=_env(tmp_path, **extra))
    threads: dict[str, list[dict]] = {}
    failed = []
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=TIMEOUT_S)
        if proc.returncode != 0:
            failed.append(f"worker {name} failed:\n{err[-2000:]}")
            continue
        threads[name] = json.loads(out.strip().splitlines()[-1])
        assert len(threads[name]) == sum(WORKERS[name])
    assert not failed, "\n".join(failed)
    return threads


def test_four_workers_one_postgres_store(fresh_db, tmp_path, monkeypatch):
    url = fresh_db
    monkeypatch.setenv("KGOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("KGOT_ESCALATE_TO_HUMAN", raising=False)

    threads = _run_workers(url, tmp_path)
    everyone = [t for ts in threads.values() for t in ts]
    assert len({t["thread_id"] for t in everyone}) == 100
    paused = [t["thread_id"] for t in threads["A"] if t["outcome"] == "escalated"]
    assert len(paused) == 1 and not any(t["outcome"] == "escalated" for n in "BCD" for t in threads[n])

    # This process never ran a recovery: it reads all 100 threads from the shared store.
    for t in everyone:
        h = history(t["thread_id"], checkpointer=url)
        if t["thread_id"] in paused:
            assert h["next"] == ["human"] and not h["finished"]
            continue
        assert h["finished"] and h["result"] is not None and h["result"].outcome == t["outcome"]
        assert h["result"].recovered == (t["outcome"] == "recovered")

    before = get_statistics(checkpointer=url)
    assert (before.incidents, before.finished, before.paused) == (100, 99, 1)

    assert [p["thread_id"] for p in pending(checkpointer=url)] == paused
    done = resume(paused[0], value={"answer": 42}, checkpointer=url)
    assert done.recovered and done.value == {"answer": 42} and done.recovered_by is Layer.HUMAN
    assert pending(checkpointer=url) == []

    # A third process sees the resumed thread finished.
    code = ("import json, sys; from kgot_errors import history; h = history(sys.argv[1], checkpointer=sys.argv[2]); "
            "print(json.dumps({'finished': h['finished'], 'recovered': h['result'].recovered, "
            "'by': str(h['result'].recovered_by)}))")
    third = subprocess.run([sys.executable, "-c", code, paused[0], url], capture_output=True, text=True,
                           timeout=TIMEOUT_S, env=_env(tmp_path), check=False)
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads(third.stdout.strip().splitlines()[-1]) == {"finished": True, "recovered": True, "by": "human"}

    stats = get_statistics(checkpointer=url)
    recovered = sum(ok for ok, _ in WORKERS.values()) + 1  # the person's fix
    assert (stats.incidents, stats.finished, stats.paused, stats.open) == (100, 100, 0, 0)
    assert (stats.recovered, stats.not_recovered) == (recovered, 100 - recovered)
    assert stats.recovered_by.get("parser_fix") == recovered - 1 and stats.recovered_by.get("human") == 1


def test_four_workers_open_a_fresh_postgres_store_at_once(fresh_db, tmp_path, monkeypatch):
    monkeypatch.delenv("KGOT_ESCALATE_TO_HUMAN", raising=False)
    threads = _run_workers(fresh_db, tmp_path)
    assert sum(len(t) for t in threads.values()) == 100
