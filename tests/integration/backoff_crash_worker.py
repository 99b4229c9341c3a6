"""Subprocess for test_backoff_crash.py: start a recovery that blocks in its wait before try 3, or resume it.

    python backoff_crash_worker.py start  STORE THREAD URL SIGNAL   # blocks forever once try 2 is checkpointed
    python backoff_crash_worker.py resume STORE THREAD URL -        # prints the RecoveryResult as JSON

`start` writes SIGNAL (the waits slept so far, as JSON) from inside the injected sleep of
try 3, i.e. after try 2's step was written with durability="sync", then blocks until the
parent kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys

import httpx

from kgot_errors import arecover, aresume
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings


async def fetch(url: str) -> dict:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()


async def main(mode: str, store: str, thread_id: str, url: str, signal: str) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if mode == "start" and len(waits) == 3:  # the wait before try 3: tries 1 and 2 are checkpointed
            with open(signal + ".tmp", "w") as fh:
                json.dump({"waits": waits[:2], "pid": os.getpid()}, fh)
            os.replace(signal + ".tmp", signal)
            await asyncio.Event().wait()  # until SIGKILL

    context = RecoveryContext(settings=Settings(), operations={"fetch": fetch}, sleep=sleep,
                              rng=random.Random(), breakers=BreakerStore())
    if mode == "start":
        try:
            await fetch(url)
        except httpx.HTTPStatusError as exc:
            await arecover(exc, operation="fetch", arguments={"url": url}, thread_id=thread_id,
                           checkpointer=store, runtime_context=context)
        raise SystemExit("the recovery finished; it should have blocked before try 3")
    result = await aresume(thread_id, checkpointer=store, runtime_context=context)
    print(json.dumps({"result": result.to_data(), "waits": waits}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
