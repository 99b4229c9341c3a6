"""How the integrations run a recovery: one options object, and every recovery detached from the caller's graph."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from kgot_errors.graph.recover import DEFAULT, arecover, run_sync
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings
from kgot_errors.state import Incident, RecoveryResult
from langchain_core.runnables.config import var_child_runnable_config

__all__ = ["Options", "arun", "run"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """What every integration passes to the recovery graph, fixed when the guard or handler is made.

    `schema` is a JSON Schema dict or pydantic model the repaired value must fit; `context`
    says what the failing call was for (the LLM layers read it); `checkpointer` is what
    recover() takes (default: the settings' store; None: no thread). `runtime_context`
    wins over settings/model/sandbox; operations are merged into it.
    """

    schema: Any = None
    context: str = ""
    settings: Settings | None = None
    checkpointer: Any = DEFAULT
    model: Any = None
    sandbox: Any = None
    operations: Mapping[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)
    runtime_context: RecoveryContext | None = None

    def _arguments(self, operations: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
        registry = {**self.operations, **operations}
        if self.runtime_context is not None:
            merged = {**self.runtime_context.operations, **registry}
            return {"runtime_context": dataclasses.replace(self.runtime_context, operations=merged)}
        return {"settings": self.settings, "model": self.model, "sandbox": self.sandbox, "operations": registry}


async def arun(options: Options, error_or_incident: BaseException | Incident | Mapping[str, Any], *,
               operations: Mapping[str, Callable[..., Any]] | None = None, context: str | None = None,
               **incident_fields: Any) -> RecoveryResult:
    """Recover with `options`, as a thread of its own even when called inside a LangGraph node.

    A graph invoked inside a node inherits the node's config (LangGraph's ambient
    `var_child_runnable_config`) and would write its checkpoints into the caller's thread as a
    hidden subgraph; the recovery runs in a task whose copy of the context has none.
    """

    async def detached() -> RecoveryResult:
        var_child_runnable_config.set(None)  # only in this task's copy of the context
        return await arecover(error_or_incident, schema=options.schema,
                              context=options.context if context is None else context,
                              checkpointer=options.checkpointer, **options._arguments(operations or {}),
                              **incident_fields)

    return await asyncio.ensure_future(detached())


def run(options: Options, error_or_incident: BaseException | Incident | Mapping[str, Any], **kwargs: Any,
        ) -> RecoveryResult:
    """Sync twin of `arun` (on the library's recovery loop; safe inside a running loop)."""
    return run_sync(lambda: arun(options, error_or_incident, **kwargs))
