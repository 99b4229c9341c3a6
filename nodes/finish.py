"""finish: writes the RecoveryResult from the attempt records; never repairs anything itself."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.state import RecoveryState, RecoveryUpdate
from kgot_errors.state.result import build_result

__all__ = ["finish", "paused_result"]


def paused_result(state: RecoveryState, thread_id: str | None) -> dict[str, Any]:
    """The result of a thread paused for a person: not recovered (yet), outcome `escalated`."""
    result = build_result(state)
    how = f"kgot-errors resume {thread_id} --value FILE" if thread_id else "resume it with a value"
    result.update(outcome="escalated", summary=f"waiting for a person's fix ({how}): {result['summary']}")
    return result


async def finish(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> RecoveryUpdate:
    """Write the result every caller reads: recovered, value, layer, summary, the attempts."""
    return {"result": build_result(state)}
