"""Run by test_default_store.py in a fresh process, with KGOT_DATA_DIR set: the default store in a real process.

    python store_child.py recover N    recover the typical incident N times, print whether the store's
                                       WAL file exists before exiting normally, and the thread ids
    python store_child.py hang         recover an incident whose operation never returns, after printing
                                       "started"; the parent SIGKILLs it mid-call
"""

from __future__ import annotations

import json
import os
import sys
import time

from kgot_errors import recover
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import load_settings
from kgot_errors.testing.typical import ANSWER, SCHEMA, typical_error


def main(mode: str, *args: str) -> None:
    settings = load_settings()
    if mode == "recover":
        ids = [recover(typical_error(), content=ANSWER, schema=SCHEMA, settings=settings).thread_id
               for _ in range(int(args[0]))]
        wal = settings.resolved_data_dir() / "recoveries.sqlite-wal"
        print(json.dumps({"wal_while_open": wal.exists(), "threads": ids}), flush=True)
        return

    def fetch(i: int) -> dict:
        print("calling", flush=True)
        time.sleep(3600)  # until SIGKILL
        return {"i": i}

    async def no_wait(_: float) -> None:
        return None

    ctx = RecoveryContext(settings=settings, operations={"fetch": fetch}, sleep=no_wait, breakers=BreakerStore())
    recover({"error_type": "TimeoutError", "message": "read timed out", "operation": "fetch", "arguments": {"i": 7}},
            thread_id=args[0], runtime_context=ctx)
    os._exit(3)  # never reached: the call hangs


if __name__ == "__main__":
    main(*sys.argv[1:])
