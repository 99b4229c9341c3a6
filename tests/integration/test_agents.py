"""Agents with a loopback chat model recover failing tools and nodes: create_agent with a guarded tool, ToolNode's
handle_tool_errors, a node-level error handler, and the recovery graph as a subgraph with the agent's context."""

from __future__ import annotations

import json
import operator
from typing import Annotated, Any, TypedDict

import pytest
from kgot_errors import Incident, Layer, RecoveryContext, Settings, build_graph
from kgot_errors.errors import RecoveryFailed
from kgot_errors.integration import guard, node_error_handler, tool_error_handler
from kgot_errors.testing import (
    RecordingSleep,
    answer,
    chat,
    loopback_model,
    loopback_openai,
)
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.output_parsers import JsonOutputParser
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

SCHEMA = {"type": "object", "properties": {"temp": {"type": "integer"}}, "required": ["temp"]}


def test_create_agent_with_a_guarded_tool_recovers_a_transient_failure_by_rerunning_it():
    agents = pytest.importorskip("langchain.agents")
    calls: list[str] = []
    results = []

    @tool
    def weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        if len(calls) == 1:
            raise ConnectionResetError("upstream reset the connection")
        return f"sunny in {city}"

    safe = guard(weather, checkpointer=None, on_result=results.append,
                 runtime_context=RecoveryContext(settings=Settings(), sleep=RecordingSleep()))
    with loopback_openai([chat('{"city": "Paris"}', tool="weather"), "It is sunny in Paris."]) as server:
        agent = agents.create_agent(loopback_model(server), tools=[safe])
        out = agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_messages] == ["sunny in Paris"] and tool_messages[0].status == "success"
    assert out["messages"][-1].content == "It is sunny in Paris." and calls == ["Paris", "Paris"]
    assert [r.recovered_by for r in results] == [Layer.BACKOFF]
    assert "sunny in Paris" in server.requests[-1].text  # the model saw the recovered tool output


def _tool_agent(model: Any, tools: list, handler: Any) -> Any:
    """model -> ToolNode(handle_tool_errors=handler) -> model, by hand."""
    bound = model.bind_tools(tools)
    g = StateGraph(MessagesState)
    g.add_node("agent", lambda s: {"messages": [bound.invoke(s["messages"])]})
    g.add_node("tools", ToolNode(tools, handle_tool_errors=handler))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g.compile()


@tool
def forecast(city: str) -> dict:
    """Tomorrow's forecast, from an upstream service that answers in sloppy JSON."""
    return json.loads("{'temp': 21,}" if city == "Oslo" else "no forecast available")


def test_tool_node_handle_tool_errors_repairs_broken_tool_output_for_the_model():
    handler = tool_error_handler(schema=SCHEMA, checkpointer=None, settings=Settings())
    script = [chat('{"city": "Oslo"}', tool="forecast"), "21 degrees in Oslo."]
    with loopback_openai(script) as server:
        out = _tool_agent(loopback_model(server), [forecast], handler).invoke({"messages": [HumanMessage("Oslo?")]})
    reply = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert json.loads(reply.content) == {"temp": 21} and reply.tool_call_id == "call_loopback"
    assert '{"temp": 21}' in server.requests[-1].text and out["messages"][-1].content == "21 degrees in Oslo."


def test_tool_node_reports_what_was_tried_when_nothing_could_be_proven():
    handler = tool_error_handler(schema=SCHEMA, checkpointer=None, settings=Settings())
    script = [chat('{"city": "Lima"}', tool="forecast"), "Sorry, no forecast."]
    with loopback_openai(script) as server:
        out = _tool_agent(loopback_model(server), [forecast], handler).invoke({"messages": [HumanMessage("Lima?")]})
    reply = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert reply.status == "error" and reply.content.startswith("Error: JSONDecodeError")
    assert "could not recover it" in reply.content and "parser_fix failed" in reply.content


def test_tool_node_hands_invalid_arguments_back_to_the_model_and_reports_a_guarded_tool_s_failure():
    handler = tool_error_handler(checkpointer=None, settings=Settings())
    guarded = guard(forecast, checkpointer=None, settings=Settings())
    script = [chat('{"town": "Oslo"}', tool="forecast"), chat('{"city": "Lima"}', tool="forecast"), "Done."]
    with loopback_openai(script) as server:
        out = _tool_agent(loopback_model(server), [guarded], handler).invoke({"messages": [HumanMessage("?")]})
    bad_args, failed = [m.content for m in out["messages"] if isinstance(m, ToolMessage)]
    assert "city" in bad_args and "Field required" in bad_args and "kgot-errors" not in bad_args
    assert "could not recover it" in failed and failed.count("Error: JSONDecodeError") == 1  # recovered once, by guard


class Extract(TypedDict, total=False):
    text: str
    data: dict
    recovery: dict
    log: Annotated[list, operator.add]


def _extract_graph(model: Any, handler: Any) -> Any:
    def extract(state: Extract) -> Extract:
        return {"data": JsonOutputParser().invoke(model.invoke(state["text"]))}

    g = StateGraph(Extract)
    g.add_node("extract", extract, error_handler=handler)
    g.add_node("use", lambda s: {"log": [f"use {s['data']}"]})
    g.add_node("ask_human", lambda s: {"log": [f"ask: {s['recovery']['summary'][:30]}"]})
    g.add_edge(START, "extract")
    g.add_edge("extract", "use")
    g.add_edge("use", END)
    g.add_edge("ask_human", END)
    return g.compile()


def test_a_node_error_handler_recovers_a_failing_llm_node_and_continues_the_run():
    def keep(state: Extract, result: Any) -> Extract:
        return {"data": result.value, "recovery": result.to_data()}

    handler = node_error_handler(goto="use", update=keep, schema={"type": "object", "required": ["name"]},
                                 checkpointer=None, settings=Settings())
    with loopback_openai(["Sure! {'name': 'Ada', 'age': 36,} Hope that helps."]) as server:
        out = _extract_graph(loopback_model(server), handler).invoke({"text": "Who wrote the first program?"})
    assert out["data"] == {"name": "Ada", "age": 36} and out["log"] == ["use {'name': 'Ada', 'age': 36}"]
    assert out["recovery"]["recovered_by"] == "parser_fix" and len(server.requests) == 1


async def test_a_node_error_handler_routes_to_on_failure_or_raises_recovery_failed():
    routed = node_error_handler(goto="use", on_failure="ask_human", checkpointer=None, settings=Settings())
    with loopback_openai(["I won't answer that."] * 2) as server:
        out = await _extract_graph(loopback_model(server), routed).ainvoke({"text": "?"})
        assert out["log"][0].startswith("ask: not recovered (syntax)") and not out["recovery"]["recovered"]
        raising = node_error_handler(goto="use", checkpointer=None, settings=Settings())
        with pytest.raises(RecoveryFailed) as info:
            await _extract_graph(loopback_model(server), raising).ainvoke({"text": "?"})
    assert info.value.result.outcome == "not_recovered"
    assert type(info.value.__cause__).__name__ == "OutputParserException"


async def test_the_recovery_graph_as_a_subgraph_uses_the_agent_s_recovery_context_and_model():
    class Parent(TypedDict, total=False):
        incident: dict
        result: dict

    refusal = json.JSONDecodeError("Expecting value", "Sorry, I cannot do that.", 0)
    parent = StateGraph(Parent, context_schema=RecoveryContext)
    parent.add_node("fail", lambda s: {"incident": Incident.from_exception(refusal, schema=SCHEMA).to_data()})
    parent.add_node("recovery", build_graph())
    parent.add_edge(START, "fail")
    parent.add_edge("fail", "recovery")
    parent.add_edge("recovery", END)
    with loopback_openai([answer('{"temp": 19}')]) as server:
        ctx = RecoveryContext(settings=Settings(), model=loopback_model(server))
        out = await parent.compile().ainvoke({}, context=ctx)  # the layers are async nodes
    assert out["result"]["recovered_by"] == "llm_fix" and out["result"]["value"] == {"temp": 19}
    assert len(server.requests) == 1


# --- recovered tool calls are successes; handlers refuse keys the state lacks; typed values; one-line failures ----

@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_create_react_agent_with_the_handler_around_tool_calls_gets_success_messages_when_recovered():
    from langgraph.prebuilt import create_react_agent

    handler = tool_error_handler(schema=SCHEMA, checkpointer="memory", settings=Settings())
    script = [chat('{"city": "Oslo"}', tool="forecast"), chat('{"city": "Lima"}', tool="forecast"), "Done."]
    with loopback_openai(script) as server:
        agent = create_react_agent(loopback_model(server), handler.tool_node([forecast]))
        out = agent.invoke({"messages": [HumanMessage("Oslo, then Lima?")]})
    oslo, lima = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert oslo.status == "success" and json.loads(oslo.content) == {"temp": 21}
    assert oslo.artifact["kgot_errors"]["recovered_by"] == "parser_fix" and oslo.artifact["kgot_errors"]["thread_id"]
    assert lima.status == "error" and "could not recover it" in lima.content and lima.artifact is None
    assert '{"temp": 21}' in server.requests[1].text  # the model read the repaired value


async def test_the_async_wrapper_and_invalid_arguments_in_a_prebuilt_tool_node():
    handler = tool_error_handler(schema=SCHEMA, checkpointer=None, settings=Settings())
    node = handler.tool_node([forecast])
    calls = [{"name": "forecast", "args": {"city": "Oslo"}, "id": "c1", "type": "tool_call"},
             {"name": "forecast", "args": {"town": "Oslo"}, "id": "c2", "type": "tool_call"}]
    from langchain_core.messages import AIMessage

    g = StateGraph(MessagesState)
    g.add_node("tools", node)
    g.add_edge(START, "tools")
    g.add_edge("tools", END)
    out = await g.compile().ainvoke({"messages": [AIMessage("", tool_calls=calls)]})
    good, bad = out["messages"][1:]
    assert good.status == "success" and json.loads(good.content) == {"temp": 21}
    assert bad.status == "error" and "city" in bad.content and "kgot-errors" not in bad.content


def test_node_error_handler_refuses_a_key_the_state_schema_lacks_when_it_is_made():
    from kgot_errors.errors import ConfigError

    with pytest.raises(ConfigError, match="'MessagesState' has no 'recovery' key"):
        node_error_handler(goto="next", state_schema=MessagesState)
    node_error_handler(goto="next", update="messages", state_schema=MessagesState)  # a key it has: fine
    node_error_handler(goto="use", state_schema=Extract)


def test_node_error_handler_on_a_messages_state_graph_fails_loudly_instead_of_dropping_the_recovery():
    from kgot_errors.errors import ConfigError

    def extract(state: MessagesState) -> dict:
        raise json.JSONDecodeError("Expecting value", "{'temp': 3,}", 0)

    g = StateGraph(MessagesState)
    g.add_node("extract", extract, error_handler=node_error_handler(goto="next", checkpointer=None,
                                                                    settings=Settings()))
    g.add_node("next", lambda s: {})
    g.add_edge(START, "extract")
    g.add_edge("next", END)
    with pytest.raises(ConfigError, match="this graph's state has no 'recovery' key"):
        g.compile().invoke({"messages": [HumanMessage("?")]})


def test_a_pydantic_schema_gives_the_typed_instance_to_update_functions_and_failures():
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    seen: list[Any] = []

    def keep(state: Extract, result: Any) -> Extract:
        seen.append(result.parsed)
        return {"data": result.value}

    handler = node_error_handler(goto="use", update=keep, schema=Person, checkpointer=None, settings=Settings())
    with loopback_openai(["{'name': 'Ada', 'age': 36,}"]) as server:
        _extract_graph(loopback_model(server), handler).invoke({"text": "?"})
    assert seen == [Person(name="Ada", age=36)]

    @guard(schema=Person, checkpointer=None, settings=Settings(), on_result=seen.append)
    def person(text: str) -> dict:
        return json.loads(text)

    assert person("{'name': 'Grace', 'age': 85,}") == Person(name="Grace", age=85)
    assert seen[-1].parsed == Person(name="Grace", age=85) and seen[-1].to_data()["value"] == {"name": "Grace",
                                                                                                "age": 85}
    with pytest.raises(RecoveryFailed) as info:
        person("nothing here")
    assert info.value.result.parsed is None


def test_recovery_failed_says_not_recovered_once():
    class Forbidden(Exception):
        status_code = 403

    @guard(checkpointer=None, settings=Settings())
    def fetch(url: str) -> dict:
        raise Forbidden("permanent error (status 403)")

    with pytest.raises(RecoveryFailed) as info:
        fetch("http://127.0.0.1:9/x")
    text = str(info.value)
    assert text.startswith("not recovered") and text.count("not recovered") == 1, text


def test_a_parent_graph_invoked_sync_embeds_the_sync_twin_of_the_recovery_graph():
    from kgot_errors.integration.sync import build_sync_graph

    class Parent(TypedDict, total=False):
        incident: dict
        result: dict

    def parent(recovery: Any) -> Any:
        g = StateGraph(Parent, context_schema=RecoveryContext)
        g.add_node("fail", lambda s: {"incident": Incident.from_exception(
            json.JSONDecodeError("Expecting value", "{'temp': 7,}", 0), schema=SCHEMA).to_data()})
        g.add_node("recovery", recovery)
        g.add_edge(START, "fail")
        g.add_edge("fail", "recovery")
        g.add_edge("recovery", END)
        return g.compile()

    with pytest.raises(TypeError, match="No synchronous function provided"):
        parent(build_graph()).invoke({}, context=RecoveryContext(settings=Settings()))
    out = parent(build_sync_graph()).invoke({}, context=RecoveryContext(settings=Settings()))
    assert out["result"]["recovered_by"] == "parser_fix" and out["result"]["value"] == {"temp": 7}
    assert parent(build_sync_graph()).invoke({})["result"]["value"] == {"temp": 7}  # no context: from settings


async def test_the_sync_twin_also_runs_under_ainvoke():
    from kgot_errors.integration.sync import build_sync_graph

    out = await build_sync_graph().ainvoke({"incident": {"error_type": "json.decoder.JSONDecodeError",
                                                         "message": "m", "content": "[1, 2,"}},
                                           context=RecoveryContext(settings=Settings()))
    assert out == {"result": out["result"]} and out["result"]["value"] == [1, 2]
