"""SQLite store faults are CheckpointErrors naming the file and what to do; read-only stores can be read.

Disk full on a small tmpfs, an immutable file (chattr +i), zeroed pages, a read-only mount. Mounting
needs root: elsewhere these tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kgot_errors import arecover_many, history, recover
from kgot_errors.errors import CheckpointError
from kgot_errors.observability import get_statistics
from kgot_errors.runtime.settings import Settings

INCIDENT = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": "{'a': 1, 'ok': True,}"}


def _root_tool(*names: str) -> None:
    if os.geteuid() != 0 or not all(shutil.which(n) for n in names):
        pytest.skip(f"needs root and {', '.join(names)}")


@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MiB tmpfs of this test's own (unmounted after)."""
    _root_tool("mount", "umount")
    where = tmp_path / "small"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def immutable():
    """chattr +i on a path; undone after."""
    _root_tool("chattr")
    marked: list[Path] = []

    def mark(path: Path) -> None:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i unsupported here: {done.stderr.decode().strip()}")
        marked.append(path)

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


async def test_a_batch_that_fills_the_disk_ends_with_typed_results_naming_the_store(tmpfs):
    store = tmpfs / "full.sqlite"
    filler = "x" * 40_000  # each incident's content is stored in its checkpoints: 1 MiB fills after a few
    batch = [{**INCIDENT, "content": "{'a': %d, 'pad': '%s',}" % (i, filler)} for i in range(60)]
    results = await arecover_many(batch, checkpointer=str(store), settings=Settings(), max_concurrency=4)
    assert len(results) == 60
    failed = [r for r in results if r.outcome == "error"]
    assert failed, "the disk never filled"
    assert all(r.outcome in ("recovered", "error") for r in results)
    for r in failed:
        assert r.summary.startswith("checkpoint store failed: SQLite checkpoint store ")
        assert str(store) in r.summary and "the disk is full" in r.summary and "free some space" in r.summary


def test_recovering_into_an_immutable_file_is_a_checkpoint_error_and_it_can_still_be_read(tmp_path, immutable):
    store = tmp_path / "frozen.sqlite"
    done = recover(INCIDENT, checkpointer=str(store), settings=Settings())
    immutable(store)
    with pytest.raises(CheckpointError, match="read-only .*history and stats can still read it") as caught:
        recover(INCIDENT, checkpointer=str(store), settings=Settings())
    assert caught.value.target == str(store)
    assert history(done.thread_id, checkpointer=str(store), settings=Settings())["finished"]
    assert get_statistics(checkpointer=str(store), settings=Settings()).incidents >= 1


def test_a_store_on_a_read_only_mount_can_be_read_by_history_and_stats(tmpfs):
    store = tmpfs / "ro.sqlite"
    done = [recover(INCIDENT, checkpointer=str(store), settings=Settings()) for _ in range(3)]
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    h = history(done[0].thread_id, checkpointer=str(store), settings=Settings())
    assert h["finished"] and h["result"].value == {"a": 1, "ok": True}
    assert get_statistics(checkpointer=str(store), settings=Settings()).incidents == 3
    with pytest.raises(CheckpointError, match="read-only"):
        recover(INCIDENT, checkpointer=str(store), settings=Settings())
    from kgot_errors.observability import doctor

    check = next(c for c in doctor(Settings(), checkpointer=str(store)) if c.part == "checkpoint store")
    assert check.status == "fail" and "is read-only" in check.detail and "cannot be stored" in check.detail


def test_zeroed_pages_are_a_checkpoint_error_saying_the_file_is_damaged(tmp_path):
    store = tmp_path / "zeroed.sqlite"
    batch = [{**INCIDENT, "content": "{'a': %d, 'pad': '%s',}" % (i, "y" * 3000)} for i in range(20)]
    from kgot_errors import recover_many

    done = recover_many(batch, checkpointer=str(store), settings=Settings())
    assert not list(tmp_path.glob("zeroed.sqlite-wal"))  # closed: everything is in the main file
    with open(store, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\0" * 16 * 4096)
    with pytest.raises(CheckpointError, match="damaged or not a SQLite database .*move it aside"):
        for r in done:
            history(r.thread_id, checkpointer=str(store), settings=Settings())
        recover(INCIDENT, checkpointer=str(store), settings=Settings())


def test_content_over_the_limit_is_refused_before_any_layer_and_never_stored(tmp_path):
    from kgot_errors import recover_many

    store = tmp_path / "big.sqlite"
    settings = Settings(syntax_error_management={"max_content_chars": 1_000})
    big = {**INCIDENT, "content": "{'a': '%s'," % ("x" * 5_000)}
    one = recover(big, checkpointer=str(store), settings=settings)
    batch = recover_many([big, INCIDENT], checkpointer=str(store), settings=settings)
    for refused in (one, batch[0]):
        assert not refused.recovered and refused.attempts == [] and refused.thread_id is None
        assert "(5,009 characters) holds more than max_content_chars (1,000)" in refused.summary
    assert batch[1].recovered
    assert get_statistics(checkpointer=str(store), settings=settings).incidents == 1  # only the small one
    assert b"x" * 1_000 not in store.read_bytes()
