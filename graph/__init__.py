"""The recovery graph: `build_graph()`, the routing policy, and `graph` (compiled, for langgraph.json)."""

from __future__ import annotations

from typing import Any

from kgot_errors.graph.builder import GRAPH_NAME, build_graph

__all__ = ["GRAPH_NAME", "build_graph", "graph"]


def __getattr__(name: str) -> Any:
    if name == "graph":  # compiled on first use, not at import
        compiled = build_graph()
        globals()["graph"] = compiled
        return compiled
    raise AttributeError(name)
