"""PostgreSQL checkpoints for recovery traffic: a durable write at every step of many recoveries at once.

`PostgresStore` is LangGraph's `AsyncPostgresSaver` (its tables, its SQL, its serialisation)
over a psycopg pool, with its writes grouped: the writes of every recovery that arrive while a
batch is on the wire go out together in the next one. Each write alone costs a pipeline round
trip and about half a millisecond of client CPU; `bench/bench_scale.py` measures the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

__all__ = ["PostgresStore"]

T = TypeVar("T")

_Statement = tuple[str, list[Any]]
"""An SQL text and its parameter rows."""
_Write = tuple[list[_Statement], "asyncio.Future[None]"]
"""One write block's statements, and the future its caller awaits."""


class _Compiler(PostgresSaver):
    """LangGraph's sync PostgresSaver, compiling its writes to SQL statements instead of running them.

    Its `put`/`put_writes`/`delete_thread` serialise inline (the async saver sends serialisation
    to a worker thread, ~0.2 ms of CPU a hop) and write through `_cursor(pipeline=True)`, which
    here records.
    """

    def __init__(self, serde: Any) -> None:
        super().__init__(conn=None, serde=serde)  # type: ignore[arg-type]
        self._local = threading.local()

    def compile(self, method: Callable[..., T], *args: Any) -> tuple[T, list[_Statement]]:
        self._local.statements = statements = []
        return method(*args), statements

    @contextlib.contextmanager
    def _cursor(self, *, pipeline: bool = False) -> Iterator[Any]:
        if not pipeline:
            raise TypeError("only write blocks are compiled")
        yield self

    def execute(self, sql: str, params: Any = None, **_: Any) -> None:
        self._local.statements.append((sql, [params]))

    def executemany(self, sql: str, rows: Iterable[Any], **_: Any) -> None:
        self._local.statements.append((sql, list(rows)))


class PostgresStore(AsyncPostgresSaver):
    """AsyncPostgresSaver over a psycopg pool, its writes grouped across recoveries.

    Checkpoints, task writes and thread deletions are compiled to SQL by LangGraph's own sync
    saver; one flusher task sends everything compiled while the previous batch was on the wire
    as one pipeline, a single implicit transaction, with the rows of each upsert in one
    `executemany`. A caller returns once its batch is committed, so `durability="sync"` keeps
    its meaning. If a batch fails, its writes are retried one by one and only the failing one
    reports the error. Reads are the library's, on the pool, up to its size at once (its lock
    allows one, which suits only a single connection: langchain-ai/langgraph#7259).
    """

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self.lock = asyncio.Semaphore(pool.max_size)  # type: ignore[assignment]
        self._sql = _Compiler(self.serde)
        self._groupable = {self.UPSERT_CHECKPOINT_BLOBS_SQL, self.UPSERT_CHECKPOINTS_SQL,
                           self.UPSERT_CHECKPOINT_WRITES_SQL, self.INSERT_CHECKPOINT_WRITES_SQL}
        self._queued: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        """Batches sent so far (each one round trip)."""

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        next_config, statements = self._sql.compile(self._sql.put, config, checkpoint, metadata, new_versions)
        await self._submit(statements)
        return next_config

    async def aput_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await self._submit(self._sql.compile(self._sql.put_writes, config, writes, task_id, task_path)[1])

    async def adelete_thread(self, thread_id: str) -> None:
        await self._submit(self._sql.compile(self._sql.delete_thread, thread_id)[1])

    async def _submit(self, statements: list[_Statement]) -> None:
        if not statements:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((statements, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="kgot-checkpoint-writes")
        await done

    async def drain(self) -> None:
        """Wait until every queued write has been sent (callers await their own; this is for closing)."""
        if self._flusher is not None:
            await asyncio.wait({self._flusher})

    async def _flush(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                await self._send_batch(batch)
        except BaseException as exc:  # cancelled: no caller may wait forever
            for _, done in self._queued:
                _settle(done, exc)
            self._queued = []
            raise

    async def _send_batch(self, batch: list[_Write]) -> None:
        try:
            error = await self._attempt([s for statements, _ in batch for s in statements])
            if error is not None and len(batch) > 1:  # nothing was committed: find the write at fault
                for statements, done in batch:
                    _settle(done, await self._attempt(statements))
                return
            for _, done in batch:
                _settle(done, error)
        except BaseException as exc:
            for _, done in batch:
                _settle(done, exc)
            raise

    async def _attempt(self, statements: list[_Statement]) -> Exception | None:
        try:
            await self._send(statements)
        except Exception as exc:  # noqa: BLE001 - it goes to the caller of the write
            return exc
        return None

    async def _send(self, statements: list[_Statement]) -> None:
        self.batches += 1
        if all(sql in self._groupable for sql, _ in statements):
            # Upserts of distinct rows commute, and writes of one batch were concurrent: group them.
            grouped: dict[str, list[Any]] = {}
            for sql, rows in statements:
                grouped.setdefault(sql, []).extend(rows)
            statements = list(grouped.items())
        async with self.conn.connection() as conn, conn.pipeline(), conn.cursor(binary=True) as cur:
            for sql, rows in statements:
                await cur.executemany(sql, rows)


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():  # its caller was cancelled; the write went ahead
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)
