"""Builds the recovery StateGraph: one node per layer, conditional edges from graph/routing.py."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import CachePolicy

from kgot_errors.graph import routing
from kgot_errors.nodes._llm import provider_retry_policy
from kgot_errors.nodes.backoff import backoff
from kgot_errors.nodes.classify import classify
from kgot_errors.nodes.finish import finish
from kgot_errors.nodes.human import human
from kgot_errors.nodes.llm_fix import CorrectionCache, correction_key, llm_fix
from kgot_errors.nodes.parser_fix import parser_fix
from kgot_errors.nodes.refine import refine
from kgot_errors.nodes.sandbox import sandbox
from kgot_errors.nodes.unicode_fix import unicode_fix
from kgot_errors.nodes.vote import vote, vote_sample
from kgot_errors.state.result import build_result
from kgot_errors.observability.tracing import layer_node
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import SyntaxSettings
from kgot_errors.state import RecoveryInput, RecoveryOutput, RecoveryState

__all__ = ["DETERMINISTIC_LAYERS", "DURABLE_LAYERS", "GRAPH_NAME", "build_graph"]

GRAPH_NAME = "kgot-errors"

DETERMINISTIC_LAYERS = ("classify", "unicode_fix", "parser_fix", "finish")
"""Nodes that only compute from the state: cheap, and the same answer when re-run after a crash."""
DURABLE_LAYERS = ("llm_fix", "backoff", "sandbox", "refine", "vote", "vote_sample", "human")
"""Nodes whose work must not be lost nor silently repeated (a model's tokens, an operation's side effects, a
sandbox run, a person's answer): recover() writes the state before each of them and after every step."""


class _Router(Runnable[RecoveryState, Any]):
    """A pure router as LangGraph runs it: called inline on the event loop, and not traced.

    LangGraph wraps a plain function as a traced runnable and, under ainvoke, runs a sync one
    in a worker thread: a thread hop and a trace run per edge, which cost more than all our
    repair work (see bench/RESULTS.md). Routing decisions are in the next node's trace anyway.
    """

    def __init__(self, route: Callable[[RecoveryState], Any]) -> None:
        self.route = route
        self.name = route.__name__

    def invoke(self, input: RecoveryState, config: Any = None, **kwargs: Any) -> Any:
        return self.route(input)

    async def ainvoke(self, input: RecoveryState, config: Any = None, **kwargs: Any) -> Any:
        return self.route(input)


def _finishing(node: Callable[..., Any]) -> Callable[..., Any]:
    """A layer that proves a fix also writes the result, so the incident ends without a `finish` step
    (one LangGraph step fewer on the common path; unrecovered endings still go through `finish`)."""

    async def layer(state: RecoveryState, runtime: Runtime[RecoveryContext]) -> dict[str, Any]:
        update = await node(state, runtime)
        if update.get("recovered"):
            merged = {**state, **update, "attempts": [*state.get("attempts", ()), *update.get("attempts", ())]}
            update = {**update, "result": build_result(merged)}
        return update

    layer.__name__ = layer.__qualname__ = node.__name__
    layer.__doc__ = node.__doc__
    return layer


def _destinations(route: Callable[..., Any]) -> list[str]:
    """The node names a router may return, read from its Literal return type (Send targets excluded)."""
    hint = typing.get_type_hints(route)["return"]
    literals = [a for a in (typing.get_args(hint) if typing.get_origin(hint) is not typing.Literal else (hint,))
                if typing.get_origin(a) is typing.Literal]
    return [name for lit in literals for name in typing.get_args(lit)]


def _route(g: StateGraph, source: str, route: Callable[..., Any], *extra: str) -> None:
    g.add_conditional_edges(source, _Router(route), [*_destinations(route), *extra])


def _llm_policies() -> dict[str, dict[str, Any]]:
    """The LLM nodes re-run on transient provider failures; llm_fix's proven corrections are cached
    (the TTL here is the default; recover() applies the run's settings through CorrectionCache)."""
    retry = provider_retry_policy()
    ttl = SyntaxSettings().correction_cache_ttl
    return {"llm_fix": {"retry_policy": retry, "cache_policy": CachePolicy(key_func=correction_key, ttl=ttl)},
            "refine": {"retry_policy": retry}, "vote_sample": {"retry_policy": retry}}


def _state_graph() -> StateGraph:
    g = StateGraph(RecoveryState, context_schema=RecoveryContext, input_schema=RecoveryInput,
                   output_schema=RecoveryOutput)
    policies = _llm_policies()
    for node in (classify, unicode_fix, parser_fix, llm_fix, backoff, sandbox, refine, vote, vote_sample, human,
                 finish):
        fn = node if node in (vote_sample, finish) else layer_node(_finishing(node))  # + layer trace metadata
        g.add_node(node.__name__, fn, **policies.get(node.__name__, {}))
    g.add_edge(START, "classify")
    _route(g, "classify", routing.after_classify)
    _route(g, "unicode_fix", routing.after_unicode_fix)
    _route(g, "parser_fix", routing.after_parser_fix)
    _route(g, "llm_fix", routing.after_llm_fix)
    _route(g, "backoff", routing.after_backoff)
    _route(g, "sandbox", routing.after_sandbox)
    _route(g, "refine", routing.after_refine)
    _route(g, "vote", routing.after_vote, "vote_sample")
    _route(g, "human", routing.after_human)
    g.add_edge("vote_sample", "vote")
    g.add_edge("finish", END)
    unsorted = set(g.nodes) ^ {*DETERMINISTIC_LAYERS, *DURABLE_LAYERS}
    if unsorted:  # recover() decides by these lists which steps it may run before writing anything
        raise AssertionError(f"every node must be in DETERMINISTIC_LAYERS or DURABLE_LAYERS: {sorted(unsorted)}")
    return g


def build_graph(checkpointer: Any = None, *, cache: Any = None, name: str = GRAPH_NAME) -> Any:
    """The compiled recovery graph; use it directly, as a subgraph, or behind LangGraph Server.

    Input `{"incident": {...}}`, output `{"result": {...}}`; pass a RecoveryContext as
    `context=` to supply the model, sandbox, operations and settings. `cache` (any LangGraph
    cache, e.g. InMemoryCache) keeps llm_fix's proven corrections; it is wrapped in a
    CorrectionCache, which keys entries by the `scope` it is given (recover() scopes it per
    model; wrap it yourself, `CorrectionCache(cache, scope=model_identity(model))`, when
    one compiled graph serves several models).
    """
    if cache is not None and not isinstance(cache, CorrectionCache):
        cache = CorrectionCache(cache)
    return _state_graph().compile(checkpointer=checkpointer, cache=cache, name=name)
