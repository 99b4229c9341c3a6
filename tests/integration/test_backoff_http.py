"""backoff against a real loopback HTTP service: attempt counts, waits, Retry-After, breaker, permanent errors."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time

import httpx
import openai
import pytest
import requests

from kgot_errors import ErrorKind, Layer, Verdict, recover
from kgot_errors.runtime.api_errors import APIErrorManager
from kgot_errors.runtime.breaker import BreakerStore, CircuitOpenError
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import ApiSettings, Settings


class Sleeps:
    """The injected sleep: records each wait, never waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fetch(url: str) -> dict:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()


def fetch_sync(url: str) -> dict:
    response = requests.get(url, timeout=5)
    response.raise_for_status()
    return response.json()


async def list_models(base_url: str) -> list[str]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    try:
        return [m.id async for m in client.models.list()]
    finally:
        await client.close()


def original_failure(url: str) -> httpx.HTTPStatusError:
    """The caller's own first call, which fails: the incident recover() gets."""
    with pytest.raises(httpx.HTTPStatusError) as info:
        asyncio.run(fetch(url))
    return info.value


def ctx(sleeps: Sleeps, *, seed: int = 0, clock: Clock | None = None, **api: object) -> RecoveryContext:
    settings = Settings(api_error_management=ApiSettings(**api)) if api else Settings()
    return RecoveryContext(settings=settings, operations={"fetch": fetch, "fetch_sync": fetch_sync,
                                                          "list_models": list_models},
                           sleep=sleeps, rng=random.Random(seed), breakers=BreakerStore(clock=clock or Clock()))


def backoff_attempts(result):
    return result.attempts_by(Layer.BACKOFF)


def test_three_failures_then_an_answer_take_exactly_four_calls(flaky_server):
    flaky_server.script(503, 503, 503)
    url = f"{flaky_server.url}/data"
    sleeps = Sleeps()
    result = recover(original_failure(url), operation="fetch", arguments={"url": url}, checkpointer="memory",
                     runtime_context=ctx(sleeps, seed=11))
    assert result.recovered and result.recovered_by is Layer.BACKOFF
    assert result.value == {"ok": True, "request": 4}
    assert flaky_server.requests == 4  # the original call + 3 re-runs
    tries = backoff_attempts(result)
    assert [(a.try_no, a.verdict) for a in tries] == [(1, Verdict.FAILED), (2, Verdict.FAILED), (3, Verdict.RECOVERED)]
    assert tries[-1].validator == "operation"
    assert [a.evidence["status_code"] for a in tries[:2]] == [503, 503]
    # waits drawn from windows [1, 1], [1, 2], [1, 4] with the context's seeded rng, and recorded as slept
    assert [a.evidence["wait_window_s"] for a in tries] == [[1.0, 1.0], [1.0, 2.0], [1.0, 4.0]]
    rng = random.Random(11)
    assert sleeps.waits == pytest.approx([rng.uniform(1, 1), rng.uniform(1, 2), rng.uniform(1, 4)])
    assert [a.evidence["waited_s"] for a in tries] == pytest.approx(sleeps.waits, abs=1e-6)


def test_an_outage_longer_than_six_calls_ends_not_recovered_after_five_reruns(flaky_server):
    flaky_server.always(503)
    url = f"{flaky_server.url}/data"
    sleeps = Sleeps()
    result = recover(original_failure(url), operation="fetch", arguments={"url": url}, checkpointer="memory",
                     runtime_context=ctx(sleeps, circuit_breaker_threshold=10))
    assert not result.recovered and result.outcome == "not_recovered"
    assert flaky_server.requests == 6  # max_retries=6 counts the original call
    assert [a.try_no for a in backoff_attempts(result)] == [1, 2, 3, 4, 5]
    assert backoff_attempts(result)[-1].evidence["final"] is True
    assert "no calls left" in backoff_attempts(result)[-1].reason
    windows = [a.evidence["wait_window_s"][1] for a in backoff_attempts(result)]
    assert windows == [1.0, 2.0, 4.0, 8.0, 16.0] and sum(windows) == 31.0  # the real bound, whatever max=60 says
    assert all(1.0 <= w <= top for w, top in zip(sleeps.waits, windows, strict=True))


def test_retry_after_seconds_from_the_original_failure_sets_the_first_wait(flaky_server):
    flaky_server.script((429, {"Retry-After": "7"}))
    url = f"{flaky_server.url}/data"
    exc = original_failure(url)
    sleeps = Sleeps()
    result = recover(exc, operation="fetch", arguments={"url": url}, checkpointer="memory",
                     runtime_context=ctx(sleeps))
    assert result.recovered and flaky_server.requests == 2
    assert sleeps.waits == [7.0]  # window [1, 1] drew 1 s; the server asked for 7
    assert backoff_attempts(result)[0].evidence["retry_after_applied_s"] == 7.0


def test_retry_after_http_date_from_a_rerun_sets_the_next_wait(flaky_server):
    when = email.utils.formatdate(time.time() + 6, usegmt=True)
    flaky_server.script(503, (429, {"Retry-After": when}))
    url = f"{flaky_server.url}/data"
    sleeps = Sleeps()
    result = recover(original_failure(url), operation="fetch", arguments={"url": url}, checkpointer="memory",
                     runtime_context=ctx(sleeps))
    assert result.recovered and flaky_server.requests == 3
    first, second = backoff_attempts(result)[:2]
    assert first.evidence["status_code"] == 429 and 4.0 < first.evidence["retry_after"] <= 6.0
    assert sleeps.waits[0] == 1.0
    assert 4.0 < sleeps.waits[1] <= 6.0  # longer than the [1, 2] window: the date won
    assert second.evidence["retry_after_applied_s"] == pytest.approx(sleeps.waits[1])


def test_a_huge_retry_after_is_capped_by_max_retry_after_seconds(flaky_server):
    flaky_server.script((503, {"Retry-After": "3600"}))
    url = f"{flaky_server.url}/data"
    sleeps = Sleeps()
    result = recover(original_failure(url), operation="fetch", arguments={"url": url}, checkpointer="memory",
                     runtime_context=ctx(sleeps, max_retry_after_seconds=45))
    assert result.recovered
    assert sleeps.waits == [45.0]


def test_retry_after_from_a_requests_error_is_honoured_by_a_sync_operation(flaky_server):
    flaky_server.script((503, {"Retry-After": "2"}), (503, {"Retry-After": "9"}))
    url = f"{flaky_server.url}/sync"
    with pytest.raises(requests.HTTPError) as info:
        fetch_sync(url)
    sleeps = Sleeps()
    result = recover(info.value, operation="fetch_sync", arguments={"url": url}, checkpointer="memory",
                     runtime_context=ctx(sleeps))
    assert result.recovered and result.value == {"ok": True, "request": 3}
    assert result.kind is ErrorKind.TRANSIENT
    assert sleeps.waits == [2.0, 9.0]


def test_openai_rate_limit_is_retried_and_its_retry_after_honoured(flaky_server):
    flaky_server.script((429, {"Retry-After": "3"}), (500, {}))
    base = f"{flaky_server.url}/v1"
    with pytest.raises(openai.RateLimitError) as info:
        asyncio.run(list_models(base))
    sleeps = Sleeps()
    result = recover(info.value, operation="list_models", arguments={"base_url": base}, checkpointer="memory",
                     runtime_context=ctx(sleeps))
    assert result.recovered and result.value == ["m"]
    assert flaky_server.requests == 3
    assert sleeps.waits[0] == 3.0
    assert backoff_attempts(result)[0].evidence["error_type"] == "openai.InternalServerError"


def test_a_permanent_401_during_retries_is_not_retried_and_goes_to_refine(flaky_server):
    flaky_server.script(503, 401)
    url = f"{flaky_server.url}/data"
    sleeps = Sleeps()
    result = recover(original_failure(url), operation="fetch", arguments={"url": url}, checkpointer="memory",
                     runtime_context=ctx(sleeps))
    assert not result.recovered
    assert flaky_server.requests == 2  # the 401 ended the retries
    [only] = backoff_attempts(result)
    assert only.evidence["kind"] == "permanent" and only.evidence["status_code"] == 401 and only.evidence["final"]
    assert "not retried" in only.reason
    assert [str(a.layer) for a in result.attempts][1:2] == ["refine"]  # arguments might be fixed


def test_breaker_opens_after_threshold_stops_calling_then_half_opens_for_one_probe(flaky_server):
    flaky_server.always(503)
    url = f"{flaky_server.url}/data"
    clock, sleeps = Clock(), Sleeps()
    context = ctx(sleeps, clock=clock, circuit_breaker_threshold=3, circuit_breaker_reset_seconds=30)
    first = recover(original_failure(url), operation="fetch", arguments={"url": url}, checkpointer="memory",
                    runtime_context=context)
    assert flaky_server.requests == 4  # original + 3 failing re-runs opened the circuit
    assert [a.verdict for a in backoff_attempts(first)] == [Verdict.FAILED] * 4
    stopped = backoff_attempts(first)[-1]
    assert stopped.reason.startswith("circuit open") and stopped.evidence["final"] and stopped.evidence["calls"] == 0
    assert "waited_s" not in stopped.evidence  # ended at once: no wait for a dependency known to be down
    assert context.breakers.snapshot()["fetch"]["state"] == "open"

    before = flaky_server.requests
    second = recover(original_failure(url), operation="fetch", arguments={"url": url}, checkpointer="memory",
                     runtime_context=context)
    assert flaky_server.requests == before + 1  # only the caller's own call: backoff made none
    assert [a.reason.split(":")[0] for a in backoff_attempts(second)] == ["circuit open"]

    clock.now += 30  # reset timeout passes: half-open, one probe
    flaky_server.script()  # the service is back
    third = recover({"error_type": "httpx.ConnectError", "error_mro": ["httpx.ConnectError", "httpx.TransportError"],
                     "message": "connection refused"}, operation="fetch",
                    arguments={"url": url}, checkpointer="memory", runtime_context=context)
    assert third.recovered and flaky_server.requests == before + 2
    assert context.breakers.snapshot()["fetch"]["state"] == "closed"


def test_api_error_manager_retries_the_same_server_with_the_same_waits_as_the_graph(flaky_server):
    url = f"{flaky_server.url}/data"
    flaky_server.script(503, 503, 503)
    graph_sleeps = Sleeps()
    recover(original_failure(url), operation="fetch", arguments={"url": url}, checkpointer="memory",
            runtime_context=ctx(graph_sleeps, seed=5))

    flaky_server.script(503, 503, 503)
    before = flaky_server.requests
    manager_sleeps = Sleeps()
    api = APIErrorManager(sleep=manager_sleeps, rng=random.Random(5), breakers=BreakerStore())
    assert asyncio.run(api.execute_with_retry(fetch, "fetch", url)) == {"ok": True, "request": before + 4}
    assert flaky_server.requests == before + 4  # the manager makes the first call itself
    assert manager_sleeps.waits == graph_sleeps.waits  # one machinery: same windows, same draws
    assert api.get_api_error_statistics()["total_api_errors"] == 3


def test_api_error_manager_raises_circuit_open_without_calling_a_dependency_known_down(flaky_server):
    flaky_server.always(503)
    url = f"{flaky_server.url}/data"
    store, sleeps = BreakerStore(clock=Clock()), Sleeps()
    api = APIErrorManager(settings=ApiSettings(circuit_breaker_threshold=2), sleep=sleeps, breakers=store)
    with pytest.raises(CircuitOpenError) as info:
        asyncio.run(api.execute_with_retry(fetch, "fetch", url))
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    assert flaky_server.requests == 2 and len(sleeps.waits) == 1
    with pytest.raises(CircuitOpenError):
        asyncio.run(api.execute_with_retry(fetch, "fetch", url))
    assert flaky_server.requests == 2
