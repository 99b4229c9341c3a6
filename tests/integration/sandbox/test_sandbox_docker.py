"""The docker backend: locked-down container config, registry-free image, cleanup, the concurrency cap."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kgot_errors.sandbox import Limits, Sandbox, get_sandbox
from kgot_errors.sandbox._docker import DEFAULT_IMAGE, LABEL


@pytest.fixture
def docker_sb(probes) -> Sandbox:
    return probes.make_sandbox("docker", timeout=5)


def _labelled(sb: Sandbox) -> list[str]:
    client = sb.backend.client()  # type: ignore[attr-defined]
    return [c.id for c in client.containers.list(all=True, filters={"label": LABEL})]


def test_container_config_is_locked_down(docker_sb: Sandbox):
    backend = docker_sb.backend
    container = backend._create(["python3", "-c", "pass"], Limits(), uid=1_234_567, reap_after=time.time() + 60)  # type: ignore[attr-defined]
    try:
        attrs = backend.client().api.inspect_container(container.id)  # type: ignore[attr-defined]
    finally:
        container.remove(force=True)
    host, cfg = attrs["HostConfig"], attrs["Config"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["Memory"] == host["MemorySwap"] == 256 << 20
    assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 64
    # the supervisor keeps setuid/setgid/kill to run the program as its own uid with none of them
    assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == ["KILL", "SETGID", "SETUID"]
    assert host["Privileged"] is False
    opts = host["SecurityOpt"]
    assert opts[0] == "no-new-privileges" and opts[1].startswith("seccomp=") and len(opts) == 2
    profile = json.loads(opts[1][len("seccomp="):])
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert host["LogConfig"]["Type"] == "none"
    assert set(host["Tmpfs"]) == {"/tmp", "/sandbox"} and "uid=1234567" in host["Tmpfs"]["/sandbox"]
    assert cfg["User"] == "0:0" and cfg["Labels"][LABEL] == "1" and cfg["OpenStdin"] is True
    assert not cfg.get("Env") or not any(e.startswith(("OPENAI", "AWS", "DOCKER")) for e in cfg["Env"])


def test_image_was_built_without_a_registry(docker_sb: Sandbox):
    image = docker_sb.backend.client().images.get(DEFAULT_IMAGE)  # type: ignore[attr-defined]
    assert image.attrs["RepoDigests"] == []  # never pulled from / pushed to a registry
    assert image.attrs["Config"]["User"] == "65534:65534"
    assert image.attrs["Config"]["Labels"][f"{LABEL}.image"] == "1"


def test_hundred_runs_leave_no_container_or_process_behind(docker_sb: Sandbox, probes, marker: str):
    code = f"""
import os, sys
if os.fork() == 0:
    os.setsid()
    os.execv(sys.executable, [sys.executable, "-S", "-c", "import time; time.sleep(30)", "{marker}"])
print("ok")
"""
    threads = threading.active_count()
    for i in range(100):
        res = docker_sb.run(code)
        assert res.ok and res.stdout == "ok\n", (i, res)
    assert _labelled(docker_sb) == []
    assert probes.wait_no_survivors(marker) == []
    assert threading.active_count() == threads


def test_cleanup_removes_leftovers_past_their_deadline_and_keeps_live_runs(docker_sb: Sandbox):
    backend = docker_sb.backend
    stale = backend._create(["python3", "-c", "pass"], Limits(), uid=1_234_567, reap_after=time.time() - 1)  # type: ignore[attr-defined]
    live = backend._create(["python3", "-c", "pass"], Limits(), uid=1_234_568, reap_after=time.time() + 600)  # type: ignore[attr-defined]
    try:
        assert {stale.id, live.id} <= set(_labelled(docker_sb))
        assert docker_sb.cleanup() >= 1
        left = _labelled(docker_sb)
        assert stale.id not in left and live.id in left
    finally:
        live.remove(force=True)


def test_runs_never_exceed_max_concurrent(probes):
    probes.make_sandbox("docker")  # skips without a daemon
    spans = probes.concurrent_spans(get_sandbox("docker", max_concurrent=2, timeout=15), 5)
    assert len(spans) == 5 and probes.max_overlap(spans) == 2
