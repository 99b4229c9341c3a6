"""Integrations: guard callables and tools, recover failing LangGraph nodes and ToolNode calls, the original API, LangGraph Server.

    from kgot_errors.integration import guard, node_error_handler, tool_error_handler
    from kgot_errors.integration.compat import KGoTErrorManagementSystem    # the original system's API
    langgraph.json -> kgot_errors.integration.server:graph                  # LangGraph Server / Studio
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kgot_errors import _lazy_exports

_EXPORTS = {
    "guard": "kgot_errors.integration._guard",
    "node_error_handler": "kgot_errors.integration.agents",
    "tool_error_handler": "kgot_errors.integration.agents",
}

__all__ = ["guard", "node_error_handler", "tool_error_handler"]

if TYPE_CHECKING:
    from kgot_errors.integration.agents import node_error_handler, tool_error_handler
    from kgot_errors.integration._guard import guard


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())
