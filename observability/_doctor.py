"""doctor: checks each part this installation uses, one pass/fail/skip line each; a failure names the part.

Parts nobody configured (no model, no Docker, no PostgreSQL) are `skip`, not failures; a part
that is configured but does not work is `fail`, with what went wrong.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["Check", "adoctor", "doctor"]

Status = Literal["pass", "fail", "skip"]

_PACKAGES = (
    ("kgot-errors", True), ("langgraph", True), ("langgraph-checkpoint-sqlite", True), ("langchain-core", True),
    ("pydantic", True), ("json-repair", True), ("langsmith", False), ("prometheus-client", False),
    ("python-json-logger", False), ("rich", False), ("langchain-openai", False), ("docker", False),
    ("langgraph-checkpoint-postgres", False), ("psycopg", False),
)
"""(distribution, required): a missing optional one is reported as skip."""


@dataclass(frozen=True)
class Check:
    part: str
    status: Status
    detail: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return f"{self.status.upper():<4}  {self.part:<22} {self.detail}"


def _packages() -> list[Check]:
    found, missing = [], []
    for name, required in _PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append((name, required))
    absent_required = [n for n, req in missing if req]
    if absent_required:
        return [Check("packages", "fail", f"missing: {', '.join(absent_required)}; have {', '.join(found)}")]
    extra = f" (not installed, optional: {', '.join(n for n, _ in missing)})" if missing else ""
    return [Check("packages", "pass", ", ".join(found) + extra)]


def _sandbox(settings: Any, docker_host: str | None) -> list[Check]:
    from kgot_errors.errors import KgotError
    from kgot_errors.sandbox import get_sandbox

    chosen = settings.python_executor.backend
    names = ["docker", "bwrap"] if chosen == "auto" else [chosen]
    checks, usable = [], []
    for name in names:
        part = f"sandbox {name}"
        if name == "docker" and chosen == "auto" and not docker_host:
            checks.append(Check(part, "skip", "Docker not configured (no DOCKER_HOST, no /var/run/docker.sock)"))
            continue
        options: dict[str, Any] = {"image": settings.python_executor.container_image} if name == "docker" else {}
        if name == "docker" and docker_host:
            options["base_url"] = docker_host
        try:
            sandbox = get_sandbox(name, **options)  # isolating backends are proven by a probe run
            reaped = sandbox.cleanup()  # leftovers of callers that crashed mid-run (containers, cgroups)
            res = sandbox.run("import os\nprint(sum(range(10)), os.getuid(), "
                              "len(open('/proc/net/dev').read().splitlines()) - 2)", timeout=20)
        except (KgotError, OSError, ValueError) as exc:
            checks.append(Check(part, "fail", str(exc)[:400]))
            continue
        total, uid, interfaces = (res.stdout.split() + ["?", "?", "?"])[:3]
        if not res.ok or total != "45":
            checks.append(Check(part, "fail", f"test run exited {res.exit_code}: {(res.stderr or res.stdout)[:300]}"))
            continue
        isolated = "not isolated (unsafe backend)" if not sandbox.backend.isolating else \
            f"isolated: uid {uid}, {interfaces} network interface(s), no network"
        swept = f", removed {reaped} stale run(s)" if reaped else ""
        checks.append(Check(part, "pass", f"ran code in {res.duration * 1000:.0f} ms, {isolated}{swept}"))
        usable.append(name)
    if chosen == "auto" and not usable and not any(c.status == "fail" for c in checks):
        checks.append(Check("sandbox", "fail", "no isolating backend: code will never run"))
    return checks


def _docker(docker_host: str | None) -> Check:
    if not docker_host:
        return Check("docker", "skip", "not configured (no DOCKER_HOST, no /var/run/docker.sock)")
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        return Check("docker", "fail", f"DOCKER_HOST={docker_host} but the docker package is missing: "
                                       "pip install 'kgot-errors[docker]'")
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=10)
        try:
            version = client.version().get("Version", "?")
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the daemon is the finding
        return Check("docker", "fail", f"daemon at {docker_host} not reachable: {str(exc)[:300]}")
    return Check("docker", "pass", f"daemon {version} at {docker_host}")


def _model(settings: Any, ask: bool) -> Check:
    from kgot_errors.errors import ConfigError
    from kgot_errors.runtime.model import make_model

    try:
        model = make_model(settings)
    except ConfigError as exc:
        return Check("model", "fail", str(exc))
    if model is None:
        return Check("model", "skip", "not configured (llm_fix, refine and vote record `skipped`)")
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__
    where = getattr(model, "openai_api_base", None) or ""
    if not ask:
        return Check("model", "pass", f"{name} configured{f' at {where}' if where else ''} (not asked)")
    try:
        reply = model.invoke([("user", "Reply with the single word OK.")])
    except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
        return Check("model", "fail", f"{name}{f' at {where}' if where else ''} did not answer: "
                                      f"{type(exc).__name__}: {str(exc)[:300]}")
    text = str(getattr(reply, "content", "") or "").strip()
    return Check("model", "pass", f"{name} answered {text[:40]!r}")


async def _store(target: Any) -> Check:
    from kgot_errors.errors import CheckpointError
    from kgot_errors.runtime.checkpoint import _redact, describe_target, open_checkpointer

    shown = _redact(str(target)) if isinstance(target, str) else describe_target(target)
    if target is None:
        return Check("checkpoint store", "skip", "checkpoints turned off")
    try:
        async with open_checkpointer(target) as saver:  # SQLite: setup plus a write transaction; PostgreSQL: setup
            kind, read_only = type(saver).__name__, getattr(saver, "read_only", False)
    except CheckpointError as exc:
        return Check("checkpoint store", "fail", str(exc))
    if read_only:
        return Check("checkpoint store", "fail", f"{shown} is read-only (a read-only mount or an immutable file): "
                                                 "history and stats can read it, recoveries cannot be stored in it")
    return Check("checkpoint store", "pass", f"{shown} writable ({kind})")


async def _postgres(target: Any) -> Check:
    from kgot_errors.runtime.checkpoint import _redact

    if not (isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))):
        return Check("postgresql", "skip", "not configured (checkpoints are not in PostgreSQL)")
    try:
        from psycopg import AsyncConnection
    except ImportError:
        return Check("postgresql", "fail", "psycopg missing: pip install 'kgot-errors[postgres]'")
    try:
        conn = await AsyncConnection.connect(target, connect_timeout=10, autocommit=True)
        try:
            cur = await conn.execute("SELECT current_setting('server_version')")
            version = (await cur.fetchone())[0]
        finally:
            await conn.close()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the finding
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Check("postgresql", "fail", f"{_redact(target)} not reachable: {first}")
    return Check("postgresql", "pass", f"server {version} at {_redact(target)}")


def _log_dir(path: Path) -> Check:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-", delete=True) as f:
            f.write(b"ok")
            f.flush()
    except OSError as exc:
        return Check("log dir", "fail", f"{path} not writable: {exc.strerror or exc}")
    return Check("log dir", "pass", f"{path} writable")


def _timed(fn: Callable[[], list[Check] | Check]) -> list[Check]:
    started = time.perf_counter()
    out = fn()
    took = round(time.perf_counter() - started, 3)
    return [Check(c.part, c.status, c.detail, took) for c in (out if isinstance(out, list) else [out])]


async def adoctor(settings: Any = None, *, checkpointer: Any = "default", log_dir: str | os.PathLike[str] | None = None,
                  docker_host: str | None | Literal["env"] = "env", ask_model: bool = True) -> list[Check]:
    """Run every check; `docker_host="env"` reads DOCKER_HOST / the default socket, None means not configured."""
    from kgot_errors.observability.logs import default_log_dir
    from kgot_errors.runtime.settings import load_settings
    from kgot_errors.sandbox._docker import docker_host_from_env

    settings = settings or load_settings()
    host = docker_host_from_env() if docker_host == "env" else docker_host
    target = settings.checkpoint_target() if checkpointer == "default" else checkpointer
    logs = Path(log_dir) if log_dir is not None else default_log_dir(settings)
    results = _timed(_packages)
    results += await asyncio.to_thread(_timed, lambda: _sandbox(settings, host))
    results += await asyncio.to_thread(_timed, lambda: _docker(host))
    results += await asyncio.to_thread(_timed, lambda: _model(settings, ask_model))
    for check in (_store, _postgres):
        started = time.perf_counter()
        c = await check(target)
        results.append(Check(c.part, c.status, c.detail, round(time.perf_counter() - started, 3)))
    results += _timed(lambda: _log_dir(logs))
    return results


def doctor(settings: Any = None, **kwargs: Any) -> list[Check]:
    """Sync twin of `adoctor`."""
    from kgot_errors.graph.recover import run_sync

    return run_sync(lambda: adoctor(settings, **kwargs))
