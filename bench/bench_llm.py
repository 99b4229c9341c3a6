"""Benchmark: the LLM layers' calls and overhead over the public malformed-JSON corpus, against a loopback model.

    python bench/bench_llm.py [--corpus bench/corpus/json_public.jsonl] [--limit N] [--results bench/RESULTS.md]
    python bench/bench_llm.py --compare ROUNDS [--results bench/RESULTS.md]

Every case runs through the compiled graph with a real ChatOpenAI pointed at a loopback
OpenAI-compatible server (kgot_errors.testing) that answers each llm_fix prompt with the
case's expected value. Measured and checked:

(a) cases the deterministic layers (unicode_fix, parser_fix) solve: the server sees no request;
(b) cases they fail: recovered by llm_fix with exactly one call each; the same incident again
    costs zero calls (the node cache) and its Attempt says it was served from the cache. The
    corpus has few of these (its cases are what deterministic repair is for), so every case is
    also damaged beyond deterministic repair (braces and brackets turned into parentheses,
    behind a line of prose) and the damaged copies that the deterministic layers fail join (b);
(c) overhead per LLM call: (graph run that makes the call) - (the same graph run served from
    the cache) - (the server's own time for the request). For scale, the client stack alone
    (langchain-openai + openai + httpx: a direct call minus server time) is reported too.

`--compare ROUNDS` instead measures, side by side in one run and interleaved round by round, against
the same loopback server: a direct langchain-openai call (`ChatOpenAI(...)` and its
`with_structured_output(schema)` built once, then `.invoke(messages)` with the messages llm_fix
would send) and an llm_fix recovery of a new incident each round (`recover()` with the model
configured in its settings, as a user configures it; with checkpointer=None and with the default
store). Two incidents: the typical one (a ~1.2 KB fenced, single-quoted answer with trailing
commas and a 12-property schema, one value no deterministic repair can make fit) and a small one.

`--results` replaces the "## LLM layers" section of that Markdown file (or, with --compare, its
"### llm_fix recovery vs a direct call" part); the others are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from langgraph.cache.memory import InMemoryCache

from kgot_errors.graph.builder import build_graph
from kgot_errors.nodes import _prompts
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import Settings
from kgot_errors.state import Layer, RecoveryResult
from kgot_errors.testing import Request, chat, error, loopback_model, loopback_openai

TARGET_MS = 5.0
NOTES = ("Reading: the graph and layer cost 0.8-1.7 ms a call across runs and hold steady; the client stack "
         "dominates and follows the machine's load (this 2-CPU machine was shared with other test suites: across "
         "eight runs its median moved between 4.0 and 9.2 ms for the whole set, 3.9 and 8.0 ms for plain calls, and "
         "the whole time beyond the server's between 4.9 and 10.1 ms; structured output costs about twice a plain "
         "call there, mostly openai-python transforming the request). So the 5 ms target holds for what the graph "
         "adds to a call; for the whole, only on a quiet machine and with plain calls.")
SECTION = "## LLM layers"
HERE = Path(__file__).resolve().parent
DETERMINISTIC = {Layer.UNICODE_FIX, Layer.PARSER_FIX}
_OUTPUT = re.compile(r'<data label="output" id="([0-9a-f]{16})">\n(.*?)\n</data id="\1">', re.S)


def corpus_path(given: Path | None) -> Path:
    for path in (given, HERE / "corpus" / "json_public.jsonl", Path("/work/shared/corpus/json_public.jsonl")):
        if path is not None and path.exists():
            return path
    raise SystemExit("corpus not found: pass --corpus")


def incident(case: dict[str, Any]) -> dict[str, Any]:
    return {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value: line 1 column 1 (char 0)",
            "content": case["input"], "output_schema": case.get("schema")}


def damaged(case: dict[str, Any]) -> dict[str, Any]:
    """The case with its brackets gone: what no deterministic repair can restore, but a model can."""
    text = case["input"].translate(str.maketrans("{}[]", "()()"))
    return {**case, "id": case["id"] + "/damaged", "input": "The model wrote: " + text}


class Oracle:
    """The loopback model's script: each prompt's quoted failing output mapped to the case's expected JSON."""

    def __init__(self, cases: list[dict[str, Any]], max_chars: int) -> None:
        self.answers = {_prompts.cut(c["input"], max_chars): json.dumps(c["expected"], ensure_ascii=False)
                        for c in cases}

    def __call__(self, request: Request) -> Any:
        found = _OUTPUT.search(request.text)
        text = self.answers.get(found.group(2)) if found else None
        if text is None:
            return error(400, "the oracle knows no answer for this prompt")
        return chat(text, tool=request.forced_tool)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def direct_call_ms(model: Any, case: dict[str, Any], method: str, server: Any, settings: Settings) -> float:
    """The client stack alone: the node's call (same method, an llm_fix-sized prompt) made directly, minus server's."""
    schema = case.get("schema")
    request = {"target": "json", "content": case["input"], "error": incident(case)["message"], "schema": schema}
    prompt = _prompts.messages("llm_fix", request, max_chars=settings.llm.max_prompt_chars)
    from kgot_errors.runtime.model import structured_runnable

    runnable = structured_runnable(model, None if method == "plain" else method, schema, None)
    started = time.perf_counter()
    await runnable.ainvoke(prompt)
    elapsed = time.perf_counter() - started
    return (elapsed - server.latencies[-1]) * 1000


async def bench(cases: list[dict[str, Any]]) -> dict[str, Any]:
    settings = Settings()
    graph = build_graph(cache=InMemoryCache())
    out: dict[str, Any] = {"cases": len(cases), "damaged_failing": 0, "deterministic": 0, "deterministic_calls": 0,
                           "llm_cases": 0,
                           "llm_one_call": 0, "llm_cached_first": 0, "llm_value_expected": 0, "repeat_zero_calls": 0,
                           "unrecovered": [],
                           "overhead_ms": [], "client_ms": [], "ours_ms": [], "server_ms": []}
    damaged_cases = [damaged(c) for c in cases]
    by_method: dict[str, list[tuple[float, float]]] = {}
    with loopback_openai(Oracle(cases + damaged_cases, settings.llm.max_prompt_chars)) as server:
        model = loopback_model(server, timeout=30)
        ctx = RecoveryContext(settings=settings, model=model)

        async def run() -> tuple[RecoveryResult, int, float]:
            before = len(server.requests)
            started = time.perf_counter()
            data = await graph.ainvoke({"incident": incident(case)}, context=ctx)
            elapsed = time.perf_counter() - started
            return RecoveryResult.from_data(data["result"]), len(server.requests) - before, elapsed

        for case in cases + damaged_cases:
            first, calls, t_call = await run()
            if first.recovered_by in DETERMINISTIC:
                if not case["id"].endswith("/damaged"):
                    out["deterministic"] += 1
                    out["deterministic_calls"] += calls
                continue
            out["damaged_failing"] += case["id"].endswith("/damaged")
            out["llm_cases"] += 1
            fixes = first.attempts_by(Layer.LLM_FIX)
            if calls == 0 and fixes and fixes[-1].evidence.get("cached"):  # a copy of an earlier case's failure
                out["llm_cached_first"] += 1
                continue
            if not (first.recovered_by == Layer.LLM_FIX and calls == 1 and len(fixes) == 1):
                out["unrecovered"].append({"id": case["id"], "category": case["category"], "calls": calls,
                                           "summary": first.summary[:200]})
                continue
            out["llm_one_call"] += 1
            out["llm_value_expected"] += first.value == case["expected"]
            server_s = server.latencies[-1]
            second, repeat_calls, t_cached = await run()
            replay = second.attempts_by(Layer.LLM_FIX)
            if repeat_calls == 0 and second.llm_calls == 0 and replay and replay[-1].evidence.get("cached"):
                out["repeat_zero_calls"] += 1
            method = fixes[0].evidence["method"]
            overhead = (t_call - t_cached - server_s) * 1000
            client = await direct_call_ms(model, case, method, server, settings)
            out["overhead_ms"].append(overhead)
            out["server_ms"].append(server_s * 1000)
            out["client_ms"].append(client)
            out["ours_ms"].append(overhead - client)
            by_method.setdefault(method, []).append((overhead, client))
    for key in ("overhead_ms", "client_ms", "ours_ms", "server_ms"):
        values = out.pop(key)
        out[key] = {"median": round(statistics.median(values), 3) if values else None,
                    "p90": round(percentile(values, 0.9), 3) if values else None, "n": len(values)}
    out["by_method"] = {m: {"n": len(v), "overhead_ms": round(statistics.median(o for o, _ in v), 3),
                            "client_ms": round(statistics.median(c for _, c in v), 3)}
                        for m, v in sorted(by_method.items())}
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


COMPARE_SECTION = "### llm_fix recovery vs a direct call (issue 14)"
COMPARE_TARGET = 1.5
COMPARE_NOTES = (
    "Reading: the model call inside llm_fix now costs what the direct call costs (timed around the call in the "
    "node: 10.2 ms against 11.0 ms for the direct call in the same run). Before, it cost 1.3-1.9x the direct "
    "call: a new `ChatOpenAI` per recovery, langchain's `include_raw` wrapper (a RunnableParallel, fallbacks and "
    "the parser, which the layer never used) and openai's async HTTP stack; a recovery on the library's loop "
    "after an `arecover` on another loop also lost a try. Now one model per configuration, runnables built once "
    "per schema, the bound model alone (the raw message is all the layer reads), and the sync client in a "
    "worker thread. What stays beyond the direct call is the graph's: starting the run and the hop to the "
    "library's loop (~3 ms), the three steps before llm_fix (classify, unicode_fix, parser_fix: ~1 ms of "
    "LangGraph each, plus the deterministic layers' own work, 0.3-2 ms here), validating the answer and "
    "building the result (~2 ms); with the default store, the two runs recover() makes around the first "
    "durable layer and the writes. So the 1.5x target is missed by the graph steps, not by the call: it needs "
    "the deterministic prefix out of LangGraph's step loop on the model path (one step, or run before the "
    "graph starts at llm_fix). The LLM-path changes alone, with the rest of the code as it is now (three "
    "alternating pairs of 40-round runs, load 4.5-6): `recover(checkpointer=None)` / direct call 3.53, 5.02, 3.95x "
    "-> 2.38, 2.56, 2.40x (typical) and 3.49, 3.16, 4.23x -> 1.95, 1.94, 1.72x (small); with the default store "
    "3.53, 4.55, 4.61x -> 2.18, 2.73, 2.73x and 3.62, 3.55, 4.35x -> 2.06, 2.03, 1.78x. Figures follow the "
    "machine's load (2 CPUs shared with other test suites: medians moved by up to 2x between runs, the ratios "
    "much less).")
_FIELDS = {
    "id": {"type": "integer"}, "title": {"type": "string"}, "author": {"type": "string"},
    "rating": {"type": "number"}, "verified": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}}, "summary": {"type": "string"},
    "pros": {"type": "array", "items": {"type": "string"}}, "cons": {"type": "array", "items": {"type": "string"}},
    "price": {"type": "number"}, "currency": {"type": "string"}, "published": {"type": "string"},
}
TYPICAL_SCHEMA = {"type": "object", "properties": _FIELDS, "required": list(_FIELDS), "additionalProperties": False}
TYPICAL_VALUE = {
    "id": 7, "title": "Notes on a small stovetop kettle", "author": "R. Okafor", "rating": 4.5, "verified": True,
    "tags": ["kettle", "kitchen", "review", "stovetop"],
    "summary": ("Boils a litre in under six minutes on gas, pours cleanly and the handle stays cool; the lid "
                "rattles at a full boil and the whistle is faint from another room. After two months of daily "
                "use there is no scale on the base, and the enamel has not chipped. The spout is wide enough "
                "to fill from a tap without taking the lid off, and the base sits flat on a small induction "
                "ring. It is heavier than the aluminium kettle it replaced, which some will mind when it is full."),
    "pros": ["pours without dripping", "cool handle", "quick on gas and induction", "easy to descale",
             "fills from the tap through the spout", "sits flat on small rings"],
    "cons": ["rattling lid", "faint whistle", "no capacity marks inside", "heavy when full"],
    "price": 39.5, "currency": "EUR", "published": "2024-05-02",
}
SMALL_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"], "additionalProperties": False}


def _single_quoted(value: Any) -> str:
    """`value` as an LLM writes it badly: single quotes, trailing commas, a 'four and a half' for the rating."""
    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return "'" + v.replace("'", "\\'") + "'"
        if isinstance(v, list):
            return "[" + ", ".join(lit(x) for x in v) + ",]"
        return json.dumps(v)

    body = ",\n".join(f"  '{k}': {lit(v) if k != 'rating' else repr('four and a half')}" for k, v in value.items())
    return f"Here is the review as JSON.\n\n```json\n{{\n{body},\n}}\n```\nTell me if a field should change."


def compare_cases() -> dict[str, dict[str, Any]]:
    return {
        "typical": {"schema": TYPICAL_SCHEMA, "answer": json.dumps(TYPICAL_VALUE),
                    "content": lambda n: _single_quoted({**TYPICAL_VALUE, "id": n})},
        "small": {"schema": SMALL_SCHEMA, "answer": json.dumps({"name": "Bob", "age": 30}),
                  "content": lambda n: f"{{name: Bob{n}, age: thirty"},
    }


def _direct(server: Any, case: dict[str, Any], settings: Settings) -> tuple[Any, list[Any]]:
    """What a user writes: a ChatOpenAI and its structured runnable built once, the llm_fix messages to send."""
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    model = ChatOpenAI(model="loopback-model", base_url=server.base_url, api_key=SecretStr("loopback-key"),
                       timeout=settings.llm.timeout_seconds, max_retries=0, temperature=0.0, use_responses_api=False)
    runnable = model.with_structured_output({**case["schema"], "title": "corrected_output"}, method="json_schema")
    content = case["content"](0)
    request = {"target": "json", "content": content, "error": "json.decoder.JSONDecodeError: Expecting value",
               "schema": case["schema"]}
    return runnable, _prompts.messages("llm_fix", request, max_chars=settings.llm.max_prompt_chars)


def compare(rounds: int) -> dict[str, Any]:
    """Per case: the three ways, interleaved round by round; medians and their ratios to the direct call."""
    import tempfile

    from kgot_errors import recover
    from kgot_errors.runtime.settings import load_settings

    out: dict[str, Any] = {"rounds": rounds, "cases": {}}
    cases = compare_cases()
    with tempfile.TemporaryDirectory() as data, \
            loopback_openai(lambda request: chat(next(c["answer"] for c in cases.values()
                                                      if c["schema"]["properties"].keys() <= _asked(request)),
                                                 tool=request.forced_tool)) as server:
        settings = load_settings(environ={"KGOT_MODEL": "openai:loopback-model", "OPENAI_BASE_URL": server.base_url,
                                          "KGOT_DATA_DIR": data})
        for name, case in cases.items():
            runnable, messages = _direct(server, case, settings)
            times: dict[str, list[float]] = {"direct": [], "no_store": [], "default_store": []}
            calls_before = len(server.chat_requests)
            for n in range(-5, rounds):  # five rounds of warm-up, not counted
                started = time.perf_counter()
                runnable.invoke(messages)
                direct = time.perf_counter() - started
                took = {}
                for key, checkpointer in (("no_store", None), ("default_store", "default")):
                    incident = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value",
                                "content": case["content"](2 * n + (key == "no_store") + 10_000),
                                "output_schema": case["schema"]}
                    started = time.perf_counter()
                    result = recover(incident, checkpointer=checkpointer, settings=settings)
                    took[key] = time.perf_counter() - started
                    if not (result.recovered_by == Layer.LLM_FIX and result.llm_calls == 1):
                        raise SystemExit(f"{name}/{key}: not one llm_fix call: {result.summary}")
                if n >= 0:
                    times["direct"].append(direct)
                    for key, seconds in took.items():
                        times[key].append(seconds)
            medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
            out["cases"][name] = {
                "content_bytes": len(case["content"](0).encode()),
                "median_ms": {k: round(v, 3) for k, v in medians.items()},
                "ratio": {k: round(medians[k] / medians["direct"], 2) for k in ("no_store", "default_store")},
                "server_calls": len(server.chat_requests) - calls_before,
            }
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _asked(request: Request) -> set[str]:
    """The property names of the schema the request carries (json_schema), or every name its prompt mentions."""
    fmt = request.body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None
    if isinstance(schema, dict) and schema.get("properties"):
        return set(schema["properties"])
    return {word.strip('"') for word in re.findall(r'"[a-z]+"', request.text)}


def compare_markdown(r: dict[str, Any], command: str, before: dict[str, Any] | None = None) -> str:
    load = ", ".join(f"{x:.1f}" for x in r["load_average"])
    lines = [
        COMPARE_SECTION,
        "",
        f"`{command}` on {platform.python_implementation()} {platform.python_version()} ({os.cpu_count()} CPUs, "
        f"load average {load} when it ended). Medians of {r['rounds']} interleaved rounds against one loopback "
        "server: the direct call is `ChatOpenAI(...).with_structured_output(schema)` built once and `.invoke(messages)` "
        "with the messages llm_fix sends; each recovery is a new incident (no correction-cache replay) through "
        "`recover()` with the model configured in its settings, classify, unicode_fix and parser_fix failing "
        "first, then one llm_fix call validated against the schema.",
        "",
        f"| case | direct call | `recover(checkpointer=None)` | ratio | `recover()`, default store | ratio | "
        f"target <= {COMPARE_TARGET}x |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in r["cases"].items():
        m, q = c["median_ms"], c["ratio"]
        met = "met" if q["no_store"] <= COMPARE_TARGET else "MISSED"
        lines.append(f"| {name} ({c['content_bytes']} bytes) | {m['direct']} ms | {m['no_store']} ms | "
                     f"{q['no_store']}x | {m['default_store']} ms | {q['default_store']}x | {met} (no store) |")
    if before:
        lines += ["", f"Before (the same command on the code before issue 14, {before['rounds']} rounds, load "
                  f"average {', '.join(f'{x:.1f}' for x in before['load_average'])}):", "",
                  "| case | direct call | `recover(checkpointer=None)` | ratio | `recover()`, default store | ratio |",
                  "|---|---|---|---|---|---|"]
        for name, c in before["cases"].items():
            m, q = c["median_ms"], c["ratio"]
            lines.append(f"| {name} | {m['direct']} ms | {m['no_store']} ms | {q['no_store']}x | "
                         f"{m['default_store']} ms | {q['default_store']}x |")
    if COMPARE_NOTES:
        lines += ["", COMPARE_NOTES]
    return "\n".join(lines) + "\n"


def markdown(r: dict[str, Any], command: str) -> str:
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}"
                         for p in ("langgraph", "langchain-core", "langchain-openai", "openai", "httpx"))
    load = ", ".join(f"{x:.1f}" for x in r["load_average"])
    o, c, g, s = r["overhead_ms"], r["client_ms"], r["ours_ms"], r["server_ms"]

    def verdict(x: dict[str, Any]) -> str:
        return "met" if x["median"] is not None and x["median"] < TARGET_MS else "MISSED"

    lines = [
        SECTION,
        "",
        f"`{command}` on {platform.python_implementation()} {platform.python_version()} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load} when it ended; {versions}). Each of the {r['cases']} corpus "
        "cases runs through the compiled graph (no checkpointer) with a real `ChatOpenAI` aimed at the "
        "loopback OpenAI-compatible server of `kgot_errors.testing`, which answers every llm_fix prompt with the "
        "case's expected value (json_schema structured output when the case has an object schema).",
        "",
        "| check | result |",
        "|---|---|",
        f"| (a) cases the deterministic layers solve | {r['deterministic']}, with {r['deterministic_calls']} LLM "
        "calls |",
        f"| (b) cases they fail | {r['llm_cases']} ({r['llm_cases'] - r['damaged_failing']} corpus, "
        f"{r['damaged_failing']} damaged copies): {r['llm_one_call']} recovered by llm_fix with exactly one "
        f"call ({r['llm_value_expected']} equal to the expected value), {r['llm_cached_first']} with none (the "
        f"same failure as an earlier case: served from the cache), {len(r['unrecovered'])} not |",
        f"| (b) the same incident again | {r['repeat_zero_calls']} of {r['llm_one_call']} cost zero calls "
        "(Attempt marked `cached`) |",
        f"| (c) time per LLM call beyond the server's, median (p90) | {o['median']} ms ({o['p90']} ms), "
        f"n = {o['n']}: target < {TARGET_MS:.0f} ms {verdict(o)} |",
        f"| of it, the client stack alone, median (p90) | {c['median']} ms ({c['p90']} ms) |",
        f"| of it, the graph and the llm_fix layer, median (p90) | {g['median']} ms ({g['p90']} ms): "
        f"target < {TARGET_MS:.0f} ms {verdict(g)} |",
        f"| server's own time per request, median | {s['median']} ms |",
        *(f"| by method: {m} (n = {v['n']}), overhead / client stack, medians | {v['overhead_ms']} ms / "
          f"{v['client_ms']} ms |" for m, v in r["by_method"].items()),
        "",
        "Time per call beyond the server's = (graph run that makes the call) - (the same incident again, served "
        "from the node cache: the same path without the node or the HTTP call) - (the server's time for the "
        "request). It holds the client stack (langchain-openai, openai, httpx over loopback: measured alone as "
        "a direct call of the same runnable, same method, minus server time) and the graph and layer (the rest, "
        "per case: the llm_fix step, prompt building, the LLM budget, structured-output set-up, validating the "
        "answer with the unicode_fix and parser_fix validators, the Attempt, the cache write).",
        "",
        NOTES,
    ]
    if r["unrecovered"]:
        lines += ["", "Not recovered with one call (the expected value did not pass the validators):", ""]
        lines += [f"- {u['id']} ({u['category']}): {u['calls']} call(s); {u['summary']}" for u in r["unrecovered"]]
    return "\n".join(lines) + "\n"


def _heading(line: str) -> bool:
    return line.startswith(("## ", "### "))


def replace_section(path: Path, section: str) -> None:
    """Replace the part of `path` that `section` heads (up to the next '## ' or '### '), or add it (a '### ' part
    at the end of the LLM layers section); everything else stays as it is."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    heading = section.splitlines()[0].strip()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        top = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
        if not heading.startswith("### ") or top is None:
            path.write_text(text.rstrip("\n") + "\n\n" + section)
            return
        start = end = next((i for i in range(top + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    else:
        end = next((i for i in range(start + 1, len(lines)) if _heading(lines[i])), len(lines))
    path.write_text("\n".join([*lines[:start], *section.rstrip("\n").splitlines(), "", *lines[end:]]).rstrip("\n")
                    + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None, help="JSONL corpus (default: bench/corpus/...)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases")
    parser.add_argument("--results", type=Path, default=None, help="Markdown file whose LLM layers section to write")
    parser.add_argument("--compare", type=int, default=None, metavar="ROUNDS",
                        help="llm_fix recovery vs a direct structured call, side by side, ROUNDS interleaved rounds")
    parser.add_argument("--json", type=Path, default=None, help="with --compare: also write the figures here")
    parser.add_argument("--before", type=Path, default=None,
                        help="with --compare: figures (--json) of an earlier run to show next to these")
    args = parser.parse_args(argv)
    if args.compare is not None:
        found = compare(args.compare)
        print(json.dumps(found, indent=2))
        if args.json is not None:
            args.json.write_text(json.dumps(found, indent=2) + "\n")
        before = json.loads(args.before.read_text()) if args.before is not None else None
        section = compare_markdown(found, f"python bench/bench_llm.py --compare {args.compare}", before)
        print(section)
        if args.results is not None:
            replace_section(args.results, section)
        return 0 if all(c["ratio"]["no_store"] <= COMPARE_TARGET for c in found["cases"].values()) else 1
    path = corpus_path(args.corpus)
    cases = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][: args.limit]
    result = asyncio.run(bench(cases))
    print(json.dumps(result, indent=2))
    command = "python bench/bench_llm.py" + (f" --limit {args.limit}" if args.limit else "")
    section = markdown(result, command)
    print(section)
    if args.results is not None:
        replace_section(args.results, section)
    ok = (result["deterministic_calls"] == 0 and result["repeat_zero_calls"] == result["llm_one_call"]
          and not result["unrecovered"] and result["ours_ms"]["median"] is not None
          and result["ours_ms"]["median"] < TARGET_MS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
