"""The Python entry points: recover/arecover an incident, resume a thread, read its history."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from kgot_errors.errors import (CheckpointError, ConfigError, InvalidIncident, KgotError, ThreadNotFound,
                                ThreadNotPaused, UnknownOperation)
from kgot_errors.runtime.checkpoint import HeldWrites, describe_target, open_checkpointer, shared_checkpointer
from kgot_errors.runtime.context import LazySandbox, RecoveryContext
from kgot_errors.runtime.model import make_model, model_identity
from kgot_errors.runtime.settings import Settings, load_settings
from kgot_errors.state import Attempt, ErrorKind, Incident, RecoveryResult

__all__ = [
    "DEFAULT",
    "ahistory",
    "apending",
    "arecover",
    "arecover_iter",
    "arecover_many",
    "aresume",
    "history",
    "pending",
    "recover",
    "recover_iter",
    "recover_many",
    "resume",
    "run_sync",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT: Any = "default"
"""`checkpointer=DEFAULT`: the settings' store (KGOT_CHECKPOINT_URL, else SQLite under the data dir)."""

_compiled: Any = None
_views: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
"""(store id, cache scope) -> (store, compiled graph): the copies runs share (a copy costs a tenth of a recovery)."""
_VIEWS = 16
_views_lock = threading.Lock()


def _graph(checkpointer: Any, ctx: RecoveryContext | None = None) -> Any:
    """The process's compiled graph, with this run's checkpointer and its view of the correction cache.

    One in-memory cache of proven llm_fix corrections serves every recovery in the process;
    each run sees it scoped to its model, with its settings' TTL (or not at all when
    `cache_corrections` is off).
    """
    global _compiled
    if _compiled is None:
        from langgraph.cache.memory import InMemoryCache

        from kgot_errors.graph.builder import build_graph

        _compiled = build_graph(cache=InMemoryCache())
    scope = None
    if ctx is not None:
        syntax = ctx.settings.syntax_error_management
        scope = (model_identity(ctx.model), syntax.correction_cache_ttl, syntax.cache_corrections)
    if checkpointer is None and scope is None:
        return _compiled
    key = (id(checkpointer), scope)
    with _views_lock:
        hit = _views.get(key)
        if hit is not None and hit[0] is checkpointer:
            _views.move_to_end(key)
            return hit[1]
    update: dict[str, Any] = {} if checkpointer is None else {"checkpointer": checkpointer}
    if scope is not None:
        update["cache"] = _compiled.cache.scoped(scope=scope[0], ttl=scope[1], enabled=scope[2])
    view = _compiled.copy(update=update)
    with _views_lock:  # the store is held with its graph, so its id is not reused while cached
        _views[key] = (checkpointer, view)
        if len(_views) > _VIEWS:
            _views.popitem(last=False)
    return view


_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def _sync_loop() -> asyncio.AbstractEventLoop:
    """The one event loop, in a daemon thread, behind every sync call in the process.

    A fresh loop per call (asyncio.run) breaks clients that pool connections across calls:
    langchain-openai shares one httpx client between ChatOpenAI instances, and its pooled
    connections die with the loop that opened them ("Event loop is closed" on the next call).
    """
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            _loop_thread = threading.Thread(target=_loop.run_forever, name="kgot-recover-loop", daemon=True)
            _loop_thread.start()
        return _loop


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also inside a running loop (Jupyter)."""
    loop = _sync_loop()
    if threading.current_thread() is _loop_thread:  # called from code running on that loop: it cannot wait on itself
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgot-recover") as pool:
            return pool.submit(asyncio.run, factory()).result()
    future = asyncio.run_coroutine_threadsafe(factory(), loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # e.g. KeyboardInterrupt: do not leave the recovery running unseen
        raise


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
    if error_or_incident is None:  # no exception: the content (and schema) are the evidence
        return Incident.parse(extra)
    raise InvalidIncident(
        f"recover() takes an exception, an Incident, a mapping or None, not {type(error_or_incident).__name__}")


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


def _open(checkpointer: Any, settings: Settings) -> Any:
    """The store to use, under the settings' limits: the default one stays open for the process (opening
    and closing a SQLite store per call cost a third of a recovery); one passed in is opened for this call."""
    target = _store(checkpointer, settings)
    if checkpointer is DEFAULT:
        return shared_checkpointer(target, settings.checkpoints)
    return open_checkpointer(target, settings.checkpoints)


async def arecover(
    error_or_incident: BaseException | Incident | Mapping[str, Any] | None,
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
    ctx = _runtime(settings, model, sandbox, operations, runtime_context)
    incident = _checked(_incident(error_or_incident, content, schema, context, incident_fields), ctx)
    refused = _too_large(incident, ctx)
    if refused is not None:
        return refused
    async with _open(checkpointer, ctx.settings) as saver:
        _needs_store_for_escalation(ctx, saver)
        result = await _run(_graph(saver, ctx), incident, thread_id, ctx, saver)
    from kgot_errors.integration.typed import typed

    return typed(result, schema)


def _runtime(settings: Settings | None, model: Any, sandbox: Any, operations: Mapping[str, Any] | None,
             runtime_context: RecoveryContext | None) -> RecoveryContext:
    """The run's context; settings and the model come from the environment only when not given."""
    if runtime_context is not None:
        return runtime_context
    settings = settings or load_settings()
    if model is None:
        model = make_model(settings)
    if sandbox is None:
        sandbox = LazySandbox(settings)  # built on first use: JSON-only recoveries never probe a backend
    elif sandbox is False:
        sandbox = None  # explicitly no sandbox: code incidents record `skipped`
    return _context(settings, model, sandbox, operations, None)


def _too_large(incident: Incident, ctx: RecoveryContext) -> RecoveryResult | None:
    """The result for content over max_content_chars (None when it is within): no layer, no thread, nothing stored."""
    return RecoveryResult.refused_as_too_large(incident.content, ctx.settings.syntax_error_management.max_content_chars)


def _checked(incident: Incident, ctx: RecoveryContext) -> Incident:
    if incident.operation and incident.operation not in ctx.operations:
        raise UnknownOperation(incident.operation, list(ctx.operations))
    return incident


def _needs_store_for_escalation(ctx: RecoveryContext, saver: Any) -> None:
    if ctx.settings.error_recovery.escalate_to_human and saver is None:
        raise ConfigError("escalate_to_human pauses threads, which needs a checkpoint store (checkpointer=None "
                          "given)", setting="error_recovery.escalate_to_human")


async def _run(graph: Any, incident: Incident, thread_id: str | None, ctx: RecoveryContext,
               saver: Any, *, fresh: bool = False) -> RecoveryResult:
    """One recovery on thread `thread_id` (a new one when None); `fresh`: the id was made for this run."""
    fresh = fresh or thread_id is None
    tid = thread_id or (uuid.uuid4().hex if saver is not None else None)

    async def detached() -> dict[str, Any]:
        # Called from inside another LangGraph run (a tool, a node), the ambient config would make this
        # recovery a hidden subgraph writing into the caller's store: run it as its own thread instead.
        from langchain_core.runnables.config import var_child_runnable_config

        from kgot_errors.graph.builder import DETERMINISTIC_LAYERS

        var_child_runnable_config.set(None)  # this task's copy of the context only
        start, config = {"incident": incident.to_data()}, _config(tid)
        if saver is None:
            return await graph.ainvoke(start, config, context=ctx)
        # The deterministic layers are written once, when they end: they are cheap and give the same answer when
        # re-run, so a crash among them loses nothing. From the first layer whose work must not be lost or
        # repeated (a model call, an operation, the sandbox, a person) every finished step is written before the
        # next starts. A thread the caller named may already hold steps: then everything is written.
        if not fresh:
            return await graph.ainvoke(start, config, context=ctx, **_durability(saver))
        held = HeldWrites(saver, frozenset(DETERMINISTIC_LAYERS))
        try:
            return await graph.copy(update={"checkpointer": held}).ainvoke(start, config, context=ctx,
                                                                         **_durability(saver))
        except BaseException:
            await held.flush()  # a failed or cancelled run keeps its finished steps
            raise

    out = await asyncio.ensure_future(detached())
    result = await _outcome(graph, out, tid)
    _record(result)
    return result


def _record(result: RecoveryResult) -> None:
    """The per-incident log line and live metrics (observability), once per finished run."""
    from kgot_errors.observability.events import record_result

    record_result(result)


async def _outcome(graph: Any, out: dict[str, Any], thread_id: str | None) -> RecoveryResult:
    """The result, or for a thread paused for a person, an `escalated` result built from its state."""
    if "result" in out:
        return RecoveryResult.from_data(out["result"], thread_id=thread_id)
    from kgot_errors.nodes.finish import paused_result

    snapshot = await graph.aget_state(_config(thread_id))
    return RecoveryResult.from_data(paused_result(snapshot.values, thread_id), thread_id=thread_id)


def recover(
    error_or_incident: BaseException | Incident | Mapping[str, Any] | None,
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
    status and Retry-After are captured), an `Incident`, a mapping of Incident fields, or
    None when there is no exception (`recover(None, content=text, schema=S)`): what kind of
    content it is then comes from the content and schema alone.
    `content` is the failing output or code, `schema` a JSON Schema dict or pydantic model
    the repaired value must fit. Each recovery is a checkpointed thread (`thread_id` in the
    result): `checkpointer` is a SQLite path, a `postgresql://` URL, "memory", a
    BaseCheckpointSaver, or None for no checkpoints; by default the settings' store, which
    stays open for the process (closed at exit). The deterministic layers are written once,
    when they end; every step from the first layer that calls out (model, operation,
    sandbox, person) is written before the next starts.

    Returns a RecoveryResult; failing to recover is a result (`recovered=False`), not an
    exception. Raises InvalidIncident/InvalidSchema for malformed input, UnknownOperation,
    CheckpointError, ConfigError.
    """
    return run_sync(lambda: arecover(error_or_incident, content=content, schema=schema, context=context,
                                     thread_id=thread_id, checkpointer=checkpointer, settings=settings, **kwargs))


_NO_VALUE: Any = object()


async def aresume(
    thread_id: str,
    *,
    value: Any = _NO_VALUE,
    checkpointer: Any = DEFAULT,
    settings: Settings | None = None,
    model: Any = None,
    sandbox: Any = None,
    operations: Mapping[str, Callable[..., Any]] | None = None,
    runtime_context: RecoveryContext | None = None,
) -> RecoveryResult:
    """Continue a checkpointed thread from its last finished step (a finished one just reports).

    A thread paused for a person (escalate_to_human) needs `value`: the fix, validated like any
    candidate (None gives up: over HTTP, resume with {"__give_up__": true}). A rejected fix
    leaves the thread paused, with the reason.
    """
    ctx = _runtime(settings, model, sandbox, operations, runtime_context)
    store = _store(checkpointer, ctx.settings)
    async with _open(checkpointer, ctx.settings) as saver:
        graph = _graph(saver, ctx)
        snapshot = await _snapshot(graph, thread_id, store)
        if snapshot.next:  # it will run: its operation must be there to re-run, as at the start
            _checked(Incident.parse(snapshot.values["incident"]), ctx)
        config = _config(thread_id)
        if value is not _NO_VALUE:
            if not snapshot.interrupts:
                raise ThreadNotPaused(thread_id)
            from langgraph.types import Command

            from kgot_errors.nodes.human import GIVE_UP

            out = await graph.ainvoke(Command(resume=GIVE_UP if value is None else value), config, context=ctx,
                                      **_durability(saver))
        elif snapshot.interrupts or ("result" in snapshot.values and not snapshot.next):
            # paused (nothing runs without an answer) or finished: report, do not count it again
            return await _outcome(graph, {k: v for k, v in snapshot.values.items() if k == "result"}, thread_id)
        else:
            out = await graph.ainvoke(None, config, context=ctx, **_durability(saver))
        result = await _outcome(graph, out, thread_id)
        _record(result)
        return result


async def arecover_many(
    incidents: Iterable[BaseException | Incident | Mapping[str, Any]],
    *,
    max_concurrency: int = 10,
    on_result: Callable[[int, RecoveryResult], None] | None = None,
    **options: Any,
) -> list[RecoveryResult]:
    """Recover many incidents at once: at most `max_concurrency` in flight, results in input order.

    One open store serves them all (PostgreSQL: one pool, the writes of concurrent recoveries
    grouped). An incident that cannot even start (malformed, unknown operation) or that breaks
    a layer gets a result saying so (outcome `invalid` or `error`); it never cancels the others.
    `on_result(index, result)` is called as each one finishes. `options` are `arecover_iter`'s
    (`on_start(index, thread_id)` among them). For a stream too long to keep every result, use
    `arecover_iter`.
    """
    items = list(incidents)
    results: list[RecoveryResult | None] = [None] * len(items)
    async with contextlib.aclosing(arecover_iter(items, max_concurrency=max_concurrency, **options)) as stream:
        async for index, result in stream:  # closed at once if on_result raises: nothing left running
            results[index] = result
            if on_result is not None:
                on_result(index, result)
    return [r for r in results if r is not None]


_END: Any = object()


async def arecover_iter(
    incidents: Iterable[BaseException | Incident | Mapping[str, Any]],
    *,
    max_concurrency: int = 10,
    checkpointer: Any = DEFAULT,
    settings: Settings | None = None,
    model: Any = None,
    sandbox: Any = None,
    operations: Mapping[str, Callable[..., Any]] | None = None,
    runtime_context: RecoveryContext | None = None,
    on_start: Callable[[int, str | None], None] | None = None,
) -> AsyncIterator[tuple[int, RecoveryResult]]:
    """Recover a stream of incidents, yielding `(index, result)` as each one finishes (completion order).

    The input is read lazily, `max_concurrency` at a time, and nothing is kept once a result is
    yielded: memory stays flat however long the stream (each result stays in the store under its
    `thread_id`). A consumer that falls behind pauses the recoveries; one that stops early cancels
    those still running (their finished steps are checkpointed: `resume` them). Failures are
    results, as in `arecover_many`; an exception raised by the input iterable itself ends the
    stream with that exception.

    Every incident's thread id is fixed before its recovery starts and handed to
    `on_start(index, thread_id)` (None without a store) before anything is written, so after a
    crash the caller knows which incidents had started: `resume_unfinished()` finishes those,
    and an index that never got an `on_start` never started. Every result carries its thread id,
    `error` and `invalid` results included, whenever a thread was started (an incident refused
    before its recovery started has none).
    """
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    ctx = _runtime(settings, model, sandbox, operations, runtime_context)
    pending = iter(enumerate(incidents))  # shared by the workers: each incident is taken once
    finished: asyncio.Queue[Any] = asyncio.Queue(maxsize=max_concurrency)
    async with contextlib.AsyncExitStack() as opened:
        try:
            saver = await opened.enter_async_context(_open(checkpointer, ctx.settings))
        except CheckpointError as exc:  # the store is down: every incident hears why, none is started
            for index, _ in pending:
                yield index, _failed_to_start("error", exc)
            return
        _needs_store_for_escalation(ctx, saver)
        graph = _graph(saver, ctx)

        async def worker() -> None:
            for index, item in pending:
                await finished.put((index, await _one(graph, index, item, ctx, saver, on_start)))

        async def run_all() -> None:
            # every worker ends (after the input fails, the others find it exhausted) before the stream does
            outcomes = await asyncio.gather(*(worker() for _ in range(max_concurrency)), return_exceptions=True)
            await finished.put(_END)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

        runner = asyncio.create_task(run_all(), name="kgot-recover-workers")
        try:
            while (item := await finished.get()) is not _END:
                yield item
            await runner  # the input's own exception, if it raised one
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


async def _one(graph: Any, index: int, item: Any, ctx: RecoveryContext, saver: Any,
               on_start: Callable[[int, str | None], None] | None = None) -> RecoveryResult:
    """One incident of a batch; whatever goes wrong becomes its result (with its thread id once it has one)."""
    try:
        incident = _checked(_incident(item, None, None, None, {}), ctx)
    except KgotError as exc:
        return _failed_to_start("invalid", exc)
    except Exception as exc:  # noqa: BLE001 - one broken incident must not sink the batch
        logger.exception("incident %d could not be read", index)
        return _failed_to_start("error", exc)
    refused = _too_large(incident, ctx)
    if refused is not None:
        return refused
    tid = uuid.uuid4().hex if saver is not None else None
    if on_start is not None:
        on_start(index, tid)  # before anything is written; if it raises, the batch stops (like on_result)
    try:
        return await _run(graph, incident, tid, ctx, saver, fresh=True)
    except CheckpointError as exc:  # the store failed it (down, full, read-only): what to do is in the message
        return _failed_to_start("error", exc, tid)
    except KgotError as exc:
        return _failed_to_start("invalid", exc, tid)
    except Exception as exc:  # noqa: BLE001 - one broken incident must not sink the batch
        logger.exception("recovery of incident %d failed", index)
        return _failed_to_start("error", exc, tid)


def _failed_to_start(outcome: str, exc: BaseException, thread_id: str | None = None) -> RecoveryResult:
    if isinstance(exc, CheckpointError):
        what = "checkpoint store failed"
    else:
        what = "invalid incident" if outcome == "invalid" else f"internal error ({type(exc).__name__})"
    return RecoveryResult(recovered=False, kind=ErrorKind.UNKNOWN, outcome=outcome, summary=f"{what}: {exc}",
                          attempts=[], thread_id=thread_id)


async def apending(*, checkpointer: Any = DEFAULT, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Threads paused for a person, with what they ask: [{thread_id, kind, summary, rejected}]."""
    settings = settings or load_settings()
    async with _open(checkpointer, settings) as saver:
        if saver is None:
            return []
        graph = _graph(saver)
        threads: dict[str, None] = {}  # the saver's listing holds its lock: read it whole first
        async for checkpoint in saver.alist(None):
            threads.setdefault(checkpoint.config["configurable"]["thread_id"])
        paused: list[dict[str, Any]] = []
        for tid in threads:
            snapshot = await graph.aget_state(_config(tid))
            if snapshot.interrupts:
                request = snapshot.interrupts[0].value
                paused.append({"thread_id": tid, "kind": request.get("kind"), "summary": request.get("summary"),
                               "rejected": request.get("rejected")})
        return paused


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
    async with _open(checkpointer, settings) as saver:
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


def recover_many(incidents: Iterable[Any], **kwargs: Any) -> list[RecoveryResult]:
    """Sync twin of `arecover_many`."""
    return run_sync(lambda: arecover_many(incidents, **kwargs))


async def _collect(stream: AsyncIterator[T]) -> list[T]:
    return [item async for item in stream]


def recover_iter(incidents: Iterable[Any], **kwargs: Any) -> Iterator[tuple[int, RecoveryResult]]:
    """Sync twin of `arecover_iter`: a generator of `(index, result)` in completion order."""
    if threading.current_thread() is _loop_thread:
        # called from code running on the recovery loop, where each run_sync is a separate loop (see there):
        # a stream cannot live across them, so it runs whole in one
        yield from run_sync(lambda: _collect(arecover_iter(incidents, **kwargs)))
        return
    stream = arecover_iter(incidents, **kwargs)

    async def step() -> Any:
        return await anext(stream, _END)

    async def close() -> None:
        await stream.aclose()

    try:
        while (item := run_sync(step)) is not _END:
            yield item
    finally:
        run_sync(close)


def pending(**kwargs: Any) -> list[dict[str, Any]]:
    """Sync twin of `apending`."""
    return run_sync(lambda: apending(**kwargs))


def resume(thread_id: str, **kwargs: Any) -> RecoveryResult:
    """Sync twin of `aresume`."""
    return run_sync(lambda: aresume(thread_id, **kwargs))


def history(thread_id: str, **kwargs: Any) -> dict[str, Any]:
    """Sync twin of `ahistory`."""
    return run_sync(lambda: ahistory(thread_id, **kwargs))
