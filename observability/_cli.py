"""CLI subcommands `stats`, `doctor` and `metrics` (registered by cli.py's PLUGINS; imports stay lazy)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]

_STATS_EPILOG = """\
examples:
  kgot-errors stats                          the default store (KGOT_DATA_DIR / KGOT_CHECKPOINT_URL)
  kgot-errors stats --checkpoint r.sqlite    another SQLite store, or a postgresql:// URL
  kgot-errors stats --json                   the figures as JSON
"""


def register(sub: Any, common: Any) -> None:
    sp = sub.add_parser("stats", help="statistics and health over a checkpoint store",
                        description="Statistics derived from the recorded attempts of every recovery thread in a "
                                    "checkpoint store: incidents, recovery rate, kinds, layers, LLM use, time to "
                                    "recovery, sandbox runs and kills, circuit breakers, health score.",
                        epilog=_STATS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _log_dir(sp)
    common(sp)
    sp.set_defaults(handler=_cmd_stats)

    dp = sub.add_parser("doctor", help="check every part this installation uses",
                        description="Check packages, sandbox backends (a real probe run), Docker, the model (asked "
                                    "one short question), the checkpoint store, PostgreSQL and the log dir. One "
                                    "line per part; exit 1 when any configured part fails.")
    dp.add_argument("--no-model-call", action="store_true", help="do not send the model a test question")
    _log_dir(dp)
    common(dp)
    dp.set_defaults(handler=_cmd_doctor)

    mp = sub.add_parser("metrics", help="serve Prometheus metrics computed from a checkpoint store",
                        description="Serve /metrics (Prometheus text format) computed from the checkpoint store on "
                                    "each scrape, and log health alerts every monitoring.health_check_interval s.")
    mp.add_argument("--port", type=int, default=9464, help="port (default 9464; 0 picks a free one)")
    mp.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    mp.add_argument("--max-age", type=float, default=5.0, metavar="S",
                    help="re-read the store at most every S seconds (default 5)")
    _log_dir(mp)
    common(mp)
    mp.set_defaults(handler=_cmd_metrics)


def _log_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-dir", metavar="DIR", help="also write JSON logs to DIR (error_management.log, combined.log)")
    p.add_argument("--log-level", default="INFO", help="level for combined.log (default INFO)")


def _settings(args: argparse.Namespace) -> Any:
    from kgot_errors.runtime.settings import load_settings

    return load_settings(args.settings, profile=args.profile)


def _target(args: argparse.Namespace) -> Any:
    return None if args.no_checkpoint else (args.checkpoint or "default")


def _logging(args: argparse.Namespace, settings: Any) -> None:
    if args.log_dir:
        from kgot_errors.observability.logs import configure_logging

        configure_logging(args.log_dir, level=args.log_level, settings=settings)


def _cmd_stats(args: argparse.Namespace) -> int:
    from kgot_errors.observability.statistics import get_statistics

    settings = _settings(args)
    _logging(args, settings)
    stats = get_statistics(checkpointer=_target(args), settings=settings)
    if args.json:
        print(json.dumps(stats.to_dict(), ensure_ascii=False, indent=2))
    else:
        _render(stats)
    return 0


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def _render(stats: Any) -> None:
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is optional: the same figures as plain lines
        print(json.dumps(stats.to_dict(), ensure_ascii=False, indent=2))
        return
    console = Console()
    rate = "-" if stats.recovery_rate is None else f"{stats.recovery_rate:.1%}"
    overview = Table(title=f"kgot-errors statistics: {stats.store}", show_header=False)
    overview.add_column(style="bold")
    overview.add_column(justify="right")
    for label, value in (("incidents", stats.incidents), ("recovered", stats.recovered),
                         ("not recovered", stats.not_recovered), ("escalated", stats.escalated),
                         ("  paused for a person", stats.paused), ("open (running or cut off)", stats.open),
                         ("recovery rate", rate), ("LLM calls", stats.llm_calls), ("tokens", stats.tokens),
                         ("health", f"{stats.health.score:.2f} ({stats.health.status})")):
        overview.add_row(label, str(value))
    console.print(overview)

    if stats.by_kind:
        kinds = Table(title="by error kind")
        for col in ("kind", "incidents", "recovered"):
            kinds.add_column(col, justify="left" if col == "kind" else "right")
        for kind, row in stats.by_kind.items():
            kinds.add_row(kind, str(row.incidents), str(row.recovered))
        console.print(kinds)
    if stats.layers:
        layers = Table(title="layers (tries by verdict)", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1), collapse_padding=True)
        for col in ("layer", "tries", "recovered", "failed", "skipped", "error", "time", "llm", "tokens"):
            layers.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True, min_width=len(col))
        for name, row in stats.layers.items():
            layers.add_row(name, str(row.attempts), str(row.recovered), str(row.failed), str(row.skipped),
                           str(row.error), _fmt_s(row.duration_s), str(row.llm_calls), str(row.tokens))
        console.print(layers)
    t = stats.time_to_recovery
    times = Table(title=f"time to recovery (target {t.target_s:g} s)")
    for col in ("recovered", "mean", "p50", "p95", "max", "over target"):
        times.add_column(col, justify="right")
    times.add_row(str(t.count), _fmt_s(t.mean), _fmt_s(t.p50), _fmt_s(t.p95), _fmt_s(t.max), str(t.over_target))
    console.print(times)
    sb = stats.sandbox
    if sb.runs:
        killed = ", ".join(f"{k} {v}" for k, v in sb.killed.items()) or "none"
        peak = "-" if sb.peak_memory_max is None else f"{sb.peak_memory_max / 2**20:.1f} MiB"
        console.print(f"sandbox: {sb.runs} run(s), {sb.ok} ok, killed: {killed}; peak memory max {peak}")
    if stats.breakers:
        breakers = Table(title="circuit breakers (this process)")
        for col in ("operation", "state", "consecutive failures", "opened"):
            breakers.add_column(col)
        for name, snap in stats.breakers.items():
            breakers.add_row(name, str(snap.get("state")), str(snap.get("consecutive_failures")),
                             str(snap.get("opened")))
        console.print(breakers)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in stats.health.components.items())
    console.print(f"health {stats.health.score:.2f} = 0.50 recovery + 0.20 speed + 0.15 breakers + 0.15 backends "
                  f"({parts})")
    for alert in stats.health.alerts:
        console.print(f"[bold]{alert['alert_type']}[/bold]: {alert['message']}")


def _cmd_doctor(args: argparse.Namespace) -> int:
    from kgot_errors.observability.doctor import doctor
    from kgot_errors.observability.logs import default_log_dir

    settings = _settings(args)
    log_dir = args.log_dir or default_log_dir(settings)
    checks = doctor(settings, checkpointer=_target(args), log_dir=log_dir, ask_model=not args.no_model_call)
    failed = [c for c in checks if c.status == "fail"]
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], ensure_ascii=False, indent=2))
    else:
        for c in checks:
            print(c.line())
        print(f"{len(failed)} failed: {', '.join(c.part for c in failed)}" if failed else "all checks passed",
              file=sys.stderr)
    return 1 if failed else 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    import threading

    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        print("kgot-errors: metrics need prometheus-client: pip install prometheus-client", file=sys.stderr)
        return 2
    from kgot_errors.observability.health import HealthMonitor
    from kgot_errors.observability.metrics import register_store_metrics, serve_metrics

    settings = _settings(args)
    _logging(args, settings)
    registry = CollectorRegistry()
    collector = register_store_metrics(registry, checkpointer=_target(args), settings=settings, max_age=args.max_age)
    server, _ = serve_metrics(args.port, addr=args.bind, registry=registry)
    host, port = server.server_address[:2]
    print(f"serving metrics at http://{host}:{port}/metrics (Ctrl-C stops)", file=sys.stderr, flush=True)
    monitor = HealthMonitor()
    stop = threading.Event()
    try:
        while not stop.is_set():
            if settings.monitoring.alerting_enabled:
                try:
                    monitor.check(collector.statistics()[0].health)
                except Exception as exc:  # noqa: BLE001 - keep serving; the scrape reports kgot_store_up 0
                    print(f"kgot-errors: statistics unavailable: {exc}", file=sys.stderr)
            stop.wait(max(1, settings.monitoring.health_check_interval))
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0
