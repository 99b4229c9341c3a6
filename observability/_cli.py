"""CLI subcommands `stats`, `doctor`, `metrics`, `list` and `prune` (registered by cli.py's PLUGINS; imports stay lazy)."""

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


_LIST_EPILOG = """\
examples:
  kgot-errors list                                   every thread, newest first
  kgot-errors list --status not_recovered --since 1d   what failed today
  kgot-errors list --unfinished                      cut off by a crash: resume them
  kgot-errors list --paused                          waiting for a person (as `pending`)
  kgot-errors list --kind transient --layer backoff --json

statuses: recovered, degraded, not_recovered, escalated, invalid, error (finished), paused, unfinished.
"""

_PRUNE_EPILOG = """\
examples:
  kgot-errors prune --older-than 30d --dry-run          what would go
  kgot-errors prune --older-than 30d --keep-failed --vacuum

--vacuum: SQLite's VACUUM gives the space back to the file system; PostgreSQL's VACUUM makes it
reusable (run VACUUM FULL yourself in a quiet hour to shrink the tables' files).
"""


def register(sub: Any, common: Any) -> None:
    sp = sub.add_parser("stats", help="statistics and health over a checkpoint store",
                        description="Statistics derived from the recorded attempts of every recovery thread in a "
                                    "checkpoint store: incidents, recovery rate, kinds, layers, LLM use, time to "
                                    "recovery, sandbox runs and kills, circuit breakers, health score.",
                        epilog=_STATS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _log_dir(sp)
    common(sp, store=True, as_json=True)
    sp.set_defaults(handler=_cmd_stats)

    dp = sub.add_parser("doctor", help="check every part this installation uses",
                        description="Check packages, sandbox backends (a real probe run), Docker, the model (asked "
                                    "one short question), the checkpoint store, PostgreSQL and the log dir. One "
                                    "line per part; exit 1 when any configured part fails.")
    dp.add_argument("--no-model-call", action="store_true", help="do not send the model a test question")
    _log_dir(dp)
    common(dp, store=True, as_json=True)
    dp.set_defaults(handler=_cmd_doctor)

    mp = sub.add_parser("metrics", help="serve Prometheus metrics computed from a checkpoint store",
                        description="Serve /metrics (Prometheus text format) computed from the checkpoint store on "
                                    "each scrape, and log health alerts every monitoring.health_check_interval s.")
    mp.add_argument("--port", type=int, default=9464, help="port (default 9464; 0 picks a free one)")
    mp.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    mp.add_argument("--max-age", type=float, default=5.0, metavar="S",
                    help="re-read the store at most every S seconds (default 5)")
    _log_dir(mp)
    common(mp, store=True)
    mp.set_defaults(handler=_cmd_metrics)

    from kgot_errors.cli import _count, duration

    lp = sub.add_parser("list", help="list the recovery threads of a checkpoint store, with filters",
                        description="List recovery threads, newest first: status, kind, layers tried, when each "
                                    "started and last moved.", epilog=_LIST_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    lp.add_argument("--status", "--outcome", action="append", default=[], metavar="STATUS", dest="status",
                    help="only threads with this status (repeatable)")
    lp.add_argument("--kind", action="append", default=[], help="only this error kind (repeatable)")
    lp.add_argument("--layer", action="append", default=[], help="only threads in which this layer made an attempt")
    lp.add_argument("--since", type=duration, metavar="DURATION",
                    help="only threads whose last step is newer than this (90s, 15m, 12h, 30d, 2w)")
    lp.add_argument("--older-than", type=duration, metavar="DURATION", help="only threads whose last step is older")
    lp.add_argument("--unfinished", action="append_const", const="unfinished", dest="status",
                    help="only threads that did not finish (cut off by a crash or a stop)")
    lp.add_argument("--paused", action="append_const", const="paused", dest="status",
                    help="only threads paused for a person's fix")
    lp.add_argument("--limit", type=_count(1), metavar="N", help="at most N threads")
    common(lp, store=True, as_json=True)
    lp.set_defaults(handler=_cmd_list)

    pr = sub.add_parser("prune", help="delete old recovery threads (retention), and vacuum the store",
                        description="Delete the threads whose last step is older than --older-than, through the "
                                    "store's own delete (SQLite and PostgreSQL).", epilog=_PRUNE_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("--older-than", type=duration, required=True, metavar="DURATION",
                    help="age of a thread's last step (90s, 15m, 12h, 30d, 2w)")
    pr.add_argument("--keep-failed", action="store_true",
                    help="keep threads that did not end recovered (not recovered, escalated, paused, unfinished)")
    pr.add_argument("--vacuum", action="store_true", help="give the freed space back afterwards")
    pr.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    common(pr, store=True, as_json=True)
    pr.set_defaults(handler=_cmd_prune)


def _log_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-dir", metavar="DIR", help="also write JSON logs to DIR (error_management.log, combined.log)")
    p.add_argument("--log-level", default="INFO", help="level for combined.log (default INFO)")


def _settings(args: argparse.Namespace) -> Any:
    from kgot_errors.cli import settings_of

    return settings_of(args)


def _target(args: argparse.Namespace, settings: Any) -> Any:
    from kgot_errors.cli import store_of

    return store_of(args, settings)


def _existing(args: argparse.Namespace, settings: Any) -> Any:
    from kgot_errors.observability.threads import require_store

    return require_store(_target(args, settings))


def _logging(args: argparse.Namespace, settings: Any) -> None:
    if args.log_dir:
        from kgot_errors.observability.logs import configure_logging

        configure_logging(args.log_dir, level=args.log_level, settings=settings)


def _cmd_stats(args: argparse.Namespace) -> int:
    from kgot_errors.observability.statistics import get_statistics

    settings = _settings(args)
    _logging(args, settings)
    stats = get_statistics(checkpointer=_existing(args, settings), settings=settings)
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
                         ("degraded (value kept, data changed)", stats.degraded), ("not recovered", stats.not_recovered), ("escalated", stats.escalated),
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
    from kgot_errors.observability._doctor import doctor
    from kgot_errors.observability.logs import default_log_dir

    settings = _settings(args)
    log_dir = args.log_dir or default_log_dir(settings)
    checks = doctor(settings, checkpointer=_target(args, settings), log_dir=log_dir, ask_model=not args.no_model_call)
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
    collector = register_store_metrics(registry, checkpointer=_target(args, settings), settings=settings,
                                       max_age=args.max_age)
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


def _cmd_list(args: argparse.Namespace) -> int:
    from kgot_errors.observability.threads import STATUSES, format_time, list_threads

    unknown = sorted(set(args.status) - set(STATUSES))
    if unknown:
        print(f"kgot-errors list: unknown status {', '.join(unknown)} (choose from {', '.join(STATUSES)})",
              file=sys.stderr)
        return 2
    settings = _settings(args)
    threads = list_threads(_existing(args, settings), status=args.status, kind=args.kind, layer=args.layer,
                           newer_than=args.since, older_than=args.older_than, limit=args.limit)
    if args.json:
        print(json.dumps([t.to_dict() for t in threads], ensure_ascii=False, indent=2))
        return 0
    if not threads:
        print("no threads match", file=sys.stderr)
    for t in threads:
        layers = ",".join(t.layers) or "-"
        print(f"{t.thread_id}  {format_time(t.updated_at)}  {t.status:<13} {t.kind:<10} {layers:<28} {t.summary}")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from kgot_errors.observability.threads import prune

    settings = _settings(args)
    report = prune(_existing(args, settings), older_than=args.older_than, keep_failed=args.keep_failed,
                   vacuum=args.vacuum, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return 0
    verb = "would delete" if report.dry_run else "deleted"
    size = ""
    if report.bytes_before is not None and report.bytes_after is not None and not report.dry_run:
        size = f"; store {report.bytes_before / 2**20:.1f} MiB -> {report.bytes_after / 2**20:.1f} MiB"
    print(f"{verb} {len(report.deleted)} thread(s), kept {report.kept}{size}", file=sys.stderr)
    return 0
