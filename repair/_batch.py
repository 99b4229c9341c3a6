"""repair_many: repair_json over a stream of texts on every core, results in input order, memory bounded."""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from kgot_errors.repair._api import RepairResult

__all__ = ["Workers", "map_in_order", "repair_many"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

_worker: dict[str, Any] = {}


def _start_worker(fn: Callable[[Any, dict[str, Any]], Any], options: dict[str, Any],
                  warm: Callable[[dict[str, Any]], Any] | None = None) -> None:
    # Ctrl-C reaches the whole process group: the caller stops the pool (and says so); a worker that took it
    # too would only print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _worker.update(fn=fn, options=options)
    if warm is not None:
        warm(options)


def _die_with_parent() -> None:
    """On Linux, SIGKILL for this worker when the process that started it dies: a caller killed (`kill`, SIGKILL, out
    of memory) before it could stop the pool leaves no worker waiting for work forever, holding its pipes open."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the pool's own shutdown is all there is
        return
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(0)


_PR_SET_PDEATHSIG = 1


def _started() -> None:
    """The task each worker is given when the pool starts: it makes the pool start the process now."""


def _run_chunk(items: list[Any]) -> list[Any]:
    fn, options = _worker["fn"], _worker["options"]
    return [fn(item, options) for item in items]


def _one(item: Any, options: dict[str, Any]) -> RepairResult:
    from kgot_errors.repair._api import repair_json

    if isinstance(item, tuple):
        return repair_json(item[0], **{**options, "schema": item[1]})
    return repair_json(item, **options)


def _context() -> Any:
    """fork while this process runs one thread (what it imported is there already; no lock held by another thread
    can be copied half-taken), else forkserver, whose workers start clean, from a process that loaded the engine."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["kgot_errors.repair._batch", "kgot_errors.repair._api"])
    return context


def repair_many(
    texts: Iterable[str],
    schema: Any = None,
    *,
    workers: int | None = None,
    chunk_size: int = 64,
    **options: Any,
) -> Iterator[RepairResult]:
    """`repair_json(text, schema, **options)` for each text, yielded in input order. An item may also be a
    `(text, schema)` pair, whose JSON Schema (a dict or a boolean) replaces `schema` for that text.

    `workers` processes share the work (default: one per core; 1 runs in this process). At most
    two chunks of `chunk_size` texts per worker are in flight, so a stream of any length is
    read as it is consumed and memory stays bounded. A process running other threads (an event
    loop, a notebook kernel) gets workers that start clean (forkserver: a script calling this
    needs the usual `if __name__ == "__main__":` guard then); its threads are never forked. A
    schema given as a pydantic model is turned into its JSON Schema here, once.
    """
    from kgot_errors.repair._schema import load_schema

    return map_in_order(_one, texts, {**options, "schema": load_schema(schema)}, workers=workers,
                        chunk_size=chunk_size)


def map_in_order(fn: Callable[[Any, dict[str, Any]], T], items: Iterable[Any], options: dict[str, Any], *,
                 workers: int | None = None, chunk_size: int = 64) -> Iterator[T]:
    """`fn(item, options)` for each item on `workers` processes, yielded in input order (repair_many's engine:
    `fn` must be a module-level function, `options` picklable; they reach each worker once)."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    return _on_new_workers(fn, items, options, workers, chunk_size)


def _on_new_workers(fn: Callable[[Any, dict[str, Any]], T], items: Iterable[Any], options: dict[str, Any],
                    workers: int, chunk_size: int) -> Iterator[T]:
    with Workers(fn, options, workers) as pool:  # started when the first result is asked for
        yield from pool.map(items, chunk_size)


class Workers:
    """`workers` processes that run `fn(item, options)`, started at once: each runs `warm(options)` (e.g. its
    imports) while the caller still reads its input. `map` is map_in_order on them; `close()`, or the end of a
    `with` block, stops them. One worker is this process: no pool, no warm-up. A worker that dies (killed, out
    of memory) costs speed, not results: what it held, and the rest, is done in this process."""

    def __init__(self, fn: Callable[[Any, dict[str, Any]], T], options: dict[str, Any], workers: int, *,
                 warm: Callable[[dict[str, Any]], Any] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.fn, self.options, self.workers = fn, options, workers
        self.pool = None if workers == 1 else concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=_context(), initializer=_start_worker, initargs=(fn, options, warm))
        for _ in range(workers if self.pool else 0):  # fork (or ask the forkserver) now, not at the first chunk
            _submit(self.pool, _started)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def map(self, items: Iterable[Any], chunk_size: int = 64) -> Iterator[Any]:
        """`fn(item, options)` for each item, yielded in input order, at most two chunks per worker in flight."""
        fn, options, source = self.fn, self.options, iter(items)
        if self.pool is None:
            yield from (fn(item, options) for item in source)
            return
        in_flight: deque[tuple[list[Any], concurrent.futures.Future[list[Any]]]] = deque()
        try:
            while True:
                while len(in_flight) < 2 * self.workers:
                    chunk = list(islice(source, chunk_size))
                    if not chunk:
                        break
                    in_flight.append((chunk, _submit(self.pool, _run_chunk, chunk)))
                if not in_flight:
                    return
                chunk, future = in_flight[0]
                try:
                    done = future.result()
                except BrokenProcessPool:
                    logger.warning("a worker process died: the rest of the batch runs in this process")
                    break
                in_flight.popleft()
                yield from done
        finally:
            for _, future in in_flight:
                future.cancel()
        for chunk, _ in in_flight:
            yield from (fn(item, options) for item in chunk)
        yield from (fn(item, options) for item in source)


def _submit(pool: concurrent.futures.ProcessPoolExecutor, task: Callable[..., Any],
            *args: Any) -> concurrent.futures.Future[Any]:
    """The task's future; a pool broken before the task went out gives a future that failed the same way, so a
    chunk is kept and done in this process like those the dead worker held."""
    try:
        return pool.submit(task, *args)
    except BrokenProcessPool as broken:
        failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
        failed.set_exception(broken)
        return failed
