"""The checkpoint serializer: LangGraph's own (msgpack), with strict JSON text for valid data msgpack cannot carry."""

from __future__ import annotations

import json
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

__all__ = ["CheckpointSerde", "checkpoint_serde"]


class CheckpointSerde(JsonPlusSerializer):
    """LangGraph's JsonPlusSerializer, and for a value msgpack refuses but strict JSON carries (integers beyond
    64 bits, nesting past msgpack's 255 levels) the value's JSON text under LangGraph's own `json` type tag, so
    LangGraph's savers still read it. Read back without LangChain's object reviver: it is plain data."""

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        try:
            return super().dumps_typed(obj)
        except TypeError as exc:  # ormsgpack: "Integer exceeds 64-bit range", "Recursion limit reached"
            try:
                text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            except (TypeError, ValueError, RecursionError):
                raise exc from None
            return "json", text.encode("utf-8")

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        if data[0] == "json":
            return json.loads(data[1])
        return super().loads_typed(data)


def checkpoint_serde() -> CheckpointSerde:
    """A serializer for one saver (LangGraph copies it to extend its allowlist)."""
    return CheckpointSerde()
