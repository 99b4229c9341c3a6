"""The deterministic repair engine, with no graph, no store and no LangGraph: the layers unicode_fix and parser_fix
run on.

    from kgot_errors.repair import repair_json
    result = repair_json(llm_text, schema=MySchema)
    if result.ok: use(result.value)          # result.verdict: recovered | degraded | failed

Modules, one concern each: `_strict` (strict JSON), `_unicode` (unicode damage), `_normalise` (the lenient
normaliser), `_extract` (where JSON lives in a text, candidates and the best of them), `_drift` (the drift guard),
`_schema` (loading and bounded validation), `_coerce` (coercion towards a schema), `_outcome` (Outcome, changes and
the policy), `_layers` (the layers), `_api` (repair_json), `_batch` (repair_many, on every core), `_classify` (which
kind of error, which kind of content: the classify node's and runtime/operations' rules). Public names load on first
use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kgot_errors import _lazy_exports

_EXPORTS: dict[str, str] = {
    "repair_json": "kgot_errors.repair._api",
    "repair_many": "kgot_errors.repair._batch",
    "RepairResult": "kgot_errors.repair._api",
    "LayerRun": "kgot_errors.repair._api",
    "ACCEPT": "kgot_errors.repair._outcome",
    "DEGRADE": "kgot_errors.repair._outcome",
    "REFUSE": "kgot_errors.repair._outcome",
    "DEFAULT_POLICY": "kgot_errors.repair._outcome",
    "Change": "kgot_errors.repair._outcome",
    "Outcome": "kgot_errors.repair._outcome",
    "disposition": "kgot_errors.repair._outcome",
    "DEFAULT_MAX_CHARS": "kgot_errors.repair._strict",
    "DEFAULT_MAX_DEPTH": "kgot_errors.repair._strict",
    "InputTooLarge": "kgot_errors.repair._strict",
    "NonFiniteNumber": "kgot_errors.repair._strict",
    "is_strict_json": "kgot_errors.repair._strict",
    "loads_strict": "kgot_errors.repair._strict",
    "nesting_depth": "kgot_errors.repair._strict",
    "coverage": "kgot_errors.repair._drift",
    "noise": "kgot_errors.repair._drift",
    "load_schema": "kgot_errors.repair._schema",
    "schema_errors": "kgot_errors.repair._schema",
    "coerce_to_schema": "kgot_errors.repair._coerce",
    "fix_text": "kgot_errors.repair._unicode",
    "fix_value_text": "kgot_errors.repair._unicode",
    "parser_layer": "kgot_errors.repair._layers",
    "unicode_layer": "kgot_errors.repair._layers",
    "repair": "kgot_errors.repair._layers",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from kgot_errors.repair._api import LayerRun, RepairResult, repair_json
    from kgot_errors.repair._batch import repair_many
    from kgot_errors.repair._coerce import coerce_to_schema
    from kgot_errors.repair._drift import coverage, noise
    from kgot_errors.repair._layers import parser_layer, repair, unicode_layer
    from kgot_errors.repair._outcome import ACCEPT, DEFAULT_POLICY, DEGRADE, REFUSE, Change, Outcome, disposition
    from kgot_errors.repair._schema import load_schema, schema_errors
    from kgot_errors.repair._strict import (
        DEFAULT_MAX_CHARS,
        DEFAULT_MAX_DEPTH,
        InputTooLarge,
        NonFiniteNumber,
        is_strict_json,
        loads_strict,
        nesting_depth,
    )
    from kgot_errors.repair._unicode import fix_text, fix_value_text


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())
