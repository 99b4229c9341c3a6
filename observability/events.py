"""The per-incident hook: `record_result` logs one line per finished recovery and feeds live listeners (metrics)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kgot_errors.observability.health import RECOVERY_TARGET_S

__all__ = ["add_listener", "record_result", "remove_listener"]

logger = logging.getLogger(__name__)

_listeners: list[Callable[[Any], None]] = []
_lock = threading.Lock()


def add_listener(listener: Callable[[Any], None]) -> None:
    """Call `listener(result)` for every result passed to `record_result` in this process."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def remove_listener(listener: Callable[[Any], None]) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def record_result(result: Any, *, target_s: float = RECOVERY_TARGET_S) -> None:
    """Report one finished recovery (a RecoveryResult): an INFO line, a PERFORMANCE_WARNING when it
    took longer than `target_s`, and every listener called. Costs next to nothing when logging is
    not configured and no listener is registered; a failing listener is logged, never raised."""
    if logger.isEnabledFor(logging.INFO):
        fields = {
            "event": "incident_finished",
            "thread_id": result.thread_id,
            "kind": str(result.kind),
            "outcome": result.outcome,
            "recovered": result.recovered,
            "recovered_by": str(result.recovered_by) if result.recovered_by else None,
            "attempts": len(result.attempts),
            "layers": [f"{a.layer}:{a.verdict}" for a in result.attempts],
            "duration_s": result.duration_s,
            "llm_calls": result.llm_calls,
            "tokens": result.tokens,
        }
        logger.info("recovery %s: %s", result.outcome, result.summary[:300], extra=fields)
    if result.recovered and result.duration_s > target_s and logger.isEnabledFor(logging.WARNING):
        logger.warning("slow error recovery", extra={"event": "slow_recovery", "alert_type": "PERFORMANCE_WARNING",
                                                     "thread_id": result.thread_id, "recovery_time": result.duration_s,
                                                     "target_s": target_s})
    if not _listeners:
        return
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(result)
        except Exception:  # noqa: BLE001 - observers must never break a recovery
            logger.exception("result listener %r failed", listener)
