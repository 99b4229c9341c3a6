"""Run by test_crash_resume.py in a fresh process: start a recovery, stop after one layer, die by SIGKILL.

    python crash_child.py STORE THREAD_ID LAYER INCIDENT_JSON
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from kgot_errors import build_graph
from kgot_errors.runtime.checkpoint import open_checkpointer
from kgot_errors.runtime.context import RecoveryContext


async def main(store: str, thread_id: str, layer: str, incident: dict) -> None:
    async with open_checkpointer(store) as saver:
        graph = build_graph(saver)
        await graph.ainvoke({"incident": incident}, {"configurable": {"thread_id": thread_id}},
                            context=RecoveryContext(), interrupt_after=[layer], durability="sync")
        print("stopped after", layer, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # die hard, with the store still open


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
