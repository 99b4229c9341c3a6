"""The checkpoint serializer: LangGraph's own (msgpack), with strict JSON text for valid data msgpack cannot carry."""

from __future__ import annotations

import json
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

__all__ = ["CheckpointSerde", "checkpoint_serde", "compact_values", "expand_values", "short_version"]


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


# --- the stored form of a checkpoint's channel values ------------------------------------------------------------

SHARED = "__kgot_shared__"
"""Key of a stored record naming what it leaves out because another record of the same write holds it."""

_FROM_RECOVERED = ("value", "text", "changes")


def compact_values(values: dict[str, Any], versions: Any) -> dict[str, Any]:
    """The channel values as stored, each piece of data once. `values` is not changed.

    - a `result` written in the same step as `attempts` and `recovered` (the same version in `versions`,
      the versions of this write) leaves out its copies of them: its attempts, the fix's value, text, changes;
    - the proven fix (`recovered`) leaves out its value when its text is that value's JSON;
    - the attempt that proposed the fix leaves out its candidate, the fix's text (checked by a CRC on reading).
    """
    stored = values
    recovered = values.get("recovered")
    if isinstance(recovered, dict) and SHARED not in recovered and "value" in recovered and \
            _json_of(recovered.get("text"), recovered["value"]):
        slim = {k: v for k, v in recovered.items() if k != "value"}
        slim[SHARED] = ["value"]
        stored = {**stored, "recovered": slim}
    attempts = values.get("attempts")
    if isinstance(recovered, dict) and isinstance(attempts, list) and attempts and \
            "recovered" in versions and versions.get("attempts") == versions["recovered"]:
        last = attempts[-1]
        text = recovered.get("text")
        if isinstance(last, dict) and isinstance(text, str) and last.get("candidate") == text and SHARED not in last:
            slim = {k: v for k, v in last.items() if k != "candidate"}
            slim[SHARED] = ["candidate", _crc(text)]
            stored = {**stored, "attempts": [*attempts[:-1], slim]}
    result = values.get("result")
    if not isinstance(result, dict) or SHARED in result or "result" not in versions:
        return stored
    version = versions["result"]
    slim, shared = dict(result), []
    if versions.get("attempts") == version and result.get("attempts") == attempts:
        del slim["attempts"]
        shared.append("attempts")
    if isinstance(recovered, dict) and versions.get("recovered") == version and \
            (result.get("value"), result.get("text"), result.get("changes")) == \
            (recovered.get("value"), recovered.get("text"), list(recovered.get("changes") or ())):
        for key in _FROM_RECOVERED:
            slim.pop(key, None)
        shared.append("recovered")
    if not shared:
        return stored
    slim[SHARED] = shared
    return {**stored, "result": slim}


def expand_values(values: dict[str, Any]) -> dict[str, Any]:
    """The channel values as the graph wrote them, from their stored form (`compact_values`). Values stored
    before that form existed come back unchanged."""
    out = values
    recovered = values.get("recovered")
    if isinstance(recovered, dict) and SHARED in recovered:
        recovered = {k: v for k, v in recovered.items() if k != SHARED}
        recovered["value"] = json.loads(recovered["text"])
        out = {**out, "recovered": recovered}
    attempts = values.get("attempts")
    if isinstance(attempts, list) and attempts and isinstance(attempts[-1], dict) and SHARED in attempts[-1]:
        last = {k: v for k, v in attempts[-1].items() if k != SHARED}
        text = recovered.get("text") if isinstance(recovered, dict) else None
        # the fix it proposed, unless the fix was replaced since (a state update): then it is not known here
        last["candidate"] = text if isinstance(text, str) and _crc(text) == attempts[-1][SHARED][1] else None
        attempts = [*attempts[:-1], last]
        out = {**out, "attempts": attempts}
    result = values.get("result")
    if not isinstance(result, dict) or SHARED not in result:
        return out
    full = {k: v for k, v in result.items() if k != SHARED}
    shared = result[SHARED]
    if "attempts" in shared:
        full["attempts"] = list(attempts or ())
    if "recovered" in shared and isinstance(recovered, dict):
        full.update(value=recovered.get("value"), text=recovered.get("text"),
                    changes=list(recovered.get("changes") or ()))
    return {**out, "result": full}


def _crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def _json_of(text: Any, value: Any) -> bool:
    """`text` is JSON that reads back as exactly `value` (types included: 1 is not 1.0, nor True)."""
    if not isinstance(text, str) or len(text) > 1 << 20:
        return False
    try:
        return _same(json.loads(text), value)
    except (ValueError, RecursionError):
        return False


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def short_version(current: str | int | None) -> str:
    """A channel's next version: LangGraph's (an increasing number and a random part, so that forks of one
    checkpoint never share a version) in 19 characters instead of 49. It sorts after every version in
    LangGraph's own form (32 digits), so threads written before this form keep resuming."""
    import random

    if current is None:
        number = 0
    elif isinstance(current, int):
        number = current
    else:
        number = int(current.split(".")[0])
    return f"{number + 1:010d}.{random.getrandbits(32):08x}"
