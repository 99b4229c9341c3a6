"""The runtime context: every dependency a node may touch (model, sandbox, operations, time, randomness)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kgot_errors.runtime.settings import Settings

__all__ = ["CallLedger", "LazySandbox", "RecoveryContext", "context_of"]


class CallLedger:
    """The operation calls this process armed and has not started yet (backoff's in-flight tokens).

    A token is armed when a call is recorded as in flight and claimed, once, right before the call.
    A recorded in-flight call whose token this process cannot claim was armed by a process that
    stopped (or by a run that broke): that call may have run, its outcome is unknown.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: set[str] = set()

    def arm(self) -> str:
        token = uuid.uuid4().hex
        with self._lock:
            self._armed.add(token)
        return token

    def claim(self, token: str) -> bool:
        """True once for a token this process armed; False for any other (or a second claim)."""
        with self._lock:
            if token in self._armed:
                self._armed.discard(token)
                return True
            return False


@dataclass(frozen=True, kw_only=True)
class RecoveryContext:
    """Passed as LangGraph's runtime context; never checkpointed.

    Nodes read only `state` and this object: time (`clock`, `sleep`), randomness (`rng`),
    I/O (`model`, `sandbox`, `operations`) and policy (`settings`) all come from here, so
    tests inject them instead of patching.
    """

    settings: Settings = field(default_factory=Settings)
    model: Any | None = None  # a langchain BaseChatModel; None: LLM layers record `skipped`
    sandbox: Any | None = None  # a kgot_errors.sandbox.Sandbox; None: the sandbox layer records `skipped`
    operations: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    breakers: Any | None = None  # per-operation circuit breakers, shared by incidents in a process
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.perf_counter
    rng: random.Random = field(default_factory=random.Random)
    calls: CallLedger = field(default_factory=CallLedger)  # in-flight operation calls this process armed


_DEFAULT = RecoveryContext()


def context_of(runtime: Any) -> RecoveryContext:
    """The run's context, or the embedded defaults when the graph runs without one (e.g. as a subgraph)."""
    ctx = getattr(runtime, "context", None)
    return ctx if isinstance(ctx, RecoveryContext) else _DEFAULT


class LazySandbox:
    """The settings' sandbox, built on first use (so JSON-only recoveries never probe a backend).

    Behaves like a `kgot_errors.sandbox.Sandbox`; when no backend can isolate here, `run`/`arun`
    raise SandboxUnavailable with the reason, and the layers record that instead of running code.
    """

    def __init__(self, settings: Settings) -> None:
        self._executor = settings.python_executor
        self._built: Any = None

    def _sandbox(self) -> Any:
        if self._built is None:
            self._built = _default_sandbox(self._executor)
        if isinstance(self._built, Exception):
            raise self._built
        return self._built

    def run(self, code: str, **kwargs: Any) -> Any:
        return self._sandbox().run(code, **kwargs)

    async def arun(self, code: str, **kwargs: Any) -> Any:
        return await self._sandbox().arun(code, **kwargs)


_SANDBOXES: dict[Any, Any] = {}


def _default_sandbox(executor: Any) -> Any:
    """One sandbox (or the reason there is none) per executor settings, for the whole process."""
    if executor not in _SANDBOXES:
        from kgot_errors.errors import SandboxError
        from kgot_errors.sandbox import get_sandbox

        try:
            _SANDBOXES[executor] = get_sandbox(executor.backend, max_concurrent=executor.max_concurrent_containers,
                                               timeout=executor.default_timeout, memory=executor.memory_limit,
                                               cpus=executor.cpu_limit, image=executor.container_image)
        except SandboxError as exc:
            _SANDBOXES[executor] = exc
    return _SANDBOXES[executor]
