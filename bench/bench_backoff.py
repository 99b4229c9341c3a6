"""Benchmark: backoff's cost per retry attempt through the checkpointed graph vs tenacity's own AsyncRetrying loop.

    python bench/bench_backoff.py [--incidents 40] [--rounds 5] [--results bench/RESULTS.md]

Waits are injected as zero (a sleep that returns at once), so what is measured is the
machinery: one graph step per attempt, each checkpointed to a SQLite file with
durability="sync", against tenacity's loop around the same call. Two calls are timed: an
in-process function that raises ConnectionResetError, and an httpx GET to a loopback HTTP
server that answers 503. Also checked (and the run fails if not): an outage of k = 3
failures takes exactly 4 calls (graph, APIErrorManager, tenacity alike), and under a
permanent outage no call is made once the breaker is open.

`--results` replaces the "## Backoff" section of that Markdown file (others are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_none

from kgot_errors import Layer, arecover
from kgot_errors.runtime.api_errors import APIErrorManager
from kgot_errors.runtime.breaker import BreakerStore
from kgot_errors.runtime.checkpoint import open_checkpointer
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.operations import Failure
from kgot_errors.runtime.settings import ApiSettings, Settings
from kgot_errors.state import Incident

TARGET_MS = 10.0
NOTES = ("Reading: most of a graph attempt is LangGraph's step and the SQLite checkpoint write (written on the "
         "event loop by `SqliteStore`; through aiosqlite's thread hops the same attempts cost 2.7 and 5.3 ms); "
         "about 0.2 ms is classifying the failure, mostly `Incident.from_exception` formatting the traceback. "
         "Figures move with the machine's load: on a shared machine earlier runs ranged 1.1-5.8 ms (in-process) "
         "and 3.6-7.3 ms (loopback), all under the 10 ms target. The loopback server sets TCP_NODELAY; without it "
         "every call, graph or tenacity, costs ~40 ms of delayed-ACK wait.")


async def no_wait(_seconds: float) -> None:
    return None


class Outage:
    """Fails the first `failures` calls of each incident (per `reset()`), then answers; counts calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.total = 0

    def reset(self) -> None:
        self.calls = 0

    def tick(self) -> bool:
        """Count a call; True when it must fail."""
        self.calls += 1
        self.total += 1
        return self.calls <= self.failures


def in_process_op(outage: Outage):
    async def flaky(x: int) -> dict:
        if outage.tick():
            raise ConnectionResetError("connection reset by peer")
        return {"x": x}

    return flaky


def http_op(outage: Outage, url: str, client: httpx.AsyncClient):
    async def fetch(x: int) -> dict:
        status = 503 if outage.tick() else 200
        response = await client.get(f"{url}/{status}")
        response.raise_for_status()
        return {"x": x, "status": response.status_code}

    return fetch


def _server() -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body would otherwise wait on delayed ACKs (40 ms)

        def do_GET(self) -> None:  # noqa: N802
            status = int(self.path.rsplit("/", 1)[-1])
            body = b'{"ok": true}'
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


async def first_failure(op: Any) -> BaseException:
    try:
        await op(x=1)
    except Exception as exc:  # noqa: BLE001 - the caller's original failure, handed to recover
        return exc
    raise AssertionError("the outage should fail the first call")


async def graph_run(op: Any, outage: Outage, saver: Any, incidents: int, store: BreakerStore) -> dict[str, float]:
    """Recover `incidents` incidents; time only the re-runs (graph steps with checkpoints)."""
    ctx = RecoveryContext(settings=Settings(), operations={"op": op}, sleep=no_wait, rng=random.Random(0),
                          breakers=store)
    times, attempts = [], 0
    for _ in range(incidents):
        outage.reset()
        incident = Incident.from_exception(await first_failure(op), operation="op", arguments={"x": 1})
        t0 = time.perf_counter()
        result = await arecover(incident, checkpointer=saver, runtime_context=ctx)
        times.append(time.perf_counter() - t0)
        assert result.recovered, result.summary
        attempts += len(result.attempts_by(Layer.BACKOFF))
    return {"seconds": sum(times), "attempts": attempts, "median_incident_ms": statistics.median(times) * 1e3}


async def tenacity_run(op: Any, outage: Outage, incidents: int, retry_on_classify: bool) -> dict[str, float]:
    """tenacity's own loop around the same call: the original call plus the same re-runs, no waits."""
    predicate = (lambda e: Failure.of(e).transient) if retry_on_classify else (
        lambda e: isinstance(e, ConnectionError | httpx.HTTPStatusError))
    times, reruns = [], 0
    for _ in range(incidents):
        outage.reset()
        t0 = time.perf_counter()
        async for attempt in AsyncRetrying(stop=stop_after_attempt(6), wait=wait_none(),
                                           retry=retry_if_exception(predicate), sleep=no_wait, reraise=True):
            with attempt:
                await op(x=1)
        times.append(time.perf_counter() - t0)
        reruns += outage.calls - 1
    return {"seconds": sum(times), "attempts": reruns}


async def measure(make: Any, saver: Any, incidents: int, rounds: int) -> dict[str, float]:
    """Per-attempt cost, marginal ((5 re-runs - 1 re-run) / 4) and amortised (total / attempts); median of rounds."""
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        runs: dict[tuple[str, int], dict[str, float]] = {}
        for failures in (5, 1):  # 5: the original + 4 failing re-runs, then the answer; 1: one re-run answers
            outage = Outage(failures)
            op = make(outage)
            await graph_run(op, outage, saver, 3, BreakerStore())  # warm up
            runs["graph", failures] = await graph_run(op, outage, saver, incidents, BreakerStore())
            runs["tenacity", failures] = await tenacity_run(op, outage, incidents, retry_on_classify=False)
            runs["classify", failures] = await tenacity_run(op, outage, incidents, retry_on_classify=True)
        for kind in ("graph", "tenacity", "classify"):
            marginal = (runs[kind, 5]["seconds"] - runs[kind, 1]["seconds"]) / incidents / 4 * 1e3
            samples.setdefault(f"{kind}_marginal", []).append(marginal)
            amortised = runs[kind, 5]["seconds"] / runs[kind, 5]["attempts"] * 1e3
            samples.setdefault(f"{kind}_amortised", []).append(amortised)
        samples.setdefault("incident", []).append(runs["graph", 5]["median_incident_ms"])
    m = {k: statistics.median(v) for k, v in samples.items()}
    return {"graph_ms_per_attempt": round(m["graph_marginal"], 3),
            "graph_amortised_ms_per_attempt": round(m["graph_amortised"], 3),
            "graph_median_incident_ms": round(m["incident"], 3),
            "tenacity_ms_per_attempt": round(m["tenacity_marginal"], 4),
            "tenacity_with_classify_ms_per_attempt": round(m["classify_marginal"], 4),
            "ratio_graph_vs_tenacity": round(m["graph_marginal"] / m["tenacity_marginal"], 1),
            "rounds": rounds}


async def exactly_four_calls() -> dict[str, int]:
    """An outage of k = 3 failures: the graph, APIErrorManager and tenacity each make exactly 4 calls."""
    calls = {}
    outage = Outage(3)
    op = in_process_op(outage)
    ctx = RecoveryContext(settings=Settings(), operations={"op": op}, sleep=no_wait, breakers=BreakerStore())
    incident = Incident.from_exception(await first_failure(op), operation="op", arguments={"x": 1})
    assert (await arecover(incident, checkpointer=None, runtime_context=ctx)).recovered
    calls["graph"] = outage.calls
    outage.reset()
    await APIErrorManager(sleep=no_wait, breakers=BreakerStore()).execute_with_retry(op, "op", 1)
    calls["APIErrorManager"] = outage.calls
    outage.reset()
    async for attempt in AsyncRetrying(stop=stop_after_attempt(6), wait=wait_none(), sleep=no_wait, reraise=True):
        with attempt:
            await op(x=1)
    calls["tenacity"] = outage.calls
    assert calls == {"graph": 4, "APIErrorManager": 4, "tenacity": 4}, calls
    return calls


async def no_calls_while_open(incidents: int = 10) -> dict[str, int]:
    """A permanent outage: incidents share one breaker store; once it opens, no more calls."""
    outage = Outage(10**9)
    op = in_process_op(outage)
    store = BreakerStore()
    settings = Settings(api_error_management=ApiSettings(circuit_breaker_threshold=5))
    ctx = RecoveryContext(settings=settings, operations={"op": op}, sleep=no_wait, breakers=store)
    incident = Incident.from_exception(ConnectionResetError("down"), operation="op", arguments={"x": 1})
    before_open = None
    for _ in range(incidents):
        result = await arecover(incident, checkpointer=None, runtime_context=ctx)
        assert not result.recovered
        if before_open is None and store.snapshot()["op"]["state"] == "open":
            before_open = outage.total
    assert before_open is not None
    after = outage.total - before_open
    assert after == 0, f"{after} calls after the breaker opened"
    return {"calls_until_open": before_open, "calls_after_open": after, "incidents": incidents,
            "rejected": store.snapshot()["op"]["rejected"]}


async def bench(incidents: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"incidents": incidents, "rounds": rounds, "load_average": list(os.getloadavg())}
    httpd, url = _server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with open_checkpointer(str(Path(tmp) / "bench.sqlite")) as saver, \
                    httpx.AsyncClient(timeout=5) as client:
                for label, make in (("in-process", lambda o: in_process_op(o)),
                                    ("loopback-http", lambda o: http_op(o, url, client))):
                    out[label] = await measure(make, saver, incidents, rounds)
    finally:
        httpd.shutdown()
        httpd.server_close()
    out["exactly_four_calls"] = await exactly_four_calls()
    out["breaker"] = await no_calls_while_open()
    return out


def markdown(r: dict[str, Any]) -> str:
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("langgraph", "tenacity", "httpx"))
    load = ", ".join(f"{x:.1f}" for x in r["load_average"])
    lines = [
        "## Backoff",
        "",
        f"`python bench/bench_backoff.py --incidents {r['incidents']} --rounds {r['rounds']}` (medians) on "
        f"{platform.python_implementation()} "
        f"{platform.python_version()} ({platform.machine()}, {os.cpu_count()} CPUs, load average {load} at the "
        f"start; {versions}); waits injected as zero. Each backoff "
        "attempt is one graph step checkpointed to a SQLite file with `durability=\"sync\"`. Marginal = the "
        "cost of one more attempt: (an incident needing 5 re-runs - one needing 1) / 4. Amortised = an "
        "incident of 5 re-runs, classify and finish included, / 5. tenacity = `AsyncRetrying` around the "
        "same call with no waits, marginal likewise (plain isinstance predicate; \"+ classify\" retries on our "
        "classification, the part of a step that is not LangGraph or SQLite).",
        "",
        "| call | graph ms/attempt (marginal) | graph ms/attempt (amortised) | tenacity ms/attempt | "
        "tenacity + classify ms/attempt | ratio (marginal) | target < 10 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in ("in-process", "loopback-http"):
        x = r[label]
        ok = "met" if x["graph_ms_per_attempt"] < TARGET_MS else "MISSED"
        lines.append(f"| {label} | {x['graph_ms_per_attempt']:.2f} | {x['graph_amortised_ms_per_attempt']:.2f} | "
                     f"{x['tenacity_ms_per_attempt']:.3f} | {x['tenacity_with_classify_ms_per_attempt']:.3f} | "
                     f"{x['ratio_graph_vs_tenacity']}x | {ok} |")
    b = r["breaker"]
    lines += [
        "",
        "- Outage of k = 3 failures: calls made " + ", ".join(f"{k} {v}" for k, v in r["exactly_four_calls"].items())
        + " (exactly 4 each: the original call + 3 re-runs).",
        f"- Permanent outage, breaker threshold 5, {b['incidents']} incidents sharing one store: "
        f"{b['calls_until_open']} calls until it opened, {b['calls_after_open']} after "
        f"({b['rejected']} attempts refused at once).",
        "",
        NOTES,
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace the '## Backoff' section of `path` (up to the next '## '), or append it; others untouched."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "## Backoff"), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + [""] + lines[end:]).rstrip("\n") + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=40, help="incidents per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements; the median is reported")
    parser.add_argument("--results", type=Path, default=None, help="Markdown file whose Backoff section to write")
    args = parser.parse_args(argv)
    result = asyncio.run(bench(args.incidents, args.rounds))
    print(json.dumps(result, indent=2))
    section = markdown(result)
    print(section)
    if args.results is not None:
        write_section(args.results, section)
    missed = [k for k in ("in-process", "loopback-http") if result[k]["graph_ms_per_attempt"] >= TARGET_MS]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
