"""The Python entry points: recover/arecover an incident, resume a thread, read its history."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from kgot_errors.errors import InvalidIncident, ThreadNotFound, UnknownOperation
from kgot_errors.runtime.checkpoint import describe_target, open_checkpointer
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings, load_settings
from kgot_errors.state import Attempt, Incident, RecoveryResult

__all__ = ["DEFAULT", "arecover", "ahistory", "aresume", "history", "recover", "resume", "run_sync"]

T = TypeVar("T")

DEFAULT: Any = "default"
"""`checkpointer=DEFAULT`: the settings' store (KGOT_CHECKPOINT_URL, else SQLite under the data dir)."""

_compiled: Any = None


def _graph(checkpointer: Any) -> Any:
    global _compiled
    if _compiled is None:
        from kgot_errors.graph.builder import build_graph

        _compiled = build_graph()
    return _compiled if checkpointer is None else _compiled.copy(update={"checkpointer": checkpointer})


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also inside a running loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgot-recover") as pool:
        return pool.submit(asyncio.run, factory()).result()


def _incident(error_or_incident: Any, content: Any, schema: Any, context: str | None,
              fields: Mapping[str, Any]) -> Incident:
    extra = {k: v for k, v in fields.items() if v is not None}
    if content is not None:
        extra["content"] = content
    if schema is not None:
        extra["output_schema"] = schema
    if context:
        extra["context"] = context
    if isinstance(error_or_incident, BaseException):
        return Incident.from_exception(error_or_incident, **extra)
    if isinstance(error_or_incident, Incident):
        return Incident.parse({**error_or_incident.model_dump(), **extra}) if extra else error_or_incident
    if isinstance(error_or_incident, Mapping):
        return Incident.parse({**error_or_incident, **extra})
    raise InvalidIncident(
        f"recover() takes an exception, an Incident or a mapping, not {type(error_or_incident).__name__}")


def _context(settings: Settings, model: Any, sandbox: Any, operations: Mapping[str, Any] | None,
             context_obj: RecoveryContext | None) -> RecoveryContext:
    if context_obj is not None:
        return context_obj
    return RecoveryContext(settings=settings, model=model, sandbox=sandbox, operations=dict(operations or {}))


def _config(thread_id: str | None) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}} if thread_id else {}


def _durability(saver: Any) -> dict[str, Any]:
    """Every finished step is written before the next starts (a crash loses nothing done)."""
    return {"durability": "sync"} if saver is not None else {}


def _store(checkpointer: Any, settings: Settings) -> Any:
    return settings.checkpoint_target() if checkpointer is DEFAULT else checkpointer


async def arecover(
    error_or_incident: BaseException | Incident | Mapping[str, Any],
    *,
    content: str | bytes | None = None,
    schema: Any = None,
    context: str = "",
    thread_id: str | None = None,
    checkpointer: Any = DEFAULT,
    settings: Settings | None = None,
    model: Any = None,
    sandbox: Any = None,
    operations: Mapping[str, Callable[..., Any]] | None = None,
    runtime_context: RecoveryContext | None = None,
    **incident_fields: Any,
) -> RecoveryResult:
    """Recover one failure through the layered graph; see `recover`."""
    settings = settings or (runtime_context.settings if runtime_context else load_settings())
    incident = _incident(error_or_incident, content, schema, context, incident_fields)
    ctx = _context(settings, model, sandbox, operations, runtime_context)
    if incident.operation and incident.operation not in ctx.operations:
        raise UnknownOperation(incident.operation, list(ctx.operations))
    store = _store(checkpointer, settings)
    async with open_checkpointer(store) as saver:
        tid = thread_id or (uuid.uuid4().hex if saver is not None else None)
        out = await _graph(saver).ainvoke({"incident": incident.to_data()}, _config(tid), context=ctx,
                                          **_durability(saver))
    return RecoveryResult.from_data(out["result"], thread_id=tid)


def recover(
    error_or_incident: BaseException | Incident | Mapping[str, Any],
    *,
    content: str | bytes | None = None,
    schema: Any = None,
    context: str = "",
    thread_id: str | None = None,
    checkpointer: Any = DEFAULT,
    settings: Settings | None = None,
    **kwargs: Any,
) -> RecoveryResult:
    """Recover one failure: escalate through the layers until a validator proves a fix.

    `error_or_incident` is the exception you caught (its type, message, traceback, HTTP
    status and Retry-After are captured), an `Incident`, or a mapping of Incident fields.
    `content` is the failing output or code, `schema` a JSON Schema dict or pydantic model
    the repaired value must fit. Each recovery is a checkpointed thread (`thread_id` in the
    result): `checkpointer` is a SQLite path, a `postgresql://` URL, "memory", a
    BaseCheckpointSaver, or None for no checkpoints; by default the settings' store.

    Returns a RecoveryResult; failing to recover is a result (`recovered=False`), not an
    exception. Raises InvalidIncident/InvalidSchema for malformed input, UnknownOperation,
    CheckpointError, ConfigError.
    """
    return run_sync(lambda: arecover(error_or_incident, content=content, schema=schema, context=context,
                                     thread_id=thread_id, checkpointer=checkpointer, settings=settings, **kwargs))


async def aresume(
    thread_id: str,
    *,
    checkpointer: Any = DEFAULT,
    settings: Settings | None = None,
    model: Any = None,
    sandbox: Any = None,
    operations: Mapping[str, Callable[..., Any]] | None = None,
    runtime_context: RecoveryContext | None = None,
) -> RecoveryResult:
    """Continue a checkpointed thread from its last finished step (a no-op for a finished one)."""
    settings = settings or (runtime_context.settings if runtime_context else load_settings())
    ctx = _context(settings, model, sandbox, operations, runtime_context)
    store = _store(checkpointer, settings)
    async with open_checkpointer(store) as saver:
        graph = _graph(saver)
        snapshot = await _snapshot(graph, thread_id, store)
        values = snapshot.values
        if "result" not in values or snapshot.next:
            values = await graph.ainvoke(None, _config(thread_id), context=ctx, **_durability(saver))
    return RecoveryResult.from_data(values["result"], thread_id=thread_id)


async def _snapshot(graph: Any, thread_id: str, store: Any) -> Any:
    if graph.checkpointer is None:
        raise ThreadNotFound(thread_id, "no checkpoint store")
    snapshot = await graph.aget_state(_config(thread_id))
    if not snapshot.values:
        raise ThreadNotFound(thread_id, describe_target(store))
    return snapshot


async def ahistory(thread_id: str, *, checkpointer: Any = DEFAULT, settings: Settings | None = None) -> dict[str, Any]:
    """A thread's recorded state: incident, kind, attempts so far, next layer(s), and the result if finished."""
    settings = settings or load_settings()
    store = _store(checkpointer, settings)
    async with open_checkpointer(store) as saver:
        snapshot = await _snapshot(_graph(saver), thread_id, store)
    values = snapshot.values
    return {
        "thread_id": thread_id,
        "kind": values.get("kind"),
        "classified_by": values.get("classified_by"),
        "incident": values.get("incident"),
        "attempts": [Attempt.model_validate(a) for a in values.get("attempts", [])],
        "next": list(snapshot.next),
        "finished": not snapshot.next and "result" in values,
        "result": RecoveryResult.from_data(values["result"], thread_id=thread_id) if "result" in values else None,
    }


def resume(thread_id: str, **kwargs: Any) -> RecoveryResult:
    """Sync twin of `aresume`."""
    return run_sync(lambda: aresume(thread_id, **kwargs))


def history(thread_id: str, **kwargs: Any) -> dict[str, Any]:
    """Sync twin of `ahistory`."""
    return run_sync(lambda: ahistory(thread_id, **kwargs))
