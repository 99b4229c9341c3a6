"""Run by test_workers.py as one of several worker processes sharing one PostgreSQL store.

    python worker_child.py URL WORKER RECOVERABLE PROSE

Recovers RECOVERABLE broken-JSON incidents (parser_fix repairs them) and PROSE refusals (no layer
can), all through one store connection, and prints [{"thread_id", "outcome"}] as JSON. Settings come
from the environment (the test sets KGOT_ESCALATE_TO_HUMAN=true for one worker only).
"""

from __future__ import annotations

import json
import sys

from kgot_errors import recover_many


def main(url: str, worker: str, recoverable: int, prose: int) -> None:
    incidents = [{"error_type": "json.decoder.JSONDecodeError", "message": "Expecting property name",
                  "content": f"{{'worker': '{worker}', 'i': {i}, 'ok': True,}}"} for i in range(recoverable)]
    incidents += [{"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value",
                   "content": f"Sorry, worker {worker} cannot answer request {i}."} for i in range(prose)]
    results = recover_many(incidents, max_concurrency=5, checkpointer=url)
    print(json.dumps([{"thread_id": r.thread_id, "outcome": r.outcome} for r in results]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
