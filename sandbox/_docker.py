"""The Docker backend: one fresh locked-down container per run (docker SDK, imported lazily)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from kgot_errors.errors import SandboxError, SandboxUnavailable
from kgot_errors.sandbox._code import check_files
from kgot_errors.sandbox._limits import Limits
from kgot_errors.sandbox._pump import CappedBuffer
from kgot_errors.sandbox._result import ExecResult
from kgot_errors.sandbox._seccomp import docker_profile
from kgot_errors.sandbox._uid import run_uid
from kgot_errors.sandbox._verdict import decide
from kgot_errors.sandbox._wire import Deframer, payload, supervisor_argv

__all__ = ["DEFAULT_IMAGE", "LABEL", "DockerBackend", "docker_configured", "docker_host_from_env"]

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "kgot-errors-python:latest"
LABEL = "org.kgot-errors.sandbox"
DEADLINE_LABEL = LABEL + ".reap-after"  # wall-clock second after which a container is a crashed caller's leftover
REAP_MARGIN = 10.0  # seconds past a run's deadline (plus the host's grace) before another process reaps it
REAP_EVERY = 10.0
HOST_GRACE = 1.5  # the host kills a container this long after its deadline if the supervisor did not
SANDBOX_USER = "0:0"  # the supervisor; it runs the program as a fresh uid of its own (see _supervisor)
SUPERVISOR_CAPS = ["SETUID", "SETGID", "KILL"]
_DEFAULT_SOCKET = "/var/run/docker.sock"
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/sandbox", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8", "USER": "sandbox"}


def docker_host_from_env() -> str | None:
    """The daemon address this environment configures: DOCKER_HOST, else the default socket if present."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host
    return "unix://" + _DEFAULT_SOCKET if os.path.exists(_DEFAULT_SOCKET) else None


def docker_configured(base_url: str | None = None) -> bool:
    return bool(base_url or docker_host_from_env())


class DockerBackend:
    """network none, read-only root, tmpfs scratch, memory = memory+swap, nano_cpus, pids, the policy's
    seccomp profile, no-new-privileges, no log driver, removed after each run. Inside, the supervisor
    (root with setuid/setgid/kill only) gets the program through the attach stream, runs it as a fresh
    uid with no capabilities, keeps the deadline itself and relays capped, framed output."""

    name = "docker"
    isolating = True

    def __init__(self, *, image: str = DEFAULT_IMAGE, base_url: str | None = None, client: Any = None) -> None:
        self.image = image
        self._base_url = base_url
        self._client = client
        self._lock = threading.Lock()
        self._profile: str | None = None
        self._reaped_at = float("-inf")

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

    def seccomp_profile(self) -> str:
        """The policy's profile for the daemon's architecture (asked once)."""
        if self._profile is None:
            try:
                machine = self.client().info().get("Architecture") or None
            except Exception:  # noqa: BLE001 - an old or odd daemon: this machine's architecture
                machine = None
            self._profile = docker_profile(machine)
        return self._profile

    def cleanup(self) -> int:
        """Force-remove sandbox containers whose run is over: past their reap-after time (a caller that
        died mid-run; its supervisor has ended the program at the deadline) or from before it existed."""
        client = self.client()
        removed = 0
        now = time.time()
        for c in client.containers.list(all=True, filters={"label": LABEL}):
            after = (c.labels or {}).get(DEADLINE_LABEL)
            try:
                if after is not None and float(after) > now:
                    continue  # a run still going on (maybe another process's)
            except ValueError:
                pass
            try:
                c.remove(force=True)
                removed += 1
            except Exception as exc:  # noqa: BLE001 - already gone / being removed
                log.debug("cleanup: %s: %s", c.id[:12], exc)
        return removed

    def reap(self) -> int:
        """At most every REAP_EVERY seconds: cleanup() before a run."""
        now = time.monotonic()
        if now - self._reaped_at < REAP_EVERY:
            return 0
        self._reaped_at = now
        try:
            return self.cleanup()
        except Exception as exc:  # noqa: BLE001 - reaping must never stop a run
            log.warning("could not reap stale sandbox containers: %s", exc)
            return 0

    def _create(self, argv: list[str], limits: Limits, *, uid: int, reap_after: float) -> Any:
        from docker.types import LogConfig, Ulimit  # type: ignore[import-untyped]

        size = limits.file_size
        return self.client().containers.create(
            self.image,
            command=argv,
            user=SANDBOX_USER,
            working_dir="/",
            environment=_ENV,
            network_mode="none",
            read_only=True,
            tmpfs={
                "/tmp": f"rw,nosuid,nodev,size={size},mode=1777",
                "/sandbox": f"rw,nosuid,nodev,size={size},uid={uid},gid={uid},mode=0700",
            },
            shm_size=size,
            mem_limit=limits.memory,
            memswap_limit=limits.memory,
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            cap_drop=["ALL"],
            cap_add=SUPERVISOR_CAPS,
            security_opt=["no-new-privileges", "seccomp=" + self.seccomp_profile()],
            ipc_mode="private",
            ulimits=[
                Ulimit(name="core", soft=0, hard=0),
                Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
                Ulimit(name="fsize", soft=size, hard=size),
                Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1),
            ],
            log_config=LogConfig(type="none"),
            labels={LABEL: "1", DEADLINE_LABEL: f"{reap_after:.0f}"},
            hostname="sandbox",
            stdin_open=True,
            tty=False,
        )

    def execute(self, code: str, limits: Limits, *, stdin: bytes | None, files: Mapping[str, bytes]) -> ExecResult:
        check_files(dict(files))
        message = payload(code, stdin, files)
        client = self.client()
        self.reap()
        uid = run_uid()
        # the deadline is relative: a remote daemon's monotonic clock is not ours
        argv = supervisor_argv("python3", deadline=-limits.timeout, uid=uid, cap=limits.output_bytes,
                               cpu_seconds=limits.cpu_seconds, scratch="/sandbox")
        start = time.monotonic()
        try:
            container = self._create(argv, limits, uid=uid,
                                     reap_after=time.time() + limits.timeout + HOST_GRACE + REAP_MARGIN)
        except Exception as exc:
            raise SandboxError(f"docker could not create the container: {exc}") from exc
        frames, err = Deframer(limits.output_bytes), CappedBuffer(1 << 16)
        reader: threading.Thread | None = None
        host_timed_out = False
        exit_code: int | None = None
        oom = False
        try:
            try:
                sock = client.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            except Exception as exc:
                raise SandboxError(f"docker could not attach to the container: {exc}") from exc
            reader = threading.Thread(target=_talk, args=(sock, message, frames, err),
                                      name="kgot-sandbox-docker-io", daemon=True)
            try:
                container.start()
            except Exception as exc:
                raise SandboxError(f"docker could not start the container: {exc}") from exc
            reader.start()
            try:
                status = client.api.wait(container.id, timeout=limits.timeout + HOST_GRACE)
                exit_code = int(status.get("StatusCode", -1))
            except Exception as exc:
                if time.monotonic() < start + limits.timeout:  # not a timeout: the daemon failed
                    raise SandboxError(f"docker wait failed: {exc}") from exc
                host_timed_out = True
                try:
                    container.kill()
                except Exception as kill_exc:  # noqa: BLE001 - it may have just exited
                    log.debug("kill after timeout: %s", kill_exc)
                try:
                    exit_code = int(client.api.wait(container.id, timeout=30).get("StatusCode", -1))
                except Exception as wait_exc:  # noqa: BLE001 - reaped meanwhile: the verdict (if any) says
                    log.debug("wait after kill: %s", wait_exc)
            duration = time.monotonic() - start
            reader.join(5)
            if reader.is_alive():
                _close(sock)
                reader.join(5)
            try:
                oom = bool(client.api.inspect_container(container.id).get("State", {}).get("OOMKilled"))
            except Exception as exc:  # noqa: BLE001 - removed by a reaper: the supervisor's count stands
                log.debug("inspect after the run: %s", exc)
        finally:
            try:
                container.remove(force=True)  # also ends the attach stream
            except Exception as exc:  # noqa: BLE001
                log.error("could not remove sandbox container %s: %s", container.id[:12], exc)
            if reader is not None and reader.ident is not None:
                reader.join(5)  # never leave a reader thread behind in the caller
        got = frames.result()
        if got.failure is not None:
            raise SandboxError(f"the sandbox's supervisor failed, no code ran: {got.failure[:500]}")
        if got.verdict is None and not host_timed_out:
            detail = err.text().strip()[:500]
            if exit_code in (125, 126, 127) or "python3" in detail and "not found" in detail:
                raise SandboxError(f"the sandbox could not start, no code ran: exit {exit_code}: {detail}")
            log.warning("sandbox supervisor ended without a verdict (exit %s): %s", exit_code, detail)
        end = decide(got.verdict, host_timed_out=host_timed_out, host_status=exit_code, oom=oom)
        verdict = got.verdict or {}
        return ExecResult(
            stdout=got.stdout.decode("utf-8", "replace"),
            stderr=got.stderr.decode("utf-8", "replace"),
            exit_code=end.exit_code,
            timed_out=end.timed_out,
            killed_by=end.killed_by,
            duration=duration,
            peak_memory=verdict.get("peak") if isinstance(verdict.get("peak"), int) else None,
            stdout_truncated=int(verdict.get("stdout_total", len(got.stdout) + 1)) > limits.output_bytes,
            stderr_truncated=int(verdict.get("stderr_total", len(got.stderr) + 1)) > limits.output_bytes,
            backend=self.name,
            signal=end.signal,
            exception=end.exception,
            ending=end.ending,
        )


def _talk(sock: Any, message: bytes, frames: Deframer, err: CappedBuffer) -> None:
    """The attach stream: the program to the supervisor's stdin, then its framed stdout (and stderr)."""
    from docker.utils.socket import frames_iter  # type: ignore[import-untyped]

    try:
        getattr(sock, "_sock", sock).sendall(message)
        for stream, data in frames_iter(sock, tty=False):
            if stream == 1:
                frames.feed(data)
            elif stream == 2:
                err.add(data)
    except Exception as exc:  # noqa: BLE001 - the stream ends with the container
        log.debug("attach stream ended: %s", exc)


def _close(sock: Any) -> None:
    try:
        sock.close()
    except Exception as exc:  # noqa: BLE001
        log.debug("closing the attach stream: %s", exc)
