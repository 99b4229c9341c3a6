"""Subprocess for test_bounds_at_most_once.py and bench/bench_at_most_once.py: a recovery whose operation
appends its idempotency key to a log, started (and maybe killed mid-call) or resumed.

    python at_most_once_worker.py start  STORE THREAD LOG FAILS HOLD [POLICY]
    python at_most_once_worker.py resume STORE THREAD LOG FAILS HOLD [POLICY]

The operation `charge` appends `<key> <pid>` to LOG (flushed and fsynced: the side effect), fails
transiently while LOG holds fewer than FAILS lines, then sleeps HOLD seconds before returning
(HOLD < 0: it blocks for good once it has written, for the parent's SIGKILL). Waits are not slept.
Prints the RecoveryResult as JSON when the recovery ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from kgot_errors import arecover, aresume
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import load_settings


def main(mode: str, store: str, thread_id: str, log: str, fails: str, hold: str, policy: str = "rerun") -> None:
    def charge(amount: int, idempotency_key: str) -> dict:
        with open(log, "a") as fh:
            fh.write(f"{idempotency_key} {os.getpid()}\n")
            fh.flush()
            os.fsync(fh.fileno())
        with open(log) as fh:
            written = sum(1 for _ in fh)
        if written <= int(fails):
            raise TimeoutError(f"upstream timed out (call {written})")
        if float(hold) < 0:
            time.sleep(3600)
        time.sleep(float(hold))
        return {"charged": amount, "key": idempotency_key}

    async def no_wait(_: float) -> None:
        return None

    settings = load_settings(environ={}, api_error_management={"on_outcome_unknown": policy, "max_retries": 10})
    ctx = RecoveryContext(settings=settings, operations={"charge": charge}, sleep=no_wait, breakers=BreakerStore())
    incident = {"error_type": "TimeoutError", "message": "the first charge timed out", "operation": "charge",
                "arguments": {"amount": 5}}
    if mode == "start":
        result = asyncio.run(arecover(incident, thread_id=thread_id, checkpointer=store, runtime_context=ctx))
    else:
        result = asyncio.run(aresume(thread_id, checkpointer=store, runtime_context=ctx))
    print(json.dumps(result.to_data()))


if __name__ == "__main__":
    main(*sys.argv[1:])
