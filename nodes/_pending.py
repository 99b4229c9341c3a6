"""The honest placeholder for a layer this build cannot run: it records `skipped` and says what is missing."""

from __future__ import annotations

from kgot_errors.nodes._base import attempt
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.state import Layer, RecoveryState, RecoveryUpdate, Verdict

__all__ = ["NO_MODEL", "skip"]

NO_MODEL = "no chat model configured (set KGOT_MODEL with OPENAI_API_KEY or OPENAI_BASE_URL, or pass model=)"


def skip(layer: Layer, state: RecoveryState, ctx: RecoveryContext, reason: str) -> RecoveryUpdate:
    now = ctx.clock()
    return {"attempts": [attempt(layer, state, Verdict.SKIPPED, reason, started=now, now=now)]}
