"""Tracing: each layer's run carries the incident id, kind, verdict and attempt as metadata (LangSmith or any tracer).

LangGraph already traces the compiled graph as the root run and every node as a child run named
after it. What the tracer cannot know when a node's run starts is how it ended: `layer_node`
wraps a node so that, when it returns, the run's metadata gets

    layer, incident_id (the thread id), kind, verdict, attempt (the try number), reason (cut to 200 chars)

from the Attempt record it wrote. It writes to the run objects of every tracer on the node's
callback manager (LangSmith's LangChainTracer, a RunCollectorCallbackHandler, any BaseTracer),
before they send the run's end, so the metadata travels with the run's final update. With
tracing off the node's callbacks hold no tracer, and the wrapper returns at once.

Turn LangSmith on as usual: `LANGSMITH_TRACING=true` with `LANGSMITH_API_KEY` (and
`LANGSMITH_ENDPOINT` for a self-hosted server), or per call with
`langsmith.tracing_context(enabled=True, client=Client(...))`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["RunRecorder", "layer_metadata", "layer_node", "trace_in_process"]

_REASON_CHARS = 200


def layer_metadata(layer: str, state: Mapping[str, Any], update: Mapping[str, Any] | None,
                   thread_id: str | None) -> dict[str, Any]:
    """The metadata of one layer run, from the state it read and the update it returned."""
    update = update if isinstance(update, Mapping) else {}
    meta: dict[str, Any] = {"layer": layer, "incident_id": thread_id,
                            "kind": update.get("kind") or state.get("kind")}
    attempts = update.get("attempts") or ()
    if attempts:
        last = attempts[-1]
        meta.update(verdict=str(last["verdict"]), attempt=last["try_no"], reason=str(last["reason"])[:_REASON_CHARS])
        if last.get("llm_calls"):
            meta.update(llm_calls=last["llm_calls"], tokens=last.get("tokens", 0))
    elif "classified_by" in update:
        meta["classified_by"] = update["classified_by"]
    return meta


def _tracer_runs(manager: Any) -> list[Any]:
    """The run objects the node's tracers keep for it (the manager's parent run is the node's own run)."""
    handlers = getattr(manager, "handlers", None)
    run_id = getattr(manager, "parent_run_id", None)
    if not handlers or run_id is None:
        return []
    runs = []
    for handler in handlers:
        run_map = getattr(handler, "run_map", None)
        run = run_map.get(str(run_id)) if isinstance(run_map, dict) else None
        if run is not None:
            runs.append(run)
    return runs


def annotate_current_run(layer: str, state: Mapping[str, Any], update: Any) -> None:
    """Add `layer_metadata` to the current node's traced runs; a no-op outside a traced LangGraph node."""
    from langgraph.config import get_config

    try:
        config = get_config()
    except RuntimeError:  # not inside a runnable
        return
    runs = _tracer_runs(config.get("callbacks"))
    if not runs:
        return
    thread_id = (config.get("configurable") or {}).get("thread_id")
    meta = layer_metadata(layer, state, update, thread_id)
    for run in runs:
        run.extra.setdefault("metadata", {}).update(meta)


def layer_node(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a layer node (async or sync) so its traced run carries `layer_metadata`; same name and signature."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def node(state: Any, *args: Any, **kwargs: Any) -> Any:
            update = await fn(state, *args, **kwargs)
            annotate_current_run(fn.__name__, state, update)
            return update

        return node

    @functools.wraps(fn)
    def sync_node(state: Any, *args: Any, **kwargs: Any) -> Any:
        update = fn(state, *args, **kwargs)
        annotate_current_run(fn.__name__, state, update)
        return update

    return sync_node


_in_process: contextvars.ContextVar[Any] = contextvars.ContextVar("kgot_in_process_tracer", default=None)
_hooked = False
_hook_lock = threading.Lock()


def _recorder_class() -> type:
    from langchain_core.tracers.base import BaseTracer

    class _RunRecorder(BaseTracer):
        """Keeps every finished run (root and children) in memory, in the order they ended."""

        name = "kgot_run_recorder"

        def __init__(self) -> None:
            super().__init__()
            self.runs: list[Any] = []
            self._lock = threading.Lock()

        def _persist_run(self, run: Any) -> None:
            pass

        def _end(self, run: Any) -> None:
            with self._lock:
                self.runs.append(run)

        _on_chain_end = _on_chain_error = _on_llm_end = _on_llm_error = _on_tool_end = _on_tool_error = _end

        def roots(self) -> list[Any]:
            return [r for r in self.runs if r.parent_run_id is None]

        def children(self, run_id: Any) -> list[Any]:
            """Direct children of `run_id`, in the order they started."""
            return sorted((r for r in self.runs if r.parent_run_id == run_id), key=lambda r: r.dotted_order)

    return _RunRecorder


def RunRecorder() -> Any:  # noqa: N802 - a factory: langchain-core is imported only when tracing is used
    """An in-process tracer (a langchain-core BaseTracer) that keeps every run; see `trace_in_process`."""
    return _recorder_class()()


@contextlib.contextmanager
def trace_in_process() -> Iterator[Any]:
    """Trace every graph run inside the block to an in-process RunRecorder (nothing is sent anywhere).

        with trace_in_process() as tracer:
            recover(...)
        root = tracer.roots()[0]; [r.name for r in tracer.children(root.id)]
    """
    global _hooked
    from langchain_core.tracers.context import register_configure_hook

    with _hook_lock:
        if not _hooked:
            register_configure_hook(_in_process, inheritable=True)
            _hooked = True
    tracer = RunRecorder()
    token = _in_process.set(tracer)
    try:
        yield tracer
    finally:
        _in_process.reset(token)
