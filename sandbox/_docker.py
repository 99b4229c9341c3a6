"""The Docker backend: one fresh locked-down container per run (docker SDK, imported lazily)."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from kgot_errors.errors import SandboxError, SandboxUnavailable
from kgot_errors.sandbox._code import MAX_CODE_BYTES, check_files, python_argv
from kgot_errors.sandbox._limits import Limits
from kgot_errors.sandbox._pump import CappedBuffer, Captured
from kgot_errors.sandbox._result import ExecResult, killed_reason

__all__ = ["DEFAULT_IMAGE", "LABEL", "DockerBackend", "docker_configured", "docker_host_from_env"]

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "kgot-errors-python:latest"
LABEL = "org.kgot-errors.sandbox"
SANDBOX_USER = "65534:65534"
_DEFAULT_SOCKET = "/var/run/docker.sock"
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/sandbox", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
# Runs first inside the container when stdin or files are given: unpacks them, then runs the code
# as __main__. The payload travels in argv (the container's root is read-only and has no volume).
_BOOT = """\
import sys as _s, os as _o, base64 as _b, json as _j
_p = _j.loads(_b.b64decode(''.join(_s.argv[1:])))
_s.argv[1:] = []
for _n, _d in _p['files'].items():
    if '/' in _n:
        _o.makedirs(_o.path.dirname(_n), exist_ok=True)
    with open(_n, 'wb') as _f:
        _f.write(_b.b64decode(_d))
if _p['stdin'] is not None:
    _fd = _o.open('/tmp', _o.O_TMPFILE | _o.O_RDWR, 0o600)
    _o.write(_fd, _b.b64decode(_p['stdin']))
    _o.lseek(_fd, 0, 0)
    _o.dup2(_fd, 0)
    _o.close(_fd)
_c = compile(_p['code'], '<string>', 'exec')
del _s, _o, _b, _j, _p
exec(_c, {'__name__': '__main__', '__builtins__': __builtins__})
"""


def docker_host_from_env() -> str | None:
    """The daemon address this environment configures: DOCKER_HOST, else the default socket if present."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host
    return "unix://" + _DEFAULT_SOCKET if os.path.exists(_DEFAULT_SOCKET) else None


def docker_configured(base_url: str | None = None) -> bool:
    return bool(base_url or docker_host_from_env())


def _argv(code: str, stdin: bytes | None, files: Mapping[str, bytes]) -> list[str]:
    if stdin is None and not files:
        return python_argv("python3", code)
    payload = json.dumps({
        "code": code,
        "stdin": None if stdin is None else base64.b64encode(stdin).decode(),
        "files": {n: base64.b64encode(d).decode() for n, d in files.items()},
    }).encode()
    packed = base64.b64encode(payload).decode()
    if len(packed) > MAX_CODE_BYTES:
        raise SandboxError(f"code, stdin and files are {len(packed)} bytes encoded; docker runs take at most {MAX_CODE_BYTES}")
    step = 100_000
    return ["python3", "-I", "-B", "-S", "-c", _BOOT, *(packed[i : i + step] for i in range(0, len(packed), step))]


class DockerBackend:
    """network none, read-only root, tmpfs scratch, memory = memory+swap, nano_cpus, pids, no caps,
    no-new-privileges, uid 65534, no log driver (output streamed and capped), removed after each run."""

    name = "docker"
    isolating = True

    def __init__(self, *, image: str = DEFAULT_IMAGE, base_url: str | None = None, client: Any = None) -> None:
        self.image = image
        self._base_url = base_url
        self._client = client
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    import docker  # type: ignore[import-untyped]
                except ImportError as exc:
                    raise SandboxUnavailable("the docker SDK is not installed: pip install 'kgot-errors[docker]'") from exc
                try:
                    if self._base_url:
                        self._client = docker.DockerClient(base_url=self._base_url, timeout=30)
                    else:
                        self._client = docker.from_env(timeout=30)
                except Exception as exc:
                    raise SandboxUnavailable(f"cannot connect to Docker: {exc}") from exc
            return self._client

    def check(self) -> None:
        client = self.client()
        try:
            client.ping()
        except Exception as exc:
            raise SandboxUnavailable(f"Docker daemon not reachable: {exc}") from exc
        try:
            client.images.get(self.image)
        except Exception as exc:
            raise SandboxUnavailable(
                f"sandbox image {self.image!r} not found on the Docker host: build it with "
                "kgot_errors.sandbox.build_image() (no registry needed)"
            ) from exc

    def cleanup(self) -> int:
        """Force-remove every container carrying the sandbox label (leftovers of crashed runs)."""
        client = self.client()
        removed = 0
        for c in client.containers.list(all=True, filters={"label": LABEL}):
            try:
                c.remove(force=True)
                removed += 1
            except Exception as exc:  # noqa: BLE001 - already gone / being removed
                log.debug("cleanup: %s: %s", c.id[:12], exc)
        return removed

    def _create(self, argv: list[str], limits: Limits) -> Any:
        from docker.types import LogConfig, Ulimit  # type: ignore[import-untyped]

        size = limits.file_size
        return self.client().containers.create(
            self.image,
            command=argv,
            user=SANDBOX_USER,
            working_dir="/sandbox",
            environment=_ENV,
            network_mode="none",
            read_only=True,
            tmpfs={
                "/tmp": f"rw,nosuid,nodev,size={size},mode=1777",
                "/sandbox": f"rw,nosuid,nodev,size={size},uid=65534,gid=65534,mode=0700",
            },
            shm_size=size,
            mem_limit=limits.memory,
            memswap_limit=limits.memory,
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            ipc_mode="private",
            ulimits=[
                Ulimit(name="core", soft=0, hard=0),
                Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
                Ulimit(name="fsize", soft=size, hard=size),
                Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1),
            ],
            log_config=LogConfig(type="none"),
            labels={LABEL: "1"},
            hostname="sandbox",
            stdin_open=False,
            tty=False,
        )

    def execute(self, code: str, limits: Limits, *, stdin: bytes | None, files: Mapping[str, bytes]) -> ExecResult:
        check_files(dict(files))
        argv = _argv(code, stdin, files)
        client = self.client()
        start = time.monotonic()
        try:
            container = self._create(argv, limits)
        except Exception as exc:
            raise SandboxError(f"docker could not create the container: {exc}") from exc
        out, err = CappedBuffer(limits.output_bytes), CappedBuffer(limits.output_bytes)
        reader: threading.Thread | None = None
        timed_out = False
        try:
            stream = client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=False, demux=True)

            def read() -> None:
                try:
                    for chunk_out, chunk_err in stream:
                        if chunk_out:
                            out.add(chunk_out)
                        if chunk_err:
                            err.add(chunk_err)
                except Exception as exc:  # noqa: BLE001 - the stream ends with the container
                    log.debug("attach stream ended: %s", exc)

            reader = threading.Thread(target=read, name="kgot-sandbox-docker-output", daemon=True)
            reader.start()
            try:
                container.start()
            except Exception as exc:
                raise SandboxError(f"docker could not start the container: {exc}") from exc
            remaining = max(0.1, start + limits.timeout - time.monotonic())
            try:
                status = client.api.wait(container.id, timeout=remaining)
                exit_code = int(status.get("StatusCode", -1))
            except Exception as exc:
                if time.monotonic() < start + limits.timeout - 0.5:  # not a timeout: the daemon failed
                    raise SandboxError(f"docker wait failed: {exc}") from exc
                timed_out = True
                try:
                    container.kill()
                except Exception as kill_exc:  # noqa: BLE001 - it may have just exited
                    log.debug("kill after timeout: %s", kill_exc)
                status = client.api.wait(container.id, timeout=30)
                exit_code = int(status.get("StatusCode", -1))
            duration = time.monotonic() - start
            reader.join(5)
            if reader.is_alive():
                try:
                    stream.close()
                except Exception as close_exc:  # noqa: BLE001
                    log.debug("closing the attach stream: %s", close_exc)
                reader.join(5)
            state = client.api.inspect_container(container.id).get("State", {})
        finally:
            try:
                container.remove(force=True)  # also ends the attach stream
            except Exception as exc:  # noqa: BLE001
                log.error("could not remove sandbox container %s: %s", container.id[:12], exc)
            if reader is not None:
                reader.join(5)  # never leave a reader thread behind in the caller
        killed = killed_reason(timed_out=timed_out, exit_code=exit_code, oom=bool(state.get("OOMKilled")))
        captured = Captured(out.text(), err.text(), out.truncated, err.truncated, timed_out, exit_code)
        return captured.to_result(backend=self.name, exit_code=exit_code, killed_by=killed, duration=duration,
                                  peak_memory=None)
