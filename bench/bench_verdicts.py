"""Truthful verdicts, measured: the corpus under every handover through the compiled graph, and the official
JSON-Schema-Test-Suite (tests/data) through the repair layers.

    python bench/bench_verdicts.py            # the handover table and the suite figures
    python bench/bench_verdicts.py --json out.json

Per handover: exact % (value equals the case's expected value, recovered or degraded), recovered, degraded,
false recoveries (recovered but not strict JSON, a string where the case expects a container, or failing the
schema) and how many cases went to the code or retry layers (must be 0). valid_control must stay at 100 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_json import load_cases, same_json  # noqa: E402

SUITE = HERE.parent / "tests" / "data" / "json_schema_test_suite"


class _NeverRun:
    name = "never-run"

    async def arun(self, code: str, **_: Any) -> Any:
        raise AssertionError("a JSON incident reached the sandbox")

    def run(self, code: str, **_: Any) -> Any:
        raise AssertionError("a JSON incident reached the sandbox")


def handover_matrix(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    from kgot_errors import build_graph
    from kgot_errors.repair import is_strict_json
    from kgot_errors.repair import load_schema, schema_errors
    from kgot_errors.runtime.context import RecoveryContext
    from kgot_errors.testing.handovers import HANDOVERS, incident_for

    graph, ctx = build_graph(), RecoveryContext(sandbox=_NeverRun())

    async def run(handover: str) -> dict[str, Any]:
        row = {"exact": 0, "scored": 0, "recovered": 0, "degraded": 0, "false": 0, "code_or_retry": 0,
               "valid_control": [0, 0], "seconds": 0.0}
        started = time.perf_counter()
        for case in cases:
            out = await graph.ainvoke({"incident": incident_for(handover, case["input"], case.get("schema"))},
                                      context=ctx)
            result = out["result"]
            value = result["value"] if result["outcome"] in ("recovered", "degraded") else None
            row["recovered"] += result["recovered"]
            row["degraded"] += result["outcome"] == "degraded"
            row["code_or_retry"] += result["kind"] in ("execution", "transient", "permanent")
            if result["recovered"]:
                schema = load_schema(case.get("schema"))
                wrong = isinstance(case["expected"], dict | list) and isinstance(value, str)
                row["false"] += (not is_strict_json(value) or wrong
                                 or (schema is not None and bool(schema_errors(value, schema))))
            alternatives = case.get("alternatives") or []
            if case.get("ambiguous") and not alternatives:
                continue
            row["scored"] += 1
            hit = result["outcome"] in ("recovered", "degraded") and (
                (not case.get("ambiguous") and same_json(value, case["expected"]))
                or any(same_json(value, a) for a in alternatives))
            row["exact"] += hit
            if case["category"] == "valid_control":
                row["valid_control"][0] += hit
                row["valid_control"][1] += 1
        row["seconds"] = round(time.perf_counter() - started, 2)
        return row

    async def run_all() -> dict[str, dict[str, Any]]:
        return {h: await run(h) for h in HANDOVERS}

    return asyncio.run(run_all())


def schema_suite() -> dict[str, dict[str, int]]:
    from kgot_errors.repair import is_strict_json, parser_layer, unicode_layer
    from kgot_errors.repair import load_schema, schema_errors

    uri = {"draft2020-12": "https://json-schema.org/draft/2020-12/schema",
           "draft7": "http://json-schema.org/draft-07/schema#"}
    out = {}
    for draft in uri:
        row = {"valid": 0, "valid_unchanged": 0, "invalid": 0, "invalid_recovered": 0, "recovered_failing": 0,
               "recovered_unlisted": 0}
        for path in sorted((SUITE / draft).glob("*.json")):
            for group in json.loads(path.read_text(encoding="utf-8")):
                schema = group["schema"]
                if isinstance(schema, dict) and "$schema" not in schema:
                    schema = {"$schema": uri[draft], **schema}
                loaded = load_schema(schema)
                for test in group["tests"]:
                    text = json.dumps(test["data"], ensure_ascii=False)
                    first = unicode_layer(text, loaded)
                    if test["valid"]:
                        row["valid"] += 1
                        row["valid_unchanged"] += first.ok and first.text == text and not first.changes
                        continue
                    row["invalid"] += 1
                    got = first if first.ok else parser_layer(text, loaded)
                    if got.ok:
                        row["invalid_recovered"] += 1
                        row["recovered_failing"] += not is_strict_json(got.value) or bool(schema_errors(got.value,
                                                                                                         loaded))
                        row["recovered_unlisted"] += got.value != test["data"] and not got.changes and not got.steps
        out[draft] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="OUT", type=Path)
    args = parser.parse_args(argv)
    cases = load_cases()
    matrix = handover_matrix(cases)
    print(f"corpus: {len(cases)} cases through the compiled graph (no checkpointer, no model)")
    print(f"{'handover':<22} {'exact %':>8} {'recovered':>10} {'degraded':>9} {'false':>6} {'code/retry':>11} "
          f"{'valid_control':>14} {'s':>6}")
    for name, row in matrix.items():
        vc = row["valid_control"]
        print(f"{name:<22} {100 * row['exact'] / row['scored']:8.1f} {row['recovered']:10} {row['degraded']:9} "
              f"{row['false']:6} {row['code_or_retry']:11} {f'{vc[0]}/{vc[1]}':>14} {row['seconds']:6}")
    suite = schema_suite()
    print("\nJSON-Schema-Test-Suite (tests/data): valid instances unchanged; invalid ones recovered, failing, unlisted")
    for draft, row in suite.items():
        print(f"{draft:<14} valid {row['valid_unchanged']}/{row['valid']} unchanged; invalid {row['invalid']}: "
              f"{row['invalid_recovered']} recovered, {row['recovered_failing']} of those failing the schema, "
              f"{row['recovered_unlisted']} changed without a listed change")
    if args.json:
        args.json.write_text(json.dumps({"handovers": matrix, "schema_suite": suite}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
