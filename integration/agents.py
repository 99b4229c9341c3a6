"""Agents: route a failing LangGraph node, or a failing ToolNode call, into recovery; the graph itself is a subgraph.

    builder.add_node("extract", extract, error_handler=node_error_handler(goto="use", on_failure="ask_human"))
    ToolNode(tools, handle_tool_errors=tool_error_handler(schema=...))
    builder.add_node("recovery", build_graph())     # input {"incident": ...}, output {"result": ...}

`node_error_handler` follows LangGraph's node-level error handlers (`add_node(...,
error_handler=...)`, LangGraph >= 1.2): the handler runs after the node's RetryPolicy is
spent, receives the node's input state and a `NodeError` (the node's name and the
exception), and its return value decides what happens next. A plain update would end the
run there; the handler returns `Command(update=..., goto=...)` so the run continues.

`tool_error_handler` follows `ToolNode(handle_tool_errors=callable)`: the callable gets only
the exception and returns the text of the ToolMessage that ToolNode sends back to the
model (with status "error"). Without the tool's arguments nothing can be re-run there: to
re-run a flaky tool, guard the tool itself (`guard(tool)`), whose RecoveryFailed this handler
then reports without a second recovery.

Recoveries started here run as threads of their own (the settings' checkpoint store by
default), never as hidden subgraphs of the agent's thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from kgot_errors.errors import RecoveryFailed
from kgot_errors.graph.recover import DEFAULT
from kgot_errors.integration._run import Options, run
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings
from kgot_errors.state import RecoveryResult
from langgraph.errors import NodeError
from langgraph.types import Command

__all__ = ["node_error_handler", "tool_error_handler"]

_REPORT_ATTEMPTS = 6


def _options(schema: Any, context: str, settings: Settings | None, checkpointer: Any, model: Any, sandbox: Any,
             runtime_context: RecoveryContext | None) -> Options:
    return Options(schema=schema, context=context, settings=settings, checkpointer=checkpointer, model=model,
                   sandbox=sandbox, runtime_context=runtime_context)


def node_error_handler(
    *,
    goto: str,
    on_failure: str | None = None,
    update: Callable[[Any, RecoveryResult], Mapping[str, Any]] | str = "recovery",
    content: Callable[[Any, BaseException], str | None] | None = None,
    schema: Any = None,
    context: str = "",
    settings: Settings | None = None,
    checkpointer: Any = DEFAULT,
    model: Any = None,
    sandbox: Any = None,
    runtime_context: RecoveryContext | None = None,
) -> Callable[[Any, NodeError], Command]:
    """An error handler for `add_node(..., error_handler=...)` that recovers the node's failure.

    Recovered: `Command(update=..., goto=goto)`. Not recovered: `Command(update=...,
    goto=on_failure)`, or, with no `on_failure`, RecoveryFailed (carrying the result) ends the
    run. `update` is the state key that receives the RecoveryResult as plain data (it must
    be in the graph's state), or a function `(state, result) -> update`. The failing
    output comes from the exception when it carries it (OutputParserException.llm_output,
    JSONDecodeError.doc), else from `content(state, exception)`. Works in sync and async runs.
    """
    options = _options(schema, context, settings, checkpointer, model, sandbox, runtime_context)

    def writes(state: Any, result: RecoveryResult) -> Mapping[str, Any]:
        return {update: result.to_data()} if isinstance(update, str) else update(state, result)

    def recovery_handler(state: Any, error: NodeError) -> Command:
        fields: dict[str, Any] = {}
        failing = content(state, error.error) if content is not None else None
        if failing is not None:
            fields["content"] = failing
        result = run(options, error.error, context=options.context or f"LangGraph node {error.node!r} failed",
                     **fields)
        if result.recovered:
            return Command(update=writes(state, result), goto=goto)
        if on_failure is None:
            raise RecoveryFailed(result, original=error.error) from error.error
        return Command(update=writes(state, result), goto=on_failure)

    return recovery_handler


def _report(error: BaseException, result: RecoveryResult) -> str:
    """What the model reads when a tool call could not be recovered: the error, what was tried, the thread."""
    tried = "; ".join(f"{a.layer} {a.verdict}: {a.reason}" for a in result.attempts[-_REPORT_ATTEMPTS:])
    thread = f" (recovery thread {result.thread_id})" if result.thread_id else ""
    return (f"Error: {type(error).__name__}: {error}\n"
            f"kgot-errors could not recover it{thread}: {result.summary}\n"
            f"Tried: {tried or 'nothing applied'}\n"
            "Fix the call's arguments or try another approach.")


def tool_error_handler(
    *,
    schema: Any = None,
    context: str = "",
    settings: Settings | None = None,
    checkpointer: Any = DEFAULT,
    model: Any = None,
    sandbox: Any = None,
    runtime_context: RecoveryContext | None = None,
) -> Callable[[Exception], str]:
    """A `ToolNode(handle_tool_errors=...)` callable: the repaired output, or a report of what was tried.

    A tool whose failure carries its broken output (JSONDecodeError.doc,
    OutputParserException.llm_output) gets the repaired value as the message text (JSON).
    RecoveryFailed from a guarded tool is reported as is. Invalid arguments from the model
    (ToolInvocationError) go back to the model unchanged: it is the one that can fix its call.
    """
    from langgraph.prebuilt.tool_node import ToolInvocationError

    options = _options(schema, context, settings, checkpointer, model, sandbox, runtime_context)

    def handle_tool_error(error: Exception) -> str:
        if isinstance(error, ToolInvocationError):
            return error.message
        if isinstance(error, RecoveryFailed):
            return _report(error.original or error, error.result)
        result = run(options, error, context=options.context or "a tool call failed")
        if not result.recovered:
            return _report(error, result)
        return result.text if result.text is not None else json.dumps(result.value, ensure_ascii=False)

    return handle_tool_error
