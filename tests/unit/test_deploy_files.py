"""The deployment files load, and every metric they query is one the library exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from kgot_errors.observability.metrics import METRIC_NAMES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_METRIC = re.compile(r"\bkgot_[a-z_]+\b")
_DASHBOARD_MUST_SHOW = {"kgot_error_recovery_rate", "kgot_error_count_total", "kgot_recovery_time_seconds_bucket",
                        "kgot_container_memory_usage", "kgot_integration_health", "kgot_llm_calls_total",
                        "kgot_llm_tokens_total", "kgot_attempts_total"}


def _dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "kgot-errors-dashboard.json").read_text(encoding="utf-8"))


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]


def test_every_dashboard_query_uses_exported_metrics_only():
    used = {m for e in _dashboard_exprs() for m in _METRIC.findall(e)}
    assert used, "the dashboard queries no kgot metric"
    assert used <= METRIC_NAMES, f"not exported: {sorted(used - METRIC_NAMES)}"
    assert _DASHBOARD_MUST_SHOW <= used, f"missing panels for {sorted(_DASHBOARD_MUST_SHOW - used)}"


def test_dashboard_is_well_formed_for_grafana():
    d = _dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"])
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
    assert d["uid"] and d["title"]


def test_prometheus_config_scrapes_the_metrics_server_on_loopback():
    conf = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [j for j in conf["scrape_configs"] if j["job_name"] == "kgot-errors"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["127.0.0.1:9464"]  # the CLI's default port and bind address
    for rules in conf.get("rule_files", []):
        assert (DEPLOY / rules).is_file(), rules


@pytest.mark.parametrize("expr_source", ["alerts"])
def test_alert_rules_use_exported_metrics_and_the_documented_thresholds(expr_source):
    rules = yaml.safe_load((DEPLOY / "kgot-errors-alerts.yml").read_text(encoding="utf-8"))
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    used = {m for e in exprs.values() for m in _METRIC.findall(e)}
    assert used <= METRIC_NAMES, sorted(used - METRIC_NAMES)
    assert exprs["KgotLowRecoveryRate"].replace(" ", "") == "kgot_error_recovery_rate<0.8"
    assert exprs["KgotIntegrationHealthDegraded"].replace(" ", "") == "kgot_integration_health<0.7"
