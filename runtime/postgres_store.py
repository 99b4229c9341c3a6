"""PostgreSQL checkpoints for recovery traffic: a durable write at every step of many recoveries at once.

`PostgresStore` is LangGraph's `AsyncPostgresSaver` (its tables, its SQL, its serialisation)
over a psycopg pool, with its writes grouped: the writes of every recovery that arrive while a
batch is on the wire go out together in the next one. Each write alone costs a pipeline round
trip and about half a millisecond of client CPU; `bench/bench_scale.py` measures the difference.

Every call is bounded (settings.checkpoints): the server ends a statement at
`statement_timeout_seconds`, and the client ends a whole store call there too (a frozen server
cannot end anything); a connection waits at most `pool_timeout_seconds` for the pool. A breaker
(runtime/breaker.py) opens after `breaker_threshold` store calls in a row failed to reach the
server: while it is open every call fails at once, and one probe call per
`breaker_reset_seconds` finds out whether the server is back. Every failure is a
CheckpointError naming the store and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from kgot_errors.errors import CheckpointError
from kgot_errors.runtime.breaker import CircuitBreaker
from kgot_errors.runtime.settings import CheckpointSettings

__all__ = ["PostgresStore", "StoreGuard", "first_line"]

SETTING = "checkpoint_url (KGOT_CHECKPOINT_URL, --checkpoint)"


def first_line(exc: BaseException) -> str:
    """An error's first line (psycopg's carry the server's detail below), or its type when it says nothing."""
    text = str(exc).strip()
    if isinstance(exc, TimeoutError) and not text:
        return "no answer in time"
    return text.splitlines()[0] if text else type(exc).__name__


def _unreachable(exc: BaseException) -> bool:
    """The server did not answer (down, frozen, unreachable, out of connections): what the breaker counts."""
    import psycopg
    from psycopg_pool import PoolTimeout

    return isinstance(exc, TimeoutError | PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError)


class StoreGuard:
    """Deadline, breaker and error mapping around every call of one PostgreSQL store."""

    def __init__(self, where: str, limits: CheckpointSettings) -> None:
        self.where = where
        self.deadline_s = limits.statement_timeout_seconds + limits.pool_timeout_seconds
        self.breaker = CircuitBreaker(f"checkpoints {where}", threshold=limits.breaker_threshold,
                                      reset_seconds=limits.breaker_reset_seconds)
        self.abandoned: set[asyncio.Future[Any]] = set()
        """Calls cut off at their deadline, still cleaning up."""

    def admit(self) -> Any:
        """A breaker ticket for one call, or CheckpointError at once while the breaker is open."""
        ticket = self.breaker.try_acquire()
        if ticket is None:
            snap = self.breaker.snapshot()
            raise CheckpointError(
                f"PostgreSQL checkpoint store {self.where} is down: {snap['consecutive_failures']} store calls in a "
                f"row failed, so calls fail at once for another {max(snap['retry_in_s'], 0.1):.1f} s; start or "
                f"unfreeze the server, or set {SETTING} to another store, then resume the unfinished threads",
                setting=SETTING, target=self.where)
        return ticket

    def failure(self, exc: BaseException) -> CheckpointError:
        if isinstance(exc, CheckpointError):
            return exc
        if isinstance(exc, TimeoutError):
            what = f"no answer within {self.deadline_s:g} s (the server is frozen, overloaded or unreachable)"
        else:
            what = f"{type(exc).__name__}: {first_line(exc)}"
        todo = ("check that the server is up and reachable" if _unreachable(exc)
                else "this write was refused; report it with the thread id")
        return CheckpointError(f"PostgreSQL checkpoint store {self.where}: {what}; {todo}, or set {SETTING} to "
                               "another store", setting=SETTING, target=self.where)

    async def run(self, call: Callable[[], Any], *, calls: int = 1) -> Any:
        """`await call()` within the deadline, through the breaker; any failure raised as a CheckpointError.

        A call past its deadline is abandoned, not awaited: psycopg answers a cancellation by asking
        the server to cancel the query, which a frozen server never acknowledges (psycopg gives up
        after 10 s). The abandoned call is cancelled and cleans up in the background.
        """
        ticket = self.admit()
        failed: bool | None = None
        task = asyncio.ensure_future(call())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.deadline_s)
            if not done:
                task.cancel()
                self.abandoned.add(task)
                task.add_done_callback(self._forget)
                raise TimeoutError(f"no answer within {self.deadline_s:g} s")
            out = task.result()
            failed = False
            return out
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as exc:
            failed = _unreachable(exc)
            raise self.failure(exc) from exc
        finally:
            self.breaker.settle(ticket, failed=failed, calls=calls)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self.abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an abandoned call's error was already reported as a timeout

T = TypeVar("T")

_DONE: Any = object()

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

    def _dump_blobs(self, thread_id: str, checkpoint_ns: str, values: dict[str, Any], versions: Any) -> Any:
        from kgot_errors.runtime.serde import compact_values

        return super()._dump_blobs(thread_id, checkpoint_ns, compact_values(values, versions), versions)

    def get_next_version(self, current: Any, channel: Any = None) -> str:
        from kgot_errors.runtime.serde import short_version

        return short_version(current)

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

    def __init__(self, pool: Any, *, limits: CheckpointSettings | None = None, where: str = "PostgreSQL") -> None:
        from kgot_errors.runtime.serde import checkpoint_serde

        super().__init__(pool, serde=checkpoint_serde())
        self.lock = asyncio.Semaphore(max(1, pool.max_size - 1))  # type: ignore[assignment]
        self._sql = _Compiler(self.serde)
        self.guard = StoreGuard(where, limits or CheckpointSettings())
        self.writer = _GroupedWriter(pool, [self.UPSERT_CHECKPOINT_BLOBS_SQL, self.UPSERT_CHECKPOINTS_SQL,
                                            self.UPSERT_CHECKPOINT_WRITES_SQL, self.INSERT_CHECKPOINT_WRITES_SQL],
                                     self.guard)
        """Shared by copies (LangGraph copies a saver to give it another serializer)."""

    def get_next_version(self, current: Any, channel: Any = None) -> str:
        from kgot_errors.runtime.serde import short_version

        return short_version(current)

    def _load_blobs(self, blob_values: Any) -> dict[str, Any]:
        """Channel values as the graph wrote them, from their stored form (runtime/serde.py `compact_values`)."""
        from kgot_errors.runtime.serde import expand_values

        return expand_values(super()._load_blobs(blob_values))

    async def aget_tuple(self, config: Any) -> Any:
        return await self.guard.run(lambda: super(PostgresStore, self).aget_tuple(config))

    async def alist(self, config: Any, *, filter: dict[str, Any] | None = None, before: Any = None,
                    limit: int | None = None) -> Any:
        listing = super().alist(config, filter=filter, before=before, limit=limit)
        try:
            while (item := await self.guard.run(lambda: anext(listing, _DONE))) is not _DONE:
                yield item
        finally:
            with contextlib.suppress(Exception):
                await listing.aclose()

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

    def __init__(self, pool: Any, upserts: list[str], guard: StoreGuard) -> None:
        self.pool = pool
        self.upserts = upserts
        self.guard = guard
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
                error = await self._attempt([s for statements, _ in batch for s in statements], len(batch))
                if error is not None and len(batch) > 1 and not _unreachable(error.__cause__ or error):
                    # nothing was committed and the server answered: find the write at fault
                    for statements, done in batch:
                        _settle(done, await self._attempt(statements))
                else:
                    for _, done in batch:
                        _settle(done, error)
        except BaseException as exc:  # stopped (loop shutting down): every waiting caller must hear of it
            # as an error: a caller that looked cancelled would let LangGraph drop the write silently
            stopped = CheckpointError(f"PostgreSQL checkpoint store {self.guard.where}: the writer stopped before "
                                      "this write was committed; resume the thread", setting=SETTING,
                                      target=self.guard.where)
            stopped.__cause__ = exc
            for _, done in batch + self.queued:
                _settle(done, stopped)
            self.queued = []
            raise

    async def _attempt(self, statements: list[_Statement], calls: int = 1) -> Exception | None:
        try:
            await self.guard.run(lambda: self._send(statements), calls=calls)
        except CheckpointError as exc:  # it goes to the caller of the write
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
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError) or conn.broken:
                    await conn.close()  # cut off mid-batch (the deadline): the server rolls back what it got
                else:
                    try:
                        async with asyncio.timeout(self.guard.deadline_s):
                            await conn.rollback()  # whatever of it was sent is undone
                    except BaseException:
                        await conn.close()
                        raise
                raise


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():  # its caller was cancelled; the write went ahead
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)
