"""A sync twin of the recovery graph for parent graphs that call `.invoke()`: one sync node that runs a recovery.

    parent.add_node("recovery", build_sync_graph())      # input {"incident": ...}, output {"result": ...}
    parent.compile().invoke({...}, context=RecoveryContext(...))

The recovery graph's layers are async nodes (`build_graph()` needs `ainvoke`/`astream`).
`build_sync_graph()` has the same input and output and one node, `recovery`, a plain
function that runs the whole recovery on the library's loop (as `recover()` does) and
returns its result; it works under `invoke` and `ainvoke` alike. Its context is the
parent's RecoveryContext when the parent has one, else one built from the settings.

What it does not do: the layers are not steps of the parent's thread (the parent checkpoints
the node's result; pass `checkpointer=` to also keep the recovery as a thread of its own), and a
recovery cannot pause for a person in it (escalate_to_human needs the async graph as the subgraph).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.state import RecoveryInput, RecoveryOutput

__all__ = ["build_sync_graph"]


def build_sync_graph(*, checkpointer: Any = None, name: str = "kgot-errors-sync") -> Any:
    """The compiled sync twin of `build_graph()`; `checkpointer` is where recover() keeps the recovery (None: nowhere)."""
    from kgot_errors.graph.recover import recover

    def recovery(state: RecoveryInput, runtime: Runtime[RecoveryContext]) -> RecoveryOutput:
        """Recover the incident through every layer, in one step (never pauses for a person)."""
        context = runtime.context if isinstance(runtime.context, RecoveryContext) else None
        result = recover(state["incident"], checkpointer=checkpointer, runtime_context=context)
        return {"result": result.to_data()}

    graph = StateGraph(RecoveryOutput, context_schema=RecoveryContext, input_schema=RecoveryInput,
                       output_schema=RecoveryOutput)
    graph.add_node("recovery", recovery)
    graph.add_edge(START, "recovery")
    graph.add_edge("recovery", END)
    return graph.compile(name=name)
