"""The health score's formula, its thresholds, and alerts logged once when they start and once when they clear."""

from __future__ import annotations

import logging

import pytest

from kgot_errors.observability.health import HEALTH_CRITICAL, RATE_WARNING, HealthMonitor, health_of
from kgot_errors.observability.statistics import Tally, _percentile

CLOSED, HALF, OPEN = {"state": "closed"}, {"state": "half_open"}, {"state": "open"}


@pytest.mark.parametrize(("rate", "within", "breakers", "backends", "score", "status", "alerts"), [
    (None, None, {}, {}, 1.0, "ok", []),                                   # nothing known: healthy
    (1.0, 1.0, {"a": CLOSED}, {"store": True}, 1.0, "ok", []),
    (0.8, 1.0, {}, {}, 0.9, "ok", []),                                     # exactly 80 %: no warning
    (0.79, 1.0, {}, {}, 0.895, "warning", ["HEALTH_WARNING"]),
    (1.0, 0.5, {}, {}, 0.9, "ok", []),                                     # half the recoveries too slow
    (1.0, 1.0, {"a": OPEN, "b": HALF}, {}, 0.8875, "ok", []),              # breakers (0 + 0.5) / 2
    (1.0, 1.0, {}, {"store": True, "sandbox": False}, 0.925, "ok", []),
    (0.4, 1.0, {}, {}, 0.7, "warning", ["HEALTH_WARNING"]),               # exactly 0.7: not critical
    (0.38, 1.0, {}, {}, 0.69, "critical", ["HEALTH_WARNING", "HEALTH_CRITICAL"]),
    (1.0, 0.0, {"a": OPEN}, {"sandbox": False, "model": False}, 0.5, "critical", ["HEALTH_CRITICAL"]),
    (0.0, None, {}, {}, 0.5, "critical", ["HEALTH_WARNING", "HEALTH_CRITICAL"]),
])
def test_score_is_the_documented_weighted_sum(rate, within, breakers, backends, score, status, alerts):
    h = health_of(recovery_rate=rate, within_target=within, breakers=breakers, backends=backends)
    assert h.score == score
    assert h.status == status
    assert [a["alert_type"] for a in h.alerts] == alerts
    assert 0.0 <= h.score <= 1.0


def test_thresholds_are_the_original_systems():
    assert (RATE_WARNING, HEALTH_CRITICAL) == (0.8, 0.7)


def test_unavailable_backends_are_named():
    h = health_of(recovery_rate=1.0, within_target=1.0, backends={"sandbox": False, "store": True, "model": False})
    assert h.unavailable == ["model", "sandbox"]


def test_monitor_logs_each_alert_once_when_it_starts_and_when_it_clears(caplog):
    log = logging.getLogger("test.health")
    monitor = HealthMonitor(log)
    bad = health_of(recovery_rate=0.3, within_target=1.0)
    with caplog.at_level(logging.INFO, logger="test.health"):
        assert [a["alert_type"] for a in monitor.check(bad)] == ["HEALTH_WARNING", "HEALTH_CRITICAL"]
        assert monitor.check(bad) == []  # still bad: nothing new
        monitor.check(health_of(recovery_rate=0.95, within_target=1.0))
    records = [(r.levelname, getattr(r, "alert_type", None), getattr(r, "event", None)) for r in caplog.records]
    assert records == [
        ("WARNING", "HEALTH_WARNING", "health_alert"),
        ("ERROR", "HEALTH_CRITICAL", "health_alert"),
        ("INFO", "HEALTH_WARNING", "health_alert_cleared"),
        ("INFO", "HEALTH_CRITICAL", "health_alert_cleared"),
    ]
    assert caplog.records[0].recovery_rate == 0.3 and caplog.records[1].health_score == bad.score


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None), ([3.0], 95, 3.0), ([1.0, 2.0], 50, 1.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
    ([float(i) for i in range(1, 101)], 95, 95.0), ([float(i) for i in range(1, 21)], 95, 19.0),
])
def test_percentiles_are_nearest_rank(values, q, expected):
    assert _percentile(values, q) == expected


def test_a_tally_of_results_gives_rate_and_times():
    tally = Tally()
    for duration, ok in ((0.5, True), (40.0, True), (0.1, False), (2.0, True)):
        tally.add_result({"recovered": ok, "kind": "syntax", "outcome": "recovered" if ok else "not_recovered",
                          "recovered_by": "parser_fix" if ok else None, "attempts": [], "duration_s": duration})
    s = tally.statistics(store="t")
    assert (s.incidents, s.recovered, s.recovery_rate) == (4, 3, 0.75)
    assert (s.time_to_recovery.p50, s.time_to_recovery.max, s.time_to_recovery.over_target) == (2.0, 40.0, 1)
    assert s.health.components["speed"] == round(2 / 3, 4)
