"""LangGraph Server entry point: the recovery graph, with its runtime context built on the server from settings.

    langgraph.json   {"graphs": {"kgot-errors": "kgot_errors.integration.server:graph"}}
    langgraph dev --no-browser --host 127.0.0.1 --port 2024

LangGraph Server sends each run's `context` as JSON, and the graph coerces it into its
context schema. A chat model, a sandbox and operations cannot travel as JSON, so the served
graph's context schema is `ServedContext`: a RecoveryContext whose settings, model, sandbox
and operations are the server's own, built once per process from its environment (KGOT_*,
OPENAI_*, `KGOT_SERVER_OPERATIONS=package.module:mapping`). The one part a client may send is
`settings`, overrides of the recovery policy only (`syntax_error_management`,
`api_error_management`, `error_recovery`), e.g. `{"settings": {"error_recovery":
{"escalate_to_human": true}}}`. The model endpoint, the sandbox backend, the stores and the
data directory stay the operator's choice: a client cannot point the server at another URL
or an unsafe backend.

A run paused for a person (escalate_to_human) is resumed with `Command(resume=fix)`, or
`Command(resume={"__give_up__": true})` to end it not recovered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kgot_errors.errors import ConfigError, SandboxUnavailable
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings, load_settings
from pydantic import GetCoreSchemaHandler, ValidationError
from pydantic_core import CoreSchema, core_schema
from typing_extensions import TypedDict

__all__ = ["CLIENT_SETTINGS", "OPERATIONS_ENV", "ServedContext", "graph", "load_operations", "served_context"]

log = logging.getLogger(__name__)

CLIENT_SETTINGS = ("syntax_error_management", "api_error_management", "error_recovery")
"""The settings groups a run's context may override; everything else is the server's."""
OPERATIONS_ENV = "KGOT_SERVER_OPERATIONS"
"""`package.module:name` of a mapping {operation name: callable} that backoff and refine may re-run."""


class _PolicyOverrides(TypedDict, total=False):
    """Per-run overrides of the recovery policy (fields as in the settings file's groups)."""

    syntax_error_management: dict[str, Any]
    api_error_management: dict[str, Any]
    error_recovery: dict[str, Any]


class _ContextData(TypedDict, total=False):
    """What a client sends as a run's `context`."""

    settings: _PolicyOverrides


@dataclasses.dataclass(frozen=True)
class _Resources:
    """What the server builds once from its environment: base settings, model, sandbox, operations."""

    settings: Settings
    model: Any
    sandbox: Any
    operations: Mapping[str, Callable[..., Any]]


_resources: _Resources | None = None
_resources_lock = threading.Lock()


def _sandbox(settings: Settings) -> Any:
    """The configured backend under the configured limits, or None (the sandbox layer then says why it skipped)."""
    from kgot_errors.sandbox import Limits, get_sandbox, parse_size

    executor = settings.python_executor
    limits = Limits(timeout=executor.default_timeout, memory=parse_size(executor.memory_limit), cpus=executor.cpu_limit)
    options = {"image": executor.container_image} if executor.backend in ("auto", "docker") else {}
    try:
        return get_sandbox(executor.backend, max_concurrent=executor.max_concurrent_containers, limits=limits,
                           **options)
    except SandboxUnavailable as exc:
        log.warning("kgot-errors server runs without a sandbox: %s", exc)
        return None


def load_operations(spec: str | None, *, setting: str = OPERATIONS_ENV) -> Mapping[str, Callable[..., Any]]:
    """The operations mapping `package.module:name` names (name defaults to OPERATIONS); {} for no spec.

    The server reads it from KGOT_SERVER_OPERATIONS, the CLI from `--operations` (defaulting to
    the same variable). A module that cannot be imported, a missing name, or something that is
    not a mapping of callables is a ConfigError naming `setting`.
    """
    if not spec:
        return {}
    module_name, _, attribute = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute or "OPERATIONS")
    except Exception as exc:  # noqa: BLE001 - whatever importing their module raised, it is a setting to fix
        raise ConfigError(f"{setting}={spec!r} cannot be loaded: {type(exc).__name__}: {exc}",
                          setting=setting) from None
    if not isinstance(found, Mapping) or not all(callable(op) for op in found.values()):
        raise ConfigError(f"{setting}={spec!r} must name a mapping of operation names to callables", setting=setting)
    return dict(found)


def _server_resources() -> _Resources:
    """Built on the first run and kept for the process (the environment of a server does not change)."""
    global _resources
    with _resources_lock:
        if _resources is None:
            from kgot_errors.runtime.model import make_model

            settings = load_settings()
            _resources = _Resources(settings=settings, model=make_model(settings), sandbox=_sandbox(settings),
                                    operations=load_operations(os.environ.get(OPERATIONS_ENV)))
        return _resources


def _with_overrides(base: Settings, overrides: Mapping[str, Any]) -> Settings:
    unknown = sorted(set(overrides) - set(CLIENT_SETTINGS))
    if unknown:
        raise ConfigError(f"a run's context may override only {', '.join(CLIENT_SETTINGS)}; not {', '.join(unknown)}",
                          setting=unknown[0])
    update: dict[str, Any] = {}
    for name, values in overrides.items():
        group = getattr(base, name)
        if not isinstance(values, Mapping):
            raise ConfigError(f"context settings.{name} must be an object", setting=name)
        try:
            update[name] = type(group).model_validate({**group.model_dump(), **values})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join([name, *(str(p) for p in first.get("loc", ()))])
            raise ConfigError(f"bad setting {where!r} in the run's context: {first['msg']}", setting=where) from None
    return base.model_copy(update=update)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServedContext(RecoveryContext):
    """The runtime context of a served run: the server's model, sandbox and operations, the client's policy overrides.

    LangGraph coerces the run's JSON context with `ServedContext(**context)`; `settings` then
    holds the client's overrides (a mapping) or nothing, and is replaced by the server's
    settings with those overrides applied. In-process code may pass real objects instead.
    """

    settings: Any = None
    model: Any = None
    sandbox: Any = None

    def __post_init__(self) -> None:
        served = _server_resources()
        settings = self.settings
        if settings is None:
            settings = served.settings
        elif isinstance(settings, Mapping):
            settings = _with_overrides(served.settings, settings)
        elif not isinstance(settings, Settings):
            raise ConfigError(f"context settings must be an object, not {type(settings).__name__}",
                              setting="settings")
        object.__setattr__(self, "settings", settings)
        if self.model is None:
            object.__setattr__(self, "model", served.model)
        if self.sandbox is None:
            object.__setattr__(self, "sandbox", served.sandbox)
        if not self.operations:
            object.__setattr__(self, "operations", served.operations)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """The JSON a client sends (for the server's schema endpoint and Studio's context form)."""
        return core_schema.no_info_after_validator_function(lambda data: cls(**data), handler(_ContextData))


def served_context(**overrides: Any) -> ServedContext:
    """The context a served run gets with `{"settings": overrides}` as its JSON context."""
    return ServedContext(settings=overrides)


_compiled: Any = None
_compiled_lock = threading.Lock()


def _compile() -> Any:
    global _compiled
    with _compiled_lock:
        if _compiled is None:
            from kgot_errors.graph.builder import build_graph
            from kgot_errors.runtime.model import model_identity
            from langgraph.cache.memory import InMemoryCache

            served = _server_resources()
            syntax = served.settings.syntax_error_management
            compiled = build_graph(cache=InMemoryCache())
            cache = compiled.cache.scoped(scope=model_identity(served.model), ttl=syntax.correction_cache_ttl,
                                          enabled=syntax.cache_corrections)
            _compiled = compiled.copy(update={"context_schema": ServedContext, "cache": cache})
        return _compiled


async def graph() -> Any:
    """The graph factory langgraph.json names: the recovery graph with `ServedContext` as its context schema.

    The first call builds the server's resources (settings, model, a sandbox probe) in a worker
    thread, off the server's event loop, and compiles the graph once, with an in-memory cache
    of llm_fix's proven corrections scoped to the server's model. The server adds its own
    checkpointer and store to the graph it gets.
    """
    return _compiled if _compiled is not None else await asyncio.to_thread(_compile)
