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
from kgot_errors.runtime.settings import ApiSettings, RecoverySettings, Settings, SyntaxSettings, load_settings
from kgot_errors.state import AttemptRecord, Incident, RecoveryResult
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, GetCoreSchemaHandler, TypeAdapter, ValidationError
from pydantic_core import CoreSchema, core_schema
from typing_extensions import TypedDict

__all__ = [
    "CLIENT_SETTINGS",
    "DESCRIPTION",
    "OPERATIONS_ENV",
    "OUTPUT_KEYS",
    "PolicyOverrides",
    "RunContext",
    "ServedContext",
    "ServedGraph",
    "ServedInput",
    "ServedOutput",
    "graph",
    "load_operations",
    "served_context",
]

log = logging.getLogger(__name__)

CLIENT_SETTINGS = ("syntax_error_management", "api_error_management", "error_recovery")
"""The settings groups a run's context may override; everything else is the server's."""
OPERATIONS_ENV = "KGOT_SERVER_OPERATIONS"
"""`package.module:name` of a mapping {operation name: callable} that backoff and refine may re-run."""


def _overrides(group: type[BaseModel], name: str, doc: str) -> Any:
    """A TypedDict of every field of a settings group, none required: what a run may override, typed."""
    fields = {field: info.annotation for field, info in group.model_fields.items()}
    overrides = TypedDict(name, fields, total=False)  # type: ignore[operator]
    overrides.__doc__ = doc
    overrides.__module__ = __name__
    return overrides


SyntaxOverrides = _overrides(SyntaxSettings, "SyntaxOverrides", "Per-run overrides of syntax_error_management "
                             "(unicode_fix, parser_fix, llm_fix).")
ApiOverrides = _overrides(ApiSettings, "ApiOverrides", "Per-run overrides of api_error_management (backoff).")
RecoveryOverrides = _overrides(RecoverySettings, "RecoveryOverrides", "Per-run overrides of error_recovery "
                               "(refine, vote, escalation to a person).")


class PolicyOverrides(TypedDict, total=False):
    """Per-run overrides of the recovery policy: only these groups, only the fields given."""

    syntax_error_management: SyntaxOverrides  # type: ignore[valid-type]
    api_error_management: ApiOverrides  # type: ignore[valid-type]
    error_recovery: RecoveryOverrides  # type: ignore[valid-type]


class RunContext(TypedDict, total=False):
    """What a client may send as a run's `context`: overrides of the recovery policy, nothing else."""

    settings: PolicyOverrides


class ServedInput(TypedDict):
    """A run's input: `{"incident": {...}}` of Incident fields (all optional: content alone is an incident)."""

    incident: Incident


class ServedOutput(TypedDict, total=False):
    """A run's output: `result` once it has finished, and the attempts so far (each layer's stream update)."""

    result: RecoveryResult
    attempts: list[AttemptRecord]
    kind: str
    classified_by: str


OUTPUT_KEYS = ("result", "attempts", "kind", "classified_by")
"""The state keys a served run outputs and streams: `stream_mode="updates"` shows each layer's attempts."""
DESCRIPTION = ("Layered recovery of an LLM agent's failure: broken JSON or code, flaky operations. Input "
               "{\"incident\": {error_type, message, content, output_schema, operation, ...}}; output the "
               "RecoveryResult under \"result\" and every layer's attempts. Paused runs resume with "
               "Command(resume=fix) or {\"__give_up__\": true}.")
"""The assistant's description (langgraph.json carries the same text)."""


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
        return core_schema.no_info_after_validator_function(lambda data: cls(**data), handler(RunContext))


def served_context(**overrides: Any) -> ServedContext:
    """The context a served run gets with `{"settings": overrides}` as its JSON context."""
    return ServedContext(settings=overrides)


class ServedGraph(CompiledStateGraph):
    """The recovery graph as served: its input checked at the door, typed schemas, attempts in the output.

    A run's input is validated as an Incident before any layer runs, so a malformed field
    (a `status_code` of 42, say) fails the run with InvalidIncident naming the field (not a
    KeyError from inside a layer). The input, output and context schemas the server publishes (Studio's
    forms, the SDKs' `assistants.get_schemas`) are ServedInput, ServedOutput and RunContext.
    """

    @staticmethod
    def _checked(input: Any) -> Any:
        if isinstance(input, Mapping) and "incident" in input:
            return {**input, "incident": Incident.parse(input["incident"]).to_data()}
        if isinstance(input, Mapping):
            from kgot_errors.errors import InvalidIncident

            raise InvalidIncident("a run's input is {\"incident\": {...}} (Incident fields: content, output_schema, "
                                  "error_type, message, ...)",
                                  field="incident")
        return input  # None or a Command (resume)

    async def astream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        async for item in super().astream(self._checked(input), config, **kwargs):
            yield item

    def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        yield from super().stream(self._checked(input), config, **kwargs)

    def get_input_jsonschema(self, config: Any = None) -> dict[str, Any]:
        return _schema(ServedInput, "kgot-errors input")

    def get_output_jsonschema(self, config: Any = None) -> dict[str, Any]:
        return _schema(ServedOutput, "kgot-errors output")

    def get_context_jsonschema(self) -> dict[str, Any]:  # type: ignore[override]
        return _schema(RunContext, "kgot-errors context")


def _schema(typ: Any, title: str) -> dict[str, Any]:
    schema = TypeAdapter(typ).json_schema()
    schema["title"] = title
    return schema


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
            attrs = {k: v for k, v in compiled.__dict__.items() if k != "__orig_class__"}
            _compiled = ServedGraph(**{**attrs, "context_schema": ServedContext, "cache": cache,
                                       "output_channels": list(OUTPUT_KEYS)})
        return _compiled


async def graph() -> Any:
    """The graph factory langgraph.json names: the recovery graph with `ServedContext` as its context schema.

    The first call builds the server's resources (settings, model, a sandbox probe) in a worker
    thread, off the server's event loop, and compiles the graph once, with an in-memory cache
    of llm_fix's proven corrections scoped to the server's model. The server adds its own
    checkpointer and store to the graph it gets.
    """
    return _compiled if _compiled is not None else await asyncio.to_thread(_compile)
