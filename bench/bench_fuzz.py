"""Fuzzing the deterministic layers through recover() and a real SQLite store: every input must end as a
result or a typed error (a KgotError), and none may take longer than the bound.

    python bench/bench_fuzz.py                      # 20,000 inputs, seed 1, a SQLite store in a temp dir
    python bench/bench_fuzz.py -n 2000 --seed 7 --store memory --json out.json

The inputs (seeded, reproducible): corpus cases mutated (cut, inserted, deleted, duplicated characters),
random bytes and random text, valid JSON with integers beyond 64 bits and nesting of 200-600 levels (whole
or cut off), hostile schemas (a backtracking `pattern`, a remote `$ref`, boolean schemas, a huge enum),
the failing text handed over as every exception an agent holds (tests/../testing/handovers.py), and
operations whose re-run returns such values. No model is configured; code never runs (a sandbox stub
counts what would have reached it). Exit status 1 when anything escaped or went over the bound.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus" / "json_public.jsonl"
BOUND_S = 5.0

_HOSTILE_SCHEMAS: list[Any] = [
    {"type": "object", "properties": {"id": {"type": "string", "pattern": "^(a+)+$"}}},
    {"type": "string", "pattern": "^([a-z]+)*\\d$"},
    {"$ref": "http://127.0.0.1:9/never-fetched.json"},
    {"type": "object", "properties": {"x": {"$ref": "https://example.invalid/s.json#/x"}}},
    True,
    False,
    {"enum": [f"value-{i}" for i in range(5000)]},
    {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}, "additionalProperties": False},
    {"type": "array", "items": {"type": "number", "maximum": 1e308}},
]


class _CountingSandbox:
    """Counts code that would have been run; runs nothing (the fuzz covers the deterministic layers)."""

    name = "fuzz-counter"

    def __init__(self) -> None:
        self.reached = 0

    async def arun(self, code: str, **_: Any) -> Any:
        from kgot_errors.errors import SandboxUnavailable

        self.reached += 1
        raise SandboxUnavailable("fuzz: the sandbox is not part of this run")

    def run(self, code: str, **_: Any) -> Any:
        from kgot_errors.errors import SandboxUnavailable

        self.reached += 1
        raise SandboxUnavailable("fuzz: the sandbox is not part of this run")


def _nested(rng: random.Random) -> str:
    depth = rng.randint(200, 600)
    opener, closer = rng.choice([("[", "]"), ('{"k":', "}")])
    return opener * depth + str(rng.choice([0, 2 ** 70, -(2 ** 90), 1.5e300])) + closer * depth


def _big_ints(rng: random.Random) -> str:
    values = [rng.choice([2 ** 64, -(2 ** 63) - 1, 10 ** rng.randint(19, 400), rng.getrandbits(256)])
              for _ in range(rng.randint(1, 5))]
    return json.dumps({"id": values[0], "all": values})


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(0, 4)):
        if not text:
            break
        i = rng.randint(0, len(text))
        op = rng.choice(["cut", "insert", "delete", "dup"])
        if op == "cut":
            text = text[:i]
        elif op == "insert":
            text = text[:i] + rng.choice(list('{}[]",:\'`\\/\n') + ["NaN", "\ufeff", "\u201c", "//", "\x00"]) + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + text[i:i + 20] + text[i:]
    return text


def _random_text(rng: random.Random) -> str:
    alphabet = '{}[]":,\\ntruefalsenull0123456789 .-+eE\'`\u00e9\u201c\u201d\ud800\x85\x9d'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))


def make_inputs(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` fuzz inputs: each {"kind", "incident" (a mapping or an exception), "content", "schema", "op"}."""
    from kgot_errors.testing.handovers import HANDOVERS

    rng = random.Random(seed)
    cases = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    handovers = sorted(HANDOVERS)
    out: list[dict[str, Any]] = []
    for _ in range(count):
        kind = rng.choice(["corpus", "corpus", "corpus", "bytes", "text", "nested", "big_int", "hostile", "operation"])
        schema: Any = None
        op: Any = None
        if kind == "corpus":
            case = rng.choice(cases)
            content: Any = _mutate(rng, case["input"])
            schema = case.get("schema")
        elif kind == "bytes":
            content = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        elif kind == "text":
            content = _random_text(rng)
        elif kind == "nested":
            content = _nested(rng)
            if rng.random() < 0.5:
                content = content[:rng.randint(1, len(content))]
        elif kind == "big_int":
            content = _big_ints(rng)
            if rng.random() < 0.3:
                content = content[:-1] + ",}"
        elif kind == "hostile":
            schema = rng.choice(_HOSTILE_SCHEMAS)
            content = rng.choice(['{"id": "' + "a" * rng.randint(20, 5000) + '!"}', '"' + "a" * 40 + '!"',
                                  "{'id': 1,}", '{"x": 1}', "[1, 2, 1e999]"])
        else:
            content = None
            op = rng.choice([{"id": 2 ** 80}, _deep_value(rng.randint(200, 600)), {"x": float("nan")},
                             [1, 2, 3], "plain text", _circular()])
        handover = rng.choice(handovers)
        out.append({"kind": kind, "handover": handover, "content": content, "schema": schema, "op": op})
    return out


def _deep_value(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def _incident(item: dict[str, Any]) -> Any:
    from kgot_errors.testing.handovers import HANDOVERS

    if item["op"] is not None:
        return {"error_type": "TimeoutError", "message": "timed out", "operation": "fuzz_op", "arguments": {}}
    content = item["content"]
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    exc = HANDOVERS[item["handover"]](text)
    if exc is None:
        return {"error_type": "AgentError", "message": "the answer was not usable"} if item["handover"] == "mapping" \
            else {}
    return exc


def run(count: int, seed: int, store: str, progress: bool = True) -> dict[str, Any]:
    from kgot_errors import recover
    from kgot_errors.errors import KgotError
    from kgot_errors.runtime.context import RecoveryContext
    from kgot_errors.runtime.settings import Settings

    async def no_wait(_: float) -> None:
        return None

    inputs = make_inputs(count, seed)
    sandbox = _CountingSandbox()
    settings = Settings()
    outcomes: Counter[str] = Counter()
    escaped: list[dict[str, Any]] = []
    slow: list[dict[str, Any]] = []
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        target: Any = {"sqlite": str(Path(tmp) / "fuzz.sqlite"), "memory": "memory", "none": None}[store]
        started = time.perf_counter()
        for i, item in enumerate(inputs):
            value = item["op"]
            ctx = RecoveryContext(settings=settings, sandbox=sandbox, sleep=no_wait,
                                  operations={"fuzz_op": lambda v=value: v})
            extra = {k: item[k] for k in ("content", "schema") if item[k] is not None}
            faulthandler.dump_traceback_later(60, exit=False)  # a hang shows where it is
            t0 = time.perf_counter()
            try:
                result = recover(_incident(item), checkpointer=target, runtime_context=ctx, **extra)
                outcomes[result.outcome] += 1
            except KgotError as exc:
                outcomes[f"typed error: {type(exc).__name__}"] += 1
            except BaseException as exc:  # noqa: BLE001 - what the bench counts
                if isinstance(exc, KeyboardInterrupt):
                    raise
                escaped.append({"index": i, "kind": item["kind"], "error": f"{type(exc).__name__}: {exc}"[:300]})
            finally:
                faulthandler.cancel_dump_traceback_later()
            took = time.perf_counter() - t0
            times.append(took)
            if took > BOUND_S:
                slow.append({"index": i, "kind": item["kind"], "seconds": round(took, 3)})
            if progress and (i + 1) % 1000 == 0:
                print(f"  {i + 1}/{count}  escaped {len(escaped)}  over {BOUND_S:g} s {len(slow)}  "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    times.sort()
    return {
        "inputs": count, "seed": seed, "store": store,
        "by_kind": dict(Counter(item["kind"] for item in inputs)),
        "outcomes": dict(outcomes.most_common()),
        "escaped": len(escaped), "escaped_examples": escaped[:10],
        "over_bound": len(slow), "bound_s": BOUND_S, "slow_examples": slow[:10],
        "sandbox_reached": sandbox.reached,
        "seconds": {"total": round(sum(times), 1), "p50": round(times[len(times) // 2], 4),
                    "p99": round(times[int(len(times) * 0.99)], 4), "max": round(times[-1], 3)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=20_000, help="how many inputs (default 20000)")
    parser.add_argument("--seed", type=int, default=1, help="the inputs' random seed (default 1)")
    parser.add_argument("--store", choices=["sqlite", "memory", "none"], default="sqlite",
                        help="checkpoint store: a SQLite file in a temp dir (default), in-memory, or none")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    figures = run(args.count, args.seed, args.store)
    text = json.dumps(figures, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 1 if figures["escaped"] or figures["over_bound"] else 0


if __name__ == "__main__":
    sys.exit(main())
