"""Builds the recovery StateGraph: one node per layer, conditional edges from graph/routing.py."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from kgot_errors.graph import routing
from kgot_errors.nodes import backoff, classify, finish, llm_fix, parser_fix, refine, sandbox, unicode_fix, vote
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.state import RecoveryInput, RecoveryOutput, RecoveryState

__all__ = ["GRAPH_NAME", "build_graph"]

GRAPH_NAME = "kgot-errors"


def _state_graph() -> StateGraph:
    g = StateGraph(RecoveryState, context_schema=RecoveryContext, input_schema=RecoveryInput,
                   output_schema=RecoveryOutput)
    for node in (classify, unicode_fix, parser_fix, llm_fix, backoff, sandbox, refine, vote, finish):
        g.add_node(node.__name__, node)
    g.add_edge(START, "classify")
    g.add_conditional_edges("classify", routing.after_classify)
    g.add_conditional_edges("unicode_fix", routing.after_unicode_fix)
    g.add_conditional_edges("parser_fix", routing.after_parser_fix)
    g.add_conditional_edges("llm_fix", routing.after_llm_fix)
    g.add_conditional_edges("backoff", routing.after_backoff)
    g.add_conditional_edges("sandbox", routing.after_sandbox)
    g.add_conditional_edges("refine", routing.after_refine)
    g.add_edge("vote", "finish")
    g.add_edge("finish", END)
    return g


def build_graph(checkpointer: Any = None, *, cache: Any = None, name: str = GRAPH_NAME) -> Any:
    """The compiled recovery graph; use it directly, as a subgraph, or behind LangGraph Server.

    Input `{"incident": {...}}`, output `{"result": {...}}`; pass a RecoveryContext as
    `context=` to supply the model, sandbox, operations and settings.
    """
    return _state_graph().compile(checkpointer=checkpointer, cache=cache, name=name)
