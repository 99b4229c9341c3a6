"""Prometheus metrics scraped over HTTP on loopback and parsed: from a store, from live results, from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from kgot_errors import recover
from kgot_errors.observability.metrics import METRIC_NAMES, LiveMetrics, register_store_metrics, serve_metrics
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.settings import Settings

BROKEN = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": "{'a': 1,}"}
REFUSAL = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": "Sorry, I cannot."}
DENIED = {"error_type": "openai.AuthenticationError", "message": "401", "status_code": 401}


def _scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    found = [v for lab, v in samples[name] if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


@pytest.fixture
def server():
    started = []

    def start(registry: CollectorRegistry) -> str:
        httpd, thread = serve_metrics(0, registry=registry)
        started.append((httpd, thread))
        host, port = httpd.server_address[:2]
        assert host == "127.0.0.1"
        return f"http://{host}:{port}/metrics"

    yield start
    for httpd, thread in started:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_store_metrics_are_served_on_loopback_with_the_dashboard_names(tmp_path, server):
    store = str(tmp_path / "m.sqlite")
    results = [recover(i, checkpointer=store, settings=Settings()) for i in (BROKEN, BROKEN, BROKEN, REFUSAL, DENIED)]
    registry = CollectorRegistry()
    register_store_metrics(registry, checkpointer=store, breakers=BreakerStore(), max_age=0)
    samples = _scrape(server(registry))

    assert set(samples) <= METRIC_NAMES
    assert _value(samples, "kgot_store_up") == 1
    assert _value(samples, "kgot_error_recovery_rate") == 0.6
    assert _value(samples, "kgot_error_count_total", kind="syntax") == 4
    assert _value(samples, "kgot_error_count_total", kind="permanent") == 1
    assert _value(samples, "kgot_incidents_total", outcome="recovered") == 3
    assert _value(samples, "kgot_incidents_total", outcome="not_recovered") == 2
    assert _value(samples, "kgot_recoveries_total", layer="parser_fix") == 3
    assert _value(samples, "kgot_attempts_total", layer="parser_fix", verdict="failed") == 1
    assert _value(samples, "kgot_attempts_total", layer="llm_fix", verdict="skipped") == 1
    assert _value(samples, "kgot_llm_calls_total", layer="llm_fix") == 0
    assert _value(samples, "kgot_recovery_time_seconds_count") == 3
    assert _value(samples, "kgot_recovery_time_seconds_bucket", le="+Inf") == 3
    assert _value(samples, "kgot_recovery_time_seconds_sum") == pytest.approx(
        sum(r.duration_s for r in results if r.recovered))
    assert _value(samples, "kgot_recovery_time_seconds_bucket", le="30.0") == 3
    assert _value(samples, "kgot_integration_health") == pytest.approx(0.5 * 0.6 + 0.2 + 0.15 + 0.15)
    assert _value(samples, "kgot_sandbox_kills_total", cause="timeout") == 0

    # a new recovery shows in the next scrape: the figures are read from the store, not kept in memory
    recover(BROKEN, checkpointer=store, settings=Settings())
    assert _value(_scrape(server(registry).rsplit("/", 1)[0] + "/metrics"), "kgot_error_count_total",
                  kind="syntax") == 5


def test_an_unreadable_store_is_reported_down_not_a_failed_scrape(tmp_path, server):
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    registry = CollectorRegistry()
    register_store_metrics(registry, checkpointer=str(bad), breakers=BreakerStore(), max_age=0)
    samples = _scrape(server(registry))
    assert _value(samples, "kgot_store_up") == 0
    assert "kgot_error_recovery_rate" not in samples


def test_live_metrics_count_each_result_recorded_in_this_process(server):
    registry = CollectorRegistry()
    breakers = BreakerStore()
    breakers.get("search")  # one closed circuit
    live = LiveMetrics(registry, breakers=breakers).attach()
    try:
        for incident in (BROKEN, REFUSAL, BROKEN):
            recover(incident, checkpointer=None, settings=Settings())  # each recovery records its result
    finally:
        live.detach()
    recover(BROKEN, checkpointer=None, settings=Settings())  # after detach: not counted
    samples = _scrape(server(registry))
    assert _value(samples, "kgot_error_count_total", kind="syntax") == 3
    assert _value(samples, "kgot_recoveries_total", layer="parser_fix") == 2
    assert _value(samples, "kgot_error_recovery_rate") == pytest.approx(2 / 3, abs=1e-6)
    assert _value(samples, "kgot_circuit_breaker_state", operation="search", state="closed") == 1
    assert _value(samples, "kgot_circuit_breaker_state", operation="search", state="open") == 0


def test_the_cli_serves_a_stores_metrics_on_loopback(tmp_path):
    store = str(tmp_path / "cli.sqlite")
    recover(BROKEN, checkpointer=store, settings=Settings())
    env = {**os.environ, "KGOT_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "kgot_errors.cli", "metrics", "--port", "0", "--checkpoint", store,
                             "--log-dir", str(tmp_path / "logs")], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "serving metrics at http://127.0.0.1:" in line, line
        url = line.split(" at ", 1)[1].split()[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                samples = _scrape(url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert _value(samples, "kgot_error_count_total", kind="syntax") == 1
        assert _value(samples, "kgot_error_recovery_rate") == 1.0
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()
