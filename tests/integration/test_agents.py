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
