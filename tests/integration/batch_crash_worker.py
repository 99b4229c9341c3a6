"""Subprocess for test_bounds_batches.py: a batch whose thread ids are logged as incidents start.

    python batch_crash_worker.py STORE EVENTS N

Recovers N incidents (concurrency 4) that each re-run the operation `step`; appends
`start <index> <thread>` to EVENTS as each incident starts and `done <index> <thread> <outcome>`
as each ends (flushed and fsynced). `step` blocks for good on the incident with index N // 2 (once
six incidents have ended), so the parent can SIGKILL the batch mid-way.
"""

from __future__ import annotations

import os
import sys
import time

from kgot_errors import recover_many
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import load_settings


def main(store: str, events: str, n: str) -> None:
    def log(line: str) -> None:
        with open(events, "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def step(i: int) -> dict:
        if i == int(n) // 2:
            time.sleep(3600)  # until SIGKILL
        time.sleep(0.05)
        return {"i": i}

    async def no_wait(_: float) -> None:
        return None

    ctx = RecoveryContext(settings=load_settings(environ={}), operations={"step": step}, sleep=no_wait,
                          breakers=BreakerStore())
    batch = [{"error_type": "TimeoutError", "message": "t", "operation": "step", "arguments": {"i": i}}
             for i in range(int(n))]
    recover_many(batch, max_concurrency=4, checkpointer=store, runtime_context=ctx,
                 on_start=lambda i, tid: log(f"start {i} {tid}"),
                 on_result=lambda i, r: log(f"done {i} {r.thread_id} {r.outcome}"))


if __name__ == "__main__":
    main(*sys.argv[1:])
