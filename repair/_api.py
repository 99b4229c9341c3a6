"""repair_json: the deterministic layers as one pure call (no graph, no store, no LangGraph), with the graph's verdicts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kgot_errors.repair._layers import parser_layer, unicode_layer
from kgot_errors.repair._outcome import Change, Outcome, with_input_damage
from kgot_errors.repair._schema import load_schema
from kgot_errors.repair._strict import DEFAULT_MAX_CHARS, DEFAULT_MAX_DEPTH

__all__ = ["LayerRun", "RepairResult", "repair_json"]

RECOVERED, DEGRADED, FAILED = "recovered", "degraded", "failed"


@dataclass(frozen=True)
class LayerRun:
    """One layer's try: its name as the graph records it (`unicode_fix`, `parser_fix`), what it produced, how long."""

    layer: str
    outcome: Outcome
    duration_s: float


@dataclass(frozen=True)
class RepairResult:
    """How a repair ended, in the graph's words.

    `verdict` is `recovered` (strict JSON that fits the schema, the data kept: lossless coercions aside),
    `degraded` (a fix the policy accepts only with a mark; `changes` says what it did to the data) or `failed`
    (`reason` says why, `errors` holds the schema's messages). `value` is the repaired value and `text` its JSON
    text (valid input comes back as given, byte for byte); `steps` is the repair log; `layer` the layer that proved
    the fix; `runs` each layer's try, as the graph's attempts record them.
    """

    verdict: str
    value: Any = None
    text: str | None = None
    steps: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    reason: str | None = None
    errors: tuple[str, ...] = ()
    layer: str | None = None
    runs: tuple[LayerRun, ...] = ()

    @property
    def ok(self) -> bool:
        """True for a fix (`recovered` or `degraded`)."""
        return self.verdict != FAILED

    @property
    def recovered(self) -> bool:
        return self.verdict == RECOVERED


def repair_json(
    text: str,
    schema: Any = None,
    *,
    policy: dict[str, str] | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> RepairResult:
    """Repair LLM output into strict JSON: the unicode_fix layer, then parser_fix, exactly as the graph runs them.

    `schema` is None, a JSON Schema (dict or boolean) or a pydantic model class; one that is not usable raises
    InvalidSchema (a caller's mistake). `policy` maps kinds of change (`coerced`, `added`, `removed`, `truncated`,
    `restructured`) to `accept`, `degrade` or `refuse` (default: DEFAULT_POLICY, the settings' `changes`). A repair that cannot be
    made is a `failed` verdict, never an exception. Text holding lone surrogates (which no UTF-8 text can carry) is
    repaired with them replaced by U+FFFD, a `removed` change the policy judges, as the graph's edge does.
    """
    loaded = load_schema(schema)
    notes: list[str] = []
    if isinstance(text, str) and not _encodes(text):
        notes.append("content: lone surrogate code points replaced with U+FFFD")
        text = text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
    runs: list[LayerRun] = []
    for name, layer in (("unicode_fix", unicode_layer), ("parser_fix", parser_layer)):
        started = time.perf_counter()
        out = layer(text, loaded, max_chars=max_chars, max_depth=max_depth, policy=policy, loaded=True)
        out = with_input_damage(out, notes, policy)
        runs.append(LayerRun(name, out, round(time.perf_counter() - started, 6)))
        if out.ok:
            return RepairResult(DEGRADED if out.degraded else RECOVERED, out.value, out.text, out.steps, out.changes,
                                layer=name, runs=tuple(runs))
    return RepairResult(FAILED, steps=out.steps, changes=out.changes, reason=out.reason, errors=out.errors,
                        runs=tuple(runs))


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
