"""The verdict does not depend on how the caller hands the failure over: the project's corpus through the compiled
graph as JSONDecodeError, ValueError, RuntimeError, TypeError, a bare Exception, OutputParserException, a pydantic
ValidationError and a plain mapping. Same exact rate (within a point), no false recovery, JSON never run."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from kgot_errors import build_graph
from kgot_errors.repair import is_strict_json
from kgot_errors.repair import load_schema, schema_errors
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.state import ErrorKind
from kgot_errors.testing.handovers import HANDOVERS, incident_for

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "corpus" / "json_public.jsonl"


class NeverRun:
    """A sandbox that fails the test if anything asks it to run: no JSON incident may reach one."""

    name = "never-run"

    def run(self, code: str, **_: Any) -> Any:
        raise AssertionError(f"JSON content was sent to the sandbox: {code[:80]!r}")

    async def arun(self, code: str, **_: Any) -> Any:
        self.run(code)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _score(results: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[float, list[str]]:
    exact = scored = 0
    false: list[str] = []
    for case, result in results:
        value = result["value"] if result["outcome"] in ("recovered", "degraded") else None
        if result["recovered"]:
            schema = load_schema(case.get("schema"))
            wrong_type = isinstance(case["expected"], dict | list) and isinstance(value, str)
            if not is_strict_json(value) or wrong_type or (schema is not None and schema_errors(value, schema)):
                false.append(f"{case['id']}: {result['summary'][:120]}")
        alternatives = case.get("alternatives") or []
        if case.get("ambiguous") and not alternatives:
            continue
        scored += 1
        if result["outcome"] in ("recovered", "degraded") and (
            (not case.get("ambiguous") and _same(value, case["expected"])) or any(_same(value, a) for a in alternatives)
        ):
            exact += 1
    return exact / scored, false


@pytest.fixture(scope="module")
def matrix() -> dict[str, tuple[float, list[str], list[str]]]:
    cases = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    graph, ctx = build_graph(), RecoveryContext(sandbox=NeverRun())

    async def run_all() -> dict[str, tuple[float, list[str], list[str]]]:
        out = {}
        for handover in HANDOVERS:
            results, kinds = [], []
            for case in cases:
                state = await graph.ainvoke({"incident": incident_for(handover, case["input"], case.get("schema"))},
                                            context=ctx)
                results.append((case, state["result"]))
                if state["result"]["kind"] in (ErrorKind.EXECUTION, ErrorKind.TRANSIENT, ErrorKind.PERMANENT):
                    kinds.append(f"{case['id']}: {state['result']['kind']}")
            exact, false = _score(results)
            out[handover] = (exact, false, kinds)
        return out

    return asyncio.run(run_all())


def test_no_handover_ever_recovers_a_wrong_value(matrix) -> None:
    assert {h: false for h, (_, false, _) in matrix.items() if false} == {}


def test_no_handover_routes_json_to_code_or_retry_layers(matrix) -> None:
    assert {h: kinds[:5] for h, (_, _, kinds) in matrix.items() if kinds} == {}


def test_exact_rate_is_the_same_whatever_the_handover(matrix) -> None:
    rates = {h: round(exact, 4) for h, (exact, _, _) in matrix.items()}
    best = max(rates.values())
    assert all(best - rate <= 0.01 for rate in rates.values()), rates
    assert min(rates.values()) >= 0.9, rates
