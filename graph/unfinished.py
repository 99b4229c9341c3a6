"""After a crash: find the threads a store holds that did not finish, and resume them all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kgot_errors.errors import CheckpointError, KgotError
from kgot_errors.graph.recover import DEFAULT
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings, load_settings
from kgot_errors.state import RecoveryResult

__all__ = ["aresume_unfinished", "aunfinished", "resume_unfinished", "unfinished"]

logger = logging.getLogger(__name__)


async def _unfinished(graph: Any, saver: Any) -> list[str]:
    """Threads with a next step and no pause for a person, oldest first."""
    threads: dict[str, None] = {}
    async for checkpoint in saver.alist(None):  # read the listing whole first: it may hold the store's lock
        threads.setdefault(checkpoint.config["configurable"]["thread_id"])
    found = []
    for tid in reversed(list(threads)):  # the listing is newest first
        snapshot = await graph.aget_state({"configurable": {"thread_id": tid}})
        if snapshot.next and not snapshot.interrupts:
            found.append(tid)
    return found


async def aunfinished(*, checkpointer: Any = DEFAULT, settings: Settings | None = None) -> list[str]:
    """The ids of the threads in the store that a crash (or a stopped batch) left unfinished.

    Threads paused for a person are not among them (see `pending`); finished ones neither.
    """
    from kgot_errors.graph.recover import _graph, _open

    settings = settings or load_settings()
    async with _open(checkpointer, settings) as saver:
        if saver is None:
            return []
        return await _unfinished(_graph(saver), saver)


async def aresume_unfinished(
    *,
    checkpointer: Any = DEFAULT,
    settings: Settings | None = None,
    model: Any = None,
    sandbox: Any = None,
    operations: Mapping[str, Callable[..., Any]] | None = None,
    runtime_context: RecoveryContext | None = None,
    max_concurrency: int = 10,
    on_result: Callable[[str, RecoveryResult], None] | None = None,
) -> dict[str, RecoveryResult]:
    """Resume every unfinished thread in the store (at most `max_concurrency` at once): `{thread_id: result}`.

    For operators after a crash: each thread continues from its last finished step, as `resume`
    does (an operation call that was in flight is reported outcome-unknown, see backoff). A
    thread that cannot be resumed (its operation is not registered, the store fails) gets a result
    saying why (outcome `invalid` or `error`, with its thread id); it never stops the others.
    `on_result(thread_id, result)` is called as each one ends. Pass the operations the threads
    re-run, as for `resume`.
    """
    from kgot_errors.graph.recover import _failed_to_start, _open, _runtime, aresume

    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    ctx = _runtime(settings, model, sandbox, operations, runtime_context)
    results: dict[str, RecoveryResult] = {}
    async with _open(checkpointer, ctx.settings) as saver:
        if saver is None:
            return results
        from kgot_errors.graph.recover import _graph

        todo = await _unfinished(_graph(saver, ctx), saver)
        gate = asyncio.Semaphore(max_concurrency)

        async def one(tid: str) -> None:
            async with gate:
                try:
                    result = await aresume(tid, checkpointer=saver, runtime_context=ctx)
                except CheckpointError as exc:
                    result = _failed_to_start("error", exc, tid)
                except KgotError as exc:
                    result = _failed_to_start("invalid", exc, tid)
                except Exception as exc:  # noqa: BLE001 - one broken thread must not stop the others
                    logger.exception("resuming thread %s failed", tid)
                    result = _failed_to_start("error", exc, tid)
            results[tid] = result
            if on_result is not None:
                on_result(tid, result)

        await asyncio.gather(*(one(tid) for tid in todo))
    return {tid: results[tid] for tid in todo}


def unfinished(**kwargs: Any) -> list[str]:
    """Sync twin of `aunfinished`."""
    from kgot_errors.graph.recover import run_sync

    return run_sync(lambda: aunfinished(**kwargs))


def resume_unfinished(**kwargs: Any) -> dict[str, RecoveryResult]:
    """Sync twin of `aresume_unfinished`."""
    from kgot_errors.graph.recover import run_sync

    return run_sync(lambda: aresume_unfinished(**kwargs))
