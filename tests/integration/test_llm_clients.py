"""The model client across event loops and calls: no llm_fix try is lost to a connection another loop opened,
one model per configuration, structured runnables built once per loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from kgot_errors import arecover, recover
from kgot_errors.runtime.model import call_deadline, make_model, model_for_loop, structured_runnable
from kgot_errors.runtime.settings import load_settings
from kgot_errors.state import Layer
from kgot_errors.testing import answer, loopback_model, loopback_openai, slow
from kgot_errors.testing.openai_server import trickle

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
GOOD = '{"name": "Bob", "age": 30}'


def incident(n: int) -> dict:
    """A distinct incident each time (no correction-cache replay) that only the model can fix ("thirty")."""
    return {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value", "output_schema": SCHEMA,
            "content": f"{{name: Bob{n}, age: thirty"}


def one_clean_try(result) -> None:
    fixes = result.attempts_by(Layer.LLM_FIX)  # a lost try shows as a failed attempt before the one that worked
    assert [(f.verdict, f.llm_calls) for f in fixes] == [("recovered", 1)], [f.reason for f in fixes]
    assert (result.recovered, result.recovered_by) == (True, Layer.LLM_FIX)


@pytest.fixture
def configured(monkeypatch):
    """A model configured the way a user configures it (environment), aimed at a loopback server."""
    with loopback_openai(answer(GOOD)) as server:
        monkeypatch.setenv("KGOT_MODEL", "openai:loopback-model")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def test_arecover_on_a_closed_loop_then_recover_loses_no_try(configured):
    one_clean_try(asyncio.run(arecover(incident(1), checkpointer=None)))  # this loop is closed afterwards
    one_clean_try(recover(incident(2), checkpointer=None))  # the library's own loop
    assert len(configured.chat_requests) == 2


def test_recover_while_the_caller_loop_still_holds_a_connection_loses_no_try(configured):
    async def caller() -> list:
        first = await arecover(incident(3), checkpointer=None)
        second = recover(incident(4), checkpointer=None)  # from inside a running loop: runs on the library's
        third = await arecover(incident(5), checkpointer=None)  # and back on the caller's loop
        return [first, second, third]

    for result in asyncio.run(caller()):
        one_clean_try(result)
    assert len(configured.chat_requests) == 3


def test_one_model_object_serves_loops_in_several_threads_at_once():
    with loopback_openai(answer(GOOD)) as server:
        model = loopback_model(server)
        results: list = []
        errors: list = []

        def in_own_loop(base: int) -> None:
            try:
                async def three() -> list:
                    return await asyncio.gather(*(arecover(incident(base + i), checkpointer=None, model=model)
                                                  for i in range(3)))

                results.extend(asyncio.run(three()))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=in_own_loop, args=(100 * k,)) for k in range(1, 4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        results.append(recover(incident(999), checkpointer=None, model=model))
    assert not errors
    assert len(results) == 10
    for result in results:
        one_clean_try(result)
    assert len(server.chat_requests) == 10


def test_make_model_gives_one_client_per_configuration():
    env = {"KGOT_MODEL": "openai:m", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    first = make_model(load_settings(environ=env), env)
    assert make_model(load_settings(environ=env), env) is first
    for changed in ({"KGOT_MODEL": "openai:other"}, {"OPENAI_BASE_URL": "http://127.0.0.1:10/v1"},
                    {"KGOT_LLM__TIMEOUT_SECONDS": "7"}, {"OPENAI_API_KEY": "sk-2"},
                    {"KGOT_LLM__TEMPERATURE": "0.5"}, {"KGOT_LLM__CLIENT_MAX_RETRIES": "2"}):
        other = {**env, **changed}
        assert make_model(load_settings(environ=other), other) is not first, changed


def test_structured_runnables_are_built_once_per_model_and_schema_and_serve_every_loop():
    with loopback_openai(answer(GOOD)) as server:
        model = loopback_model(server)

        async def on_a_loop() -> tuple:
            a = structured_runnable(model, "json_schema", SCHEMA, None)
            b = structured_runnable(model, "json_schema", dict(SCHEMA), None)  # equal, not the same dict
            c = structured_runnable(model, "json_schema", {**SCHEMA, "required": ["name"]}, None)
            d = structured_runnable(model, "json_schema", SCHEMA, 0.7)
            return model_for_loop(model), a, b, c, d, await a.ainvoke("answer")

        bound1, a, b, c, d, message = asyncio.run(on_a_loop())
        bound2, a2, *_, again = asyncio.run(on_a_loop())
    assert a is b and len({id(a), id(c), id(d)}) == 3
    assert bound1 is not model and bound1.root_client is not model.root_client  # its own sync client
    assert bound2 is bound1 and a2 is a  # a sync client belongs to no loop: one copy serves them all
    assert message.content == again.content == GOOD  # the raw message: the layers validate it themselves


def caller_chose_the_sync_client(server) -> object:
    """A ChatOpenAI given its own sync client: the layers leave that client alone and use the async one."""
    import openai

    return loopback_model(server, http_client=openai.DefaultHttpxClient(timeout=10))


def test_a_model_with_its_own_sync_client_gets_an_async_copy_per_loop_and_loses_no_try():
    with loopback_openai(answer(GOOD)) as server:
        model = caller_chose_the_sync_client(server)

        async def on_a_loop() -> tuple:
            return model_for_loop(model), await arecover(incident(next(counter)), checkpointer=None, model=model)

        counter = iter(range(50, 60))
        bound1, first = asyncio.run(on_a_loop())
        bound2, second = asyncio.run(on_a_loop())
        third = recover(incident(next(counter)), checkpointer=None, model=model)
    assert bound1.root_client is model.root_client and bound1.root_async_client is not model.root_async_client
    assert bound2 is not bound1 and bound2.root_async_client is not bound1.root_async_client
    for result in (first, second, third):
        one_clean_try(result)


def test_a_loop_keeps_a_bounded_number_of_model_copies_and_closes_the_ones_it_drops(monkeypatch):
    from kgot_errors.runtime import model as models

    monkeypatch.setattr(models, "_MODELS_PER_LOOP", 4)
    with loopback_openai(answer(GOOD)) as server:
        async def many() -> list:
            copies = [model_for_loop(caller_chose_the_sync_client(server)) for _ in range(7)]
            await asyncio.sleep(0.05)  # the dropped copies' clients close in tasks of this loop
            return copies

        copies = asyncio.run(many())
    assert all(c.root_async_client.is_closed() for c in copies[:3])
    assert not any(c.root_async_client.is_closed() for c in copies[3:])


@pytest.mark.parametrize("reply", [trickle(0.2, GOOD), slow(30, GOOD)], ids=["trickled", "silent"])
def test_the_worker_thread_of_a_call_ends_at_its_deadline_too(reply):
    """The layer stops waiting at the deadline (asyncio.timeout); the thread's own HTTP call stops there as well."""
    with loopback_openai(lambda request: reply) as server:
        model = loopback_model(server, timeout=30)

        async def threaded():  # built where the layers build it
            return structured_runnable(model, "json_schema", SCHEMA, None)

        runnable = asyncio.run(threaded())
        started = time.monotonic()
        with call_deadline(0.8), pytest.raises(Exception) as raised:
            runnable.invoke("answer")  # in this thread, as a worker thread runs it
        elapsed = time.monotonic() - started
    assert 0.7 < elapsed < 2.0, elapsed
    assert "timed out" in str(raised.value).lower() or "deadline" in str(raised.value).lower(), raised.value
