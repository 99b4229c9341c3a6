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
    saver and handed to a `_GroupedWriter`. A caller returns once its write is committed, so
    `durability="sync"` keeps its meaning. Reads are the library's, on the pool, all but one
    connection at once (its lock allows one, which suits only a single connection:
    langchain-ai/langgraph#7259).
    """

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self.lock = asyncio.Semaphore(max(1, pool.max_size - 1))  # type: ignore[assignment]
        self._sql = _Compiler(self.serde)
        self.writer = _GroupedWriter(pool, [self.UPSERT_CHECKPOINT_BLOBS_SQL, self.UPSERT_CHECKPOINTS_SQL,
                                            self.UPSERT_CHECKPOINT_WRITES_SQL, self.INSERT_CHECKPOINT_WRITES_SQL])
        """Shared by copies (LangGraph copies a saver to give it another serializer)."""

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        next_config, statements = self._sql.compile(self._sql.put, config, checkpoint, metadata, new_versions)
        await self.writer.submit(statements)
        return next_config

    async def aput_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await self.writer.submit(self._sql.compile(self._sql.put_writes, config, writes, task_id, task_path)[1])

    async def adelete_thread(self, thread_id: str) -> None:
        await self.writer.submit(self._sql.compile(self._sql.delete_thread, thread_id)[1])


class _GroupedWriter:
    """Sends the writes of concurrent callers together: one pipeline, one transaction per round trip.

    One flusher task sends everything queued while the previous batch was on the wire. Upserts
    are grouped, one `executemany` per statement, in a fixed order (blobs before the checkpoints
    that refer to them). If a batch fails, nothing of it is committed and its writes are retried
    one by one, so only the failing one reports the error.
    """

    def __init__(self, pool: Any, upserts: list[str]) -> None:
        self.pool = pool
        self.upserts = upserts
        self.queued: list[_Write] = []
        self.flusher: asyncio.Task[None] | None = None
        self.batches = 0
        """Batches sent so far (each one round trip)."""

    async def submit(self, statements: list[_Statement]) -> None:
        if not statements:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queued.append((statements, done))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush(), name="kgot-checkpoint-writes")
        await done

    async def drain(self) -> None:
        """Wait until every queued write has been sent (callers await their own; this is for closing)."""
        if self.flusher is not None:
            await asyncio.wait({self.flusher})

    async def _flush(self) -> None:
        batch: list[_Write] = []
        try:
            while self.queued:
                batch, self.queued = self.queued, []
                error = await self._attempt([s for statements, _ in batch for s in statements])
                if error is not None and len(batch) > 1:  # nothing was committed: find the write at fault
                    for statements, done in batch:
                        _settle(done, await self._attempt(statements))
                else:
                    for _, done in batch:
                        _settle(done, error)
        except BaseException as exc:  # stopped (loop shutting down): every waiting caller must hear of it
            # as an error: a caller that looked cancelled would let LangGraph drop the write silently
            stopped = RuntimeError("the checkpoint writer stopped before this write was committed")
            stopped.__cause__ = exc
            for _, done in batch + self.queued:
                _settle(done, stopped)
            self.queued = []
            raise

    async def _attempt(self, statements: list[_Statement]) -> Exception | None:
        try:
            await self._send(statements)
        except Exception as exc:  # noqa: BLE001 - it goes to the caller of the write
            return exc
        return None

    async def _send(self, statements: list[_Statement]) -> None:
        self.batches += 1
        if all(sql in self.upserts for sql, _ in statements):
            # Upserts of distinct rows commute, and the writes of one batch were concurrent: group them.
            grouped: dict[str, list[Any]] = {sql: [] for sql in self.upserts}
            for sql, rows in statements:
                grouped[sql].extend(rows)
            statements = [(sql, rows) for sql, rows in grouped.items() if rows]
        # One transaction, begun and committed inside the pipeline (psycopg's transaction() block costs a
        # round trip and ~1 ms of CPU more): without it, a pipeline on an autocommit connection commits what
        # it sent before an error raised on this side (a value psycopg cannot adapt).
        async with self.pool.connection() as conn:
            try:
                async with conn.pipeline(), conn.cursor(binary=True) as cur:
                    await cur.execute("BEGIN")
                    for sql, rows in statements:
                        await cur.executemany(sql, rows)
                    await cur.execute("COMMIT")
            except BaseException:
                await conn.rollback()  # whatever of it was sent is undone
                raise


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():  # its caller was cancelled; the write went ahead
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)
