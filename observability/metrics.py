"""Prometheus metrics under the original dashboard's names, computed from Statistics on each scrape.

Two ways to mount them in your own process (pick one per registry: the names are the same):

    from prometheus_client import REGISTRY, start_http_server
    register_store_metrics(REGISTRY, checkpointer="recoveries.sqlite")  # from the store: survives restarts
    live = LiveMetrics(REGISTRY).attach()  # or: from the results this process records (record_result)
    start_http_server(9464, addr="127.0.0.1")

`kgot-errors metrics --port N` serves the store's metrics on 127.0.0.1.

| metric | type | labels |
|---|---|---|
| kgot_error_recovery_rate | gauge (0..1) | |
| kgot_integration_health | gauge (0..1) | |
| kgot_health_component | gauge (0..1) | component |
| kgot_error_count_total | counter | kind |
| kgot_incidents_total | counter | outcome (recovered, degraded, not_recovered, escalated) |
| kgot_incidents_open | gauge | |
| kgot_recoveries_total | counter | layer |
| kgot_recovery_time_seconds | histogram | |
| kgot_recovery_time_avg | gauge (s) | |
| kgot_attempts_total | counter | layer, verdict |
| kgot_layer_duration_seconds_total | counter | layer |
| kgot_llm_calls_total, kgot_llm_tokens_total | counter | layer |
| kgot_sandbox_runs_total | counter | backend |
| kgot_sandbox_kills_total | counter | cause (timeout, memory, cpu) |
| kgot_container_memory_usage | gauge (bytes) | stat (max, mean) |
| kgot_circuit_breaker_state | gauge (1 = current) | operation, state |
| kgot_store_up | gauge | |
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from kgot_errors.observability.statistics import Statistics, Tally

__all__ = ["BUCKETS", "LiveMetrics", "METRIC_NAMES", "StatisticsCollector", "register_store_metrics",
           "serve_metrics"]

logger = logging.getLogger(__name__)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Histogram buckets of kgot_recovery_time_seconds (30 s is the recovery target)."""
_KILL_CAUSES = ("timeout", "memory", "cpu")
_BREAKER_STATES = ("closed", "half_open", "open")

METRIC_NAMES = frozenset({
    "kgot_error_recovery_rate", "kgot_integration_health", "kgot_health_component", "kgot_error_count_total",
    "kgot_incidents_total", "kgot_incidents_open", "kgot_recoveries_total", "kgot_recovery_time_seconds_bucket",
    "kgot_recovery_time_seconds_sum", "kgot_recovery_time_seconds_count", "kgot_recovery_time_avg",
    "kgot_attempts_total", "kgot_layer_duration_seconds_total", "kgot_llm_calls_total", "kgot_llm_tokens_total",
    "kgot_sandbox_runs_total", "kgot_sandbox_kills_total", "kgot_container_memory_usage",
    "kgot_circuit_breaker_state", "kgot_store_up", "kgot_statistics_seconds",
})
"""Every sample name exported (histogram series included), for dashboards and their tests."""


def families(stats: Statistics) -> Iterator[Metric]:
    """The metric families of one Statistics."""
    if stats.recovery_rate is not None:
        yield GaugeMetricFamily("kgot_error_recovery_rate", "Recovered / concluded incidents (0..1)",
                                value=stats.recovery_rate)
    yield GaugeMetricFamily("kgot_integration_health", "Health score (0..1): recovery, speed, breakers, backends",
                            value=stats.health.score)
    comp = GaugeMetricFamily("kgot_health_component", "Parts of the health score (0..1)", labels=["component"])
    for name, value in stats.health.components.items():
        comp.add_metric([name], value)
    yield comp

    kinds = CounterMetricFamily("kgot_error_count", "Incidents by error kind", labels=["kind"])
    for kind, row in stats.by_kind.items():
        kinds.add_metric([kind], row.incidents)
    yield kinds
    outcomes = CounterMetricFamily("kgot_incidents", "Concluded incidents by outcome", labels=["outcome"])
    for outcome, n in (("recovered", stats.recovered), ("degraded", stats.degraded),
                       ("not_recovered", stats.not_recovered), ("escalated", stats.escalated)):
        outcomes.add_metric([outcome], n)
    yield outcomes
    yield GaugeMetricFamily("kgot_incidents_open", "Incidents still running or cut off mid-way", value=stats.open)
    by = CounterMetricFamily("kgot_recoveries", "Recovered incidents by the layer that proved the fix",
                             labels=["layer"])
    for layer, n in stats.recovered_by.items():
        by.add_metric([layer], n)
    yield by

    times = stats.recovery_times
    buckets, i = [], 0
    for bound in BUCKETS:
        while i < len(times) and times[i] <= bound:
            i += 1
        buckets.append((_le(bound), i))
    buckets.append(("+Inf", len(times)))
    yield HistogramMetricFamily("kgot_recovery_time_seconds", "Time to recovery of recovered incidents",
                                buckets=buckets, sum_value=sum(times))
    if stats.time_to_recovery.mean is not None:
        yield GaugeMetricFamily("kgot_recovery_time_avg", "Mean time to recovery, seconds",
                                value=stats.time_to_recovery.mean)

    attempts = CounterMetricFamily("kgot_attempts", "Layer tries by verdict", labels=["layer", "verdict"])
    spent = CounterMetricFamily("kgot_layer_duration_seconds", "Time spent in each layer", labels=["layer"])
    calls = CounterMetricFamily("kgot_llm_calls", "LLM calls by layer", labels=["layer"])
    tokens = CounterMetricFamily("kgot_llm_tokens", "LLM tokens by layer", labels=["layer"])
    for layer, row in stats.layers.items():
        for verdict in ("recovered", "failed", "skipped", "error"):
            attempts.add_metric([layer, verdict], getattr(row, verdict))
        spent.add_metric([layer], row.duration_s)
        calls.add_metric([layer], row.llm_calls)
        tokens.add_metric([layer], row.tokens)
    yield from (attempts, spent, calls, tokens)

    runs = CounterMetricFamily("kgot_sandbox_runs", "Sandboxed code runs by backend", labels=["backend"])
    for backend, n in stats.sandbox.by_backend.items():
        runs.add_metric([backend], n)
    yield runs
    kills = CounterMetricFamily("kgot_sandbox_kills", "Sandbox runs the sandbox ended, by cause", labels=["cause"])
    for cause in sorted({*_KILL_CAUSES, *stats.sandbox.killed}):
        kills.add_metric([cause], stats.sandbox.killed.get(cause, 0))
    yield kills
    memory = GaugeMetricFamily("kgot_container_memory_usage", "Peak memory of sandbox runs, bytes", labels=["stat"])
    if stats.sandbox.peak_memory_max is not None:
        memory.add_metric(["max"], stats.sandbox.peak_memory_max)
        memory.add_metric(["mean"], stats.sandbox.peak_memory_mean or 0.0)
    yield memory

    breakers = GaugeMetricFamily("kgot_circuit_breaker_state", "Circuit state per operation (1 = current state)",
                                 labels=["operation", "state"])
    for operation, snap in stats.breakers.items():
        for state in _BREAKER_STATES:
            breakers.add_metric([operation, state], 1.0 if snap.get("state") == state else 0.0)
    yield breakers


def _le(bound: float) -> str:
    return repr(float(bound))


class StatisticsCollector(Collector):
    """A custom collector: on each scrape, Statistics from `source` (cached for `max_age` seconds) as metrics.

    A source that raises is reported as `kgot_store_up 0` (and logged), never as a failed scrape.
    """

    def __init__(self, source: Callable[[], Statistics], *, max_age: float = 5.0) -> None:
        self.source = source
        self.max_age = max_age
        self._lock = threading.Lock()
        self._cached: tuple[float, Statistics, float] | None = None

    def describe(self) -> list[Metric]:
        return []  # nothing is read at registration; names are checked by the tests instead

    def statistics(self) -> tuple[Statistics, float]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.max_age:
                started = time.perf_counter()
                stats = self.source()
                self._cached = (now, stats, time.perf_counter() - started)
            return self._cached[1], self._cached[2]

    def collect(self) -> Iterator[Metric]:
        try:
            stats, took = self.statistics()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the store as down instead of failing
            logger.warning("statistics unavailable: %s", exc, extra={"event": "metrics_source_failed"})
            yield GaugeMetricFamily("kgot_store_up", "1 when the statistics source could be read", value=0)
            return
        yield GaugeMetricFamily("kgot_store_up", "1 when the statistics source could be read", value=1)
        yield GaugeMetricFamily("kgot_statistics_seconds", "Time the last statistics read took", value=took)
        yield from families(stats)


def register_store_metrics(registry: CollectorRegistry | None = None, *, checkpointer: Any = "default",
                           settings: Any = None, breakers: Any = None, max_age: float = 5.0) -> StatisticsCollector:
    """Register metrics computed from a checkpoint store on `registry` (default: prometheus_client's)."""
    from prometheus_client import REGISTRY

    from kgot_errors.observability.statistics import get_statistics

    collector = StatisticsCollector(
        lambda: get_statistics(checkpointer=checkpointer, settings=settings, breakers=breakers), max_age=max_age)
    (registry if registry is not None else REGISTRY).register(collector)
    return collector


class LiveMetrics:
    """Metrics from the results this process sees: `record(result)` each RecoveryResult, or `attach()` to
    receive every result passed to `record_result`. Counts start at zero with the process."""

    def __init__(self, registry: CollectorRegistry | None = None, *, breakers: Any = None) -> None:
        from prometheus_client import REGISTRY

        self._tally = Tally()
        self._lock = threading.Lock()
        self._breakers = breakers
        self.collector = StatisticsCollector(self.statistics, max_age=0.0)
        (registry if registry is not None else REGISTRY).register(self.collector)

    def record(self, result: Any) -> None:
        with self._lock:
            self._tally.add_result(result)

    def statistics(self) -> Statistics:
        from kgot_errors.runtime.breaker import default_store

        store = self._breakers if self._breakers is not None else default_store()
        with self._lock:
            return self._tally.statistics(store="live", breakers=store.snapshot())

    def attach(self) -> LiveMetrics:
        from kgot_errors.observability.events import add_listener

        add_listener(self.record)
        return self

    def detach(self) -> None:
        from kgot_errors.observability.events import remove_listener

        remove_listener(self.record)


def serve_metrics(port: int, *, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None) -> tuple[Any, Any]:
    """Serve `registry` over HTTP at http://addr:port/metrics in a daemon thread; returns (server, thread).
    Port 0 picks a free port: `server.server_address[1]`."""
    from prometheus_client import REGISTRY, start_http_server

    return start_http_server(port, addr=addr, registry=registry if registry is not None else REGISTRY)
