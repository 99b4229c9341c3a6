"""kgot-errors: layered containment and recovery of LLM agent errors, as a LangGraph graph.

    from kgot_errors import recover
    result = recover(exc, content=llm_output, schema=MyModel)
    if result.recovered: use(result.value)

Public names load lazily, so importing the package costs little beyond LangGraph itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "recover": "kgot_errors.graph.recover",
    "arecover": "kgot_errors.graph.recover",
    "resume": "kgot_errors.graph.recover",
    "aresume": "kgot_errors.graph.recover",
    "history": "kgot_errors.graph.recover",
    "ahistory": "kgot_errors.graph.recover",
    "recover_many": "kgot_errors.graph.recover",
    "arecover_many": "kgot_errors.graph.recover",
    "recover_iter": "kgot_errors.graph.recover",
    "arecover_iter": "kgot_errors.graph.recover",
    "pending": "kgot_errors.graph.recover",
    "apending": "kgot_errors.graph.recover",
    "unfinished": "kgot_errors.graph.unfinished",
    "aunfinished": "kgot_errors.graph.unfinished",
    "resume_unfinished": "kgot_errors.graph.unfinished",
    "aresume_unfinished": "kgot_errors.graph.unfinished",
    "build_graph": "kgot_errors.graph.builder",
    "guard": "kgot_errors.integration._guard",
    "node_error_handler": "kgot_errors.integration.agents",
    "tool_error_handler": "kgot_errors.integration.agents",
    "Incident": "kgot_errors.state",
    "RecoveryResult": "kgot_errors.state",
    "Attempt": "kgot_errors.state",
    "ErrorKind": "kgot_errors.state",
    "Layer": "kgot_errors.state",
    "Verdict": "kgot_errors.state",
    "RecoveryContext": "kgot_errors.runtime.context",
    "Settings": "kgot_errors.runtime.settings",
    "load_settings": "kgot_errors.runtime.settings",
    "KgotError": "kgot_errors.errors",
    "InvalidIncident": "kgot_errors.errors",
    "InvalidSchema": "kgot_errors.errors",
    "RecoveryFailed": "kgot_errors.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from kgot_errors.errors import InvalidIncident, InvalidSchema, KgotError, RecoveryFailed
    from kgot_errors.graph.builder import build_graph
    from kgot_errors.integration.agents import node_error_handler, tool_error_handler
    from kgot_errors.integration._guard import guard
    from kgot_errors.graph.recover import (
        ahistory,
        apending,
        arecover,
        arecover_iter,
        arecover_many,
        aresume,
        history,
        pending,
        recover,
        recover_iter,
        recover_many,
        resume,
    )
    from kgot_errors.graph.unfinished import aresume_unfinished, aunfinished, resume_unfinished, unfinished
    from kgot_errors.runtime.context import RecoveryContext
    from kgot_errors.runtime.settings import Settings, load_settings
    from kgot_errors.state import Attempt, ErrorKind, Incident, Layer, RecoveryResult, Verdict


def _lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module `__getattr__` and `__dir__` for `package`: `exports` maps a public name to the module that defines
    it, imported on first use (then kept in `namespace`, the package's globals)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return list(namespace["__all__"])

    return __getattr__, __dir__


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())
