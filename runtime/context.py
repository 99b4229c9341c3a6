"""The runtime context: every dependency a node may touch (model, sandbox, operations, time, randomness)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kgot_errors.runtime.settings import Settings

__all__ = ["RecoveryContext", "context_of"]


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


_DEFAULT = RecoveryContext()


def context_of(runtime: Any) -> RecoveryContext:
    """The run's context, or the embedded defaults when the graph runs without one (e.g. as a subgraph)."""
    ctx = getattr(runtime, "context", None)
    return ctx if isinstance(ctx, RecoveryContext) else _DEFAULT
