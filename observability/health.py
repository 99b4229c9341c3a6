"""The health score in [0, 1] and its alerts (recovery rate below 80 %: warning; health below 0.7: critical).

    score = 0.50 * recovery + 0.20 * speed + 0.15 * breakers + 0.15 * backends

- recovery: recovered / concluded incidents (1 when none has concluded yet);
- speed: the share of recoveries that took at most the 30 s target (1 when none);
- breakers: the mean over this process's circuits of closed 1, half-open 0.5, open 0 (1 when none);
- backends: the share of checked parts that are usable, e.g. the checkpoint store, the sandbox,
  the model (1 when none was checked).

Alerts, as structured log records (`alert_type` in the record, as the original system logs them):
HEALTH_WARNING when the recovery rate is below 80 %, HEALTH_CRITICAL when the score is below 0.7,
PERFORMANCE_WARNING for one recovery slower than the target (see `observability.logs.record_result`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "HEALTH_CRITICAL",
    "Health",
    "HealthMonitor",
    "RATE_WARNING",
    "RECOVERY_TARGET_S",
    "WEIGHTS",
    "health_of",
]

logger = logging.getLogger(__name__)

RECOVERY_TARGET_S = 30.0
"""Time-to-recovery target, seconds (the original system's MTTR goal)."""
RATE_WARNING = 0.80
HEALTH_CRITICAL = 0.70
WEIGHTS: Mapping[str, float] = {"recovery": 0.50, "speed": 0.20, "breakers": 0.15, "backends": 0.15}
_BREAKER_SCORE = {"closed": 1.0, "half_open": 0.5, "open": 0.0}


class Health(BaseModel):
    """The score, its status, the four components it was made of, and the alerts it raises."""

    model_config = ConfigDict(frozen=True)

    score: float = Field(ge=0, le=1)
    status: Literal["ok", "warning", "critical"]
    components: dict[str, float]
    alerts: list[dict[str, Any]] = Field(default_factory=list)
    unavailable: list[str] = Field(default_factory=list)  # the backends checked and found unusable


def health_of(
    *,
    recovery_rate: float | None,
    within_target: float | None,
    breakers: Mapping[str, Mapping[str, Any]] | None = None,
    backends: Mapping[str, bool] | None = None,
) -> Health:
    """The score from its parts (None and empty parts count as healthy: nothing says otherwise)."""
    states = [_BREAKER_SCORE.get(str(b.get("state")), 0.0) for b in (breakers or {}).values()]
    checked = dict(backends or {})
    components = {
        "recovery": 1.0 if recovery_rate is None else float(recovery_rate),
        "speed": 1.0 if within_target is None else float(within_target),
        "breakers": sum(states) / len(states) if states else 1.0,
        "backends": sum(map(bool, checked.values())) / len(checked) if checked else 1.0,
    }
    score = round(sum(WEIGHTS[k] * v for k, v in components.items()), 4)
    alerts: list[dict[str, Any]] = []
    if recovery_rate is not None and recovery_rate < RATE_WARNING:
        alerts.append({"alert_type": "HEALTH_WARNING", "level": "warning", "recovery_rate": round(recovery_rate, 4),
                       "threshold": RATE_WARNING, "message": "low error recovery rate"})
    if score < HEALTH_CRITICAL:
        alerts.append({"alert_type": "HEALTH_CRITICAL", "level": "critical", "health_score": score,
                       "threshold": HEALTH_CRITICAL, "message": "integration health degraded"})
    status = "critical" if score < HEALTH_CRITICAL else "warning" if alerts else "ok"
    return Health(score=score, status=status, components={k: round(v, 4) for k, v in components.items()},
                  alerts=alerts, unavailable=sorted(k for k, ok in checked.items() if not ok))


class HealthMonitor:
    """Logs each alert when it starts and once more when it clears, not on every check.

    Call `check(health)` periodically (the metrics server does, every
    `monitoring.health_check_interval` seconds); returns the alerts that started now.
    """

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logger
        self.active: dict[str, dict[str, Any]] = {}

    def check(self, health: Health) -> list[dict[str, Any]]:
        now = {a["alert_type"]: a for a in health.alerts}
        started = [a for kind, a in now.items() if kind not in self.active]
        for alert in started:
            level = logging.ERROR if alert["level"] == "critical" else logging.WARNING
            fields = {k: v for k, v in alert.items() if k != "message"}
            self.log.log(level, alert["message"], extra={"event": "health_alert", **fields,
                                                         "health_score": health.score})
        for kind in [k for k in self.active if k not in now]:
            self.log.info("health alert cleared", extra={"event": "health_alert_cleared", "alert_type": kind,
                                                         "health_score": health.score})
        self.active = now
        return started
