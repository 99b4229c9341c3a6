"""PostgreSQL down or frozen: store calls end at their deadlines, a breaker makes the rest fail at once, and
every incident of a batch ends as a typed result.

These tests stop and SIGSTOP a throwaway server of their own (started with .ci/postgres.sh), never
the shared one. They need root and PostgreSQL installed; elsewhere they skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kgot_errors import arecover, arecover_many
from kgot_errors.errors import CheckpointError
from kgot_errors.runtime.checkpoint import open_checkpointer
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import CheckpointSettings, Settings, load_settings

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "postgres.sh"
INCIDENT = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": "{'a': 1, 'ok': True,}"}


class OwnPostgres:
    """A PostgreSQL this module started: stop, start, freeze (SIGSTOP every process of it) and thaw."""

    def __init__(self, state: Path, url: str) -> None:
        self.state, self.url = state, url
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]).parent
        self.frozen: list[int] = []

    def _ctl(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.state / "data"),
                        *args], check=True, capture_output=True, timeout=90)

    def stop(self) -> None:
        self._ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        port = (self.state / "port").read_text().strip()
        self._ctl("-l", str(self.state / "server.log"), "-w", "-t", "60", "-o",
                  f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={self.state} "
                  "-c fsync=off -c max_connections=200", "start")

    def processes(self) -> list[int]:
        main = int((self.state / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True).stdout.split()
        return [main, *map(int, children)]

    def freeze(self) -> None:
        self.frozen = self.processes()
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen = []


@pytest.fixture(scope="module")
def own_postgres():
    if os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("pgrep") \
            or not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        pytest.skip("needs root, runuser, pgrep and PostgreSQL installed")
    state = Path(tempfile.mkdtemp(prefix="kgot-pg-bounds-"))
    state.chmod(0o755)
    out = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        pytest.skip(f"cannot start a PostgreSQL of our own: {out.stderr.strip()[-300:]}")
    server = OwnPostgres(state, out.stdout.strip().split("=", 1)[1])
    try:
        yield server
    finally:
        server.thaw()
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=90)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def running(own_postgres):
    """The server, up (and thawed) before and after the test."""
    own_postgres.thaw()
    if not (own_postgres.state / "data" / "postmaster.pid").exists():
        own_postgres.start()
    yield own_postgres
    own_postgres.thaw()
    if not (own_postgres.state / "data" / "postmaster.pid").exists():
        own_postgres.start()


async def _no_wait(_: float) -> None:
    return None


def test_a_batch_of_100_against_a_server_that_went_down_ends_in_typed_results_within_30_s(running):
    """The server dies during the batch (its first incident's operation stops it): default settings."""
    stopped = threading.Event()

    def stop_the_database() -> dict:
        if not stopped.is_set():
            stopped.set()
            running.stop()
        return {"ok": True}

    first = {"error_type": "TimeoutError", "message": "t", "operation": "stop_the_database", "arguments": {}}
    ctx = RecoveryContext(settings=Settings(), operations={"stop_the_database": stop_the_database}, sleep=_no_wait)
    started = time.monotonic()
    results = asyncio.run(arecover_many([first, *[INCIDENT] * 99], max_concurrency=10, checkpointer=running.url,
                                        runtime_context=ctx))
    elapsed = time.monotonic() - started
    assert stopped.is_set() and len(results) == 100
    outcomes = {r.outcome for r in results}
    assert outcomes <= {"recovered", "error"}, outcomes
    failed = [r for r in results if r.outcome == "error"]
    assert len(failed) >= 80  # all but those finished before the server went down
    assert all(r.summary.startswith("checkpoint store failed: PostgreSQL checkpoint store") for r in failed)
    assert any("is down" in r.summary and "fail at once" in r.summary for r in failed)  # the breaker spoke
    assert elapsed < 30, f"{elapsed:.1f} s"
    print(f"\n100 incidents against a PostgreSQL that went down: {elapsed:.2f} s, {len(failed)} store errors")


def test_a_batch_of_100_against_a_server_already_down_ends_at_once(running):
    running.stop()
    started = time.monotonic()
    results = asyncio.run(arecover_many([INCIDENT] * 100, checkpointer=running.url, settings=Settings()))
    assert len(results) == 100 and {r.outcome for r in results} == {"error"}
    assert "cannot reach PostgreSQL" in results[0].summary and "KGOT_CHECKPOINT_URL" in results[0].summary
    elapsed = time.monotonic() - started
    assert elapsed < 10
    print(f"\n100 incidents against a PostgreSQL already down: {elapsed:.2f} s")


async def test_a_frozen_server_makes_recoveries_fail_fast_with_checkpoint_error(running):
    limits = CheckpointSettings(statement_timeout_seconds=1.0, pool_timeout_seconds=1.0, breaker_threshold=2,
                                breaker_reset_seconds=60)
    settings = load_settings(environ={}, checkpoints=limits.model_dump())
    async with open_checkpointer(running.url, limits) as store:
        assert (await arecover(INCIDENT, checkpointer=store, settings=settings)).recovered
        running.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(CheckpointError, match="no answer within 2 s"):
                await asyncio.wait_for(arecover(INCIDENT, checkpointer=store, settings=settings), timeout=30)
            first = time.monotonic() - started
            assert first < 2 + 2
            results = await asyncio.wait_for(arecover_many([INCIDENT] * 20, checkpointer=store, settings=settings),
                                             timeout=30)
            assert {r.outcome for r in results} == {"error"}
            # the ten started together time out together (2 s); the breaker is open for the other ten
            assert sum("is down" in r.summary for r in results) >= 10
            total = time.monotonic() - started
            assert total < 2 + 2 + 2 * 2 + 3
            print(f"\nfrozen PostgreSQL: first recovery failed after {first:.2f} s, 20 more in {total - first:.2f} s")
        finally:
            running.thaw()
    async with open_checkpointer(running.url, limits) as store:  # thawed: a new store works at once
        assert (await arecover(INCIDENT, checkpointer=store, settings=settings)).recovered


async def test_connect_to_a_frozen_server_ends_at_the_connect_timeout(running):
    running.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(CheckpointError, match="cannot reach PostgreSQL"):
            async with open_checkpointer(running.url, CheckpointSettings(connect_timeout_seconds=1.0)):
                pass
        assert time.monotonic() - started < 4
    finally:
        running.thaw()
