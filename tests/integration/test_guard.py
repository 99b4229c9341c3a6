"""guard(): sync and async callables and LangChain tools recover through the real graph, or raise RecoveryFailed."""

from __future__ import annotations

import asyncio
import json

import pytest
from kgot_errors import Layer, RecoveryContext, Settings, history
from kgot_errors.errors import RecoveryFailed
from kgot_errors.integration import guard
from kgot_errors.testing import RecordingSleep, answer, loopback_model, loopback_openai
from langchain_core.tools import tool
from pydantic import BaseModel


class Flaky:
    """Fails with `error` for the first `failures` calls, then returns `value`; records every call's arguments."""

    def __init__(self, failures: int, value: object, error: type[Exception] = ConnectionError) -> None:
        self.failures, self.value, self.error = failures, value, error
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls.append((args, kwargs))
        if len(self.calls) <= self.failures:
            raise self.error(f"connection reset (call {len(self.calls)})")
        return self.value


def fast(**settings: object) -> RecoveryContext:
    """A context whose backoff waits are recorded, not slept."""
    return RecoveryContext(settings=Settings(**settings), sleep=RecordingSleep())


def test_a_transient_failure_is_rerun_by_backoff_with_the_same_bound_arguments():
    flaky = Flaky(2, {"rows": 3})

    @guard(runtime_context=fast(), checkpointer=None)
    def fetch(table: str, /, limit: int, *, where: str = "") -> dict:
        return flaky(table, limit, where=where)

    assert fetch("users", 10, where="age > 3") == {"rows": 3}
    assert flaky.calls == [(("users", 10), {"where": "age > 3"})] * 3  # positional-only re-bound by position


async def test_an_async_callable_returns_the_rerun_s_real_object_not_its_json_form():
    class Rows(tuple):
        pass

    calls = []

    @guard(runtime_context=fast(), checkpointer=None)
    async def fetch(*tables: str, page: int = 1) -> Rows:
        calls.append((tables, page))
        if len(calls) == 1:
            raise TimeoutError("read timed out")
        return Rows(tables)

    got = await fetch("a", "b", page=2)
    assert type(got) is Rows and got == ("a", "b")  # backoff stored it as JSON; the guard hands back the object
    assert calls == [(("a", "b"), 2), (("a", "b"), 2)]


def test_broken_llm_output_is_repaired_and_validated_into_the_pydantic_schema():
    class Review(BaseModel):
        stars: int
        text: str

    @guard(schema=Review, checkpointer=None, settings=Settings())
    def parse(raw: str) -> Review:
        return Review.model_validate(json.loads(raw))

    assert parse("""```json\n{'stars': 4, 'text': "good",}\n```""") == Review(stars=4, text="good")


def test_not_recovered_raises_recovery_failed_with_the_result_and_the_original_cause(tmp_path):
    results = []

    @guard(checkpointer=str(tmp_path / "g.sqlite"), settings=Settings(), on_result=results.append)
    def parse(raw: str) -> dict:
        return json.loads(raw)

    with pytest.raises(RecoveryFailed) as info:
        parse("I'm sorry, I can't produce JSON for that.")
    result = info.value.result
    assert not result.recovered and result.outcome == "not_recovered" and results == [result]
    assert isinstance(info.value.__cause__, json.JSONDecodeError) and info.value.original is info.value.__cause__
    recorded = history(result.thread_id, checkpointer=str(tmp_path / "g.sqlite"))
    assert [a.layer for a in recorded["attempts"]][:2] == [Layer.UNICODE_FIX, Layer.PARSER_FIX]


def test_non_json_arguments_are_not_rerun_and_the_summary_says_which_argument(tmp_path):
    flaky = Flaky(1, "ok")

    @guard(runtime_context=fast(), checkpointer=None)
    def send(payload: bytes) -> str:
        return flaky(payload)

    with pytest.raises(RecoveryFailed) as info:
        send(b"\x00\x01")
    result = info.value.result
    assert len(flaky.calls) == 1  # never re-run with arguments the checkpoint cannot hold
    assert "backoff cannot re-run" in result.summary and "'payload' (bytes) is not JSON" in result.summary
    backoff = result.attempts_by(Layer.BACKOFF)
    assert [str(a.verdict) for a in backoff] == ["skipped"]


def test_a_method_s_receiver_is_not_an_argument_and_the_bound_method_is_rerun():
    class Client:
        def __init__(self) -> None:
            self.flaky = Flaky(1, 200)

        @guard(runtime_context=fast(), checkpointer=None)
        def get(self, path: str) -> int:
            return self.flaky(path)

    client = Client()
    assert client.get("/health") == 200 and client.flaky.calls == [(("/health",), {})] * 2


def test_interrupts_and_inner_recovery_failures_pass_through_untouched():
    from langgraph.errors import GraphInterrupt

    @guard(checkpointer=None, settings=Settings())
    def pause() -> None:
        raise GraphInterrupt(())

    with pytest.raises(GraphInterrupt):
        pause()


def test_a_langchain_tool_keeps_its_name_and_schema_and_recovers_by_rerun():
    flaky = Flaky(1, "sunny")

    @tool
    def weather(city: str) -> str:
        """Current weather in a city."""
        return flaky(city)

    safe = guard(weather, runtime_context=fast(), checkpointer=None)
    assert (safe.name, safe.args) == (weather.name, weather.args)
    assert safe.invoke({"city": "Paris"}) == "sunny" and flaky.calls == [(("Paris",), {})] * 2


async def test_an_async_tool_recovers_broken_output_with_the_loopback_model():
    schema = {"type": "object", "properties": {"temp": {"type": "integer"}}, "required": ["temp"]}
    with loopback_openai([answer('{"temp": 21}')]) as server:

        @tool
        async def forecast(city: str) -> dict:
            """Tomorrow's forecast."""
            return json.loads("The forecast for " + city + " is mild.")

        safe = guard(forecast, schema=schema, model=loopback_model(server), checkpointer=None,
                     settings=Settings())
        assert await safe.ainvoke({"city": "Oslo"}) == {"temp": 21}
        assert len(server.requests) == 1 and "mild" in server.requests[0].text


def test_recovery_inside_a_langgraph_node_is_its_own_thread_not_a_hidden_subgraph(tmp_path):
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        out: dict

    @guard(checkpointer=None, settings=Settings())
    def parse(raw: str) -> dict:
        return json.loads(raw)

    g = StateGraph(State)
    g.add_node("n", lambda s: {"out": parse("{'a': 1,}")})
    g.add_edge(START, "n")
    g.add_edge("n", END)
    saver = InMemorySaver()
    app = g.compile(checkpointer=saver)
    out = asyncio.run(app.ainvoke({}, {"configurable": {"thread_id": "agent"}}))
    assert out["out"] == {"a": 1}
    namespaces = {c.config["configurable"]["checkpoint_ns"] for c in saver.list(None)}
    assert namespaces == {""}  # nothing of the recovery was written into the agent's thread
