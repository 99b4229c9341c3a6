"""Observability: statistics from the checkpoint store, health, Prometheus metrics, JSON logs, tracing, doctor.

    from kgot_errors.observability import configure_logging, get_statistics, register_store_metrics
    configure_logging(log_dir="logs/kgot")            # JSON lines; nothing is configured at import
    stats = get_statistics(checkpointer="recoveries.sqlite")
    stats.recovery_rate, stats.time_to_recovery.p95, stats.health.score

Names load lazily: importing this package imports neither prometheus_client nor langsmith.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kgot_errors import _lazy_exports

_EXPORTS: dict[str, str] = {
    "Statistics": "kgot_errors.observability.statistics",
    "get_statistics": "kgot_errors.observability.statistics",
    "aget_statistics": "kgot_errors.observability.statistics",
    "get_comprehensive_statistics": "kgot_errors.observability.statistics",
    "aget_comprehensive_statistics": "kgot_errors.observability.statistics",
    "Health": "kgot_errors.observability.health",
    "HealthMonitor": "kgot_errors.observability.health",
    "configure_logging": "kgot_errors.observability.logs",
    "record_result": "kgot_errors.observability.events",
    "register_store_metrics": "kgot_errors.observability.metrics",
    "LiveMetrics": "kgot_errors.observability.metrics",
    "serve_metrics": "kgot_errors.observability.metrics",
    "layer_node": "kgot_errors.observability.tracing",
    "doctor": "kgot_errors.observability._doctor",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from kgot_errors.observability._doctor import doctor
    from kgot_errors.observability.events import record_result
    from kgot_errors.observability.health import Health, HealthMonitor
    from kgot_errors.observability.logs import configure_logging
    from kgot_errors.observability.metrics import LiveMetrics, register_store_metrics, serve_metrics
    from kgot_errors.observability.statistics import (
        Statistics,
        aget_comprehensive_statistics,
        aget_statistics,
        get_comprehensive_statistics,
        get_statistics,
    )
    from kgot_errors.observability.tracing import layer_node


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())
