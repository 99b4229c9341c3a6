"""LangGraph Server (`langgraph dev`, in memory) serves langgraph.json's graph on loopback; driven over real HTTP
from Python (langgraph-sdk) and Node.js (@langchain/langgraph-sdk), with the server's outbound traffic audited."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from kgot_errors.testing import Request, answer, loopback_openai

pytest.importorskip("langgraph_sdk")

REPO = Path(__file__).resolve().parents[2]
JS = Path(__file__).resolve().parent / "js"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
GRAPH = "kgot-errors"
UNFIXABLE = "UNFIXABLE: nothing to parse here"

QUIET = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",  # the CLI's usage analytics
    "LANGGRAPH_NO_VERSION_CHECK": "true",  # the API server's PyPI version check
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "DO_NOT_TRACK": "1",
}
"""Everything that would call out from `langgraph dev`, switched off (the audit test proves it)."""


def _service_missing(what: str) -> None:
    if os.environ.get("KGOT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required here (KGOT_REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} unavailable on this machine")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_reply(request: Request) -> object:
    """The server's chat model: a valid answer, except for the incident no one can fix."""
    return "I cannot help with that." if UNFIXABLE in request.text else answer('{"answer": 42}')(request)


class Server:
    def __init__(self, url: str, process: subprocess.Popen, log: Path, trace: Path | None, model: object) -> None:
        self.url, self.process, self.log, self.trace, self.model = url, process, log, trace, model

    def client(self):
        from langgraph_sdk import get_client

        return get_client(url=self.url)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if shutil.which("langgraph") is None and not (Path(sys.executable).parent / "langgraph").exists():
        _service_missing("the langgraph CLI (pip install 'langgraph-cli[inmem]')")
    work = tmp_path_factory.mktemp("langgraph-server")
    port = _free_port()
    log = work / "server.log"
    trace = work / "connect.trace" if shutil.which("strace") else None
    cli = str(Path(sys.executable).parent / "langgraph")
    command = [cli, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port),
               "--config", str(REPO / "langgraph.json")]
    if trace is not None:  # every connect/sendto of the server and its children, for the audit below
        command = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect,sendto,sendmsg", "-e",
                   "signal=none", "-o", str(trace), *command]
    with loopback_openai(_model_reply) as model:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LANGSMITH_", "KGOT_"))}
        env.update(QUIET, KGOT_ESCALATE_TO_HUMAN="true", KGOT_DATA_DIR=str(work / "data"),
                   KGOT_MODEL="loopback-model", OPENAI_BASE_URL=model.base_url, OPENAI_API_KEY="loopback-key",
                   KGOT_SANDBOX_BACKEND="auto")
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if process.poll() is not None:
                    pytest.fail(f"langgraph dev exited with {process.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"langgraph dev did not answer on {url}:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
            yield Server(url, process, log, trace, model)
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # the session this fixture started: strace and the server
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


BROKEN = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting ','", "content": "{'a': 1,}"}
REFUSAL = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value",
           "content": "Sorry, I cannot do that.", "output_schema": SCHEMA}
STUCK = {**REFUSAL, "content": UNFIXABLE}


async def test_a_run_recovers_and_its_state_and_history_are_readable_over_http(server, record_property):
    client = server.client()
    assert [a["graph_id"] for a in await client.assistants.search()] == [GRAPH]
    thread = await client.threads.create()
    out = await client.runs.wait(thread["thread_id"], GRAPH, input={"incident": BROKEN})
    assert out["result"]["recovered"] and out["result"]["value"] == {"a": 1}
    assert out["result"]["recovered_by"] == "parser_fix"

    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == [] and [a["layer"] for a in state["values"]["attempts"]] == ["unicode_fix", "parser_fix"]
    history = await client.threads.get_history(thread["thread_id"])
    assert [h["next"] for h in history][:3] == [[], ["parser_fix"], ["unicode_fix"]]  # a proof ends the run
    before_parser = next(h for h in history if h["next"] == ["parser_fix"])
    assert [a["layer"] for a in before_parser["values"]["attempts"]] == ["unicode_fix"]

    latencies = []  # a whole round trip: new thread, run to completion, result back
    for _ in range(5):
        started = time.perf_counter()
        t = await client.threads.create()
        await client.runs.wait(t["thread_id"], GRAPH, input={"incident": BROKEN})
        latencies.append(time.perf_counter() - started)
    record_property("server_round_trip_median_s", round(statistics.median(latencies), 4))
    print(f"server round trip (thread + run.wait, parser_fix): median {statistics.median(latencies) * 1000:.0f} ms")


async def test_the_server_builds_the_model_from_its_own_environment(server):
    client = server.client()
    before = len(server.model.requests)
    thread = await client.threads.create()
    out = await client.runs.wait(thread["thread_id"], GRAPH, input={"incident": REFUSAL})
    assert out["result"]["recovered_by"] == "llm_fix" and out["result"]["value"] == {"answer": 42}
    assert len(server.model.requests) > before  # the loopback model named by KGOT_MODEL / OPENAI_BASE_URL


async def test_escalation_pauses_in_the_human_node_and_a_command_resume_finishes_it(server):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    paused = await client.runs.wait(tid, GRAPH, input={"incident": STUCK})
    assert "__interrupt__" in paused and (await client.threads.get(tid))["status"] == "interrupted"
    state = await client.threads.get_state(tid)
    assert state["next"] == ["human"]
    request = state["interrupts"][0]["value"]
    assert request["content"] == UNFIXABLE and request["output_schema"] == SCHEMA
    assert [a["layer"] for a in request["attempts"]][:3] == ["unicode_fix", "parser_fix", "llm_fix"]

    rejected = await client.runs.wait(tid, GRAPH, command={"resume": {"answer": "forty-two"}})
    assert "__interrupt__" in rejected  # validated like any candidate: a wrong fix keeps it paused
    again = await client.threads.get_state(tid)
    assert again["interrupts"][0]["value"]["rejected"].startswith("fix rejected:")

    done = await client.runs.wait(tid, GRAPH, command={"resume": {"answer": 42}})
    assert done["result"]["recovered"] and done["result"]["recovered_by"] == "human"
    humans = [(a["try_no"], a["verdict"]) for a in done["result"]["attempts"] if a["layer"] == "human"]
    assert humans == [(1, "failed"), (2, "recovered")]


async def test_a_run_s_context_may_override_the_policy_but_not_the_server_s_choices(server):
    client = server.client()
    thread = await client.threads.create()
    out = await client.runs.wait(thread["thread_id"], GRAPH, input={"incident": STUCK},
                                 context={"settings": {"error_recovery": {"escalate_to_human": False}}})
    assert out["result"]["outcome"] == "not_recovered"  # this run did not pause, although the server escalates

    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], GRAPH, input={"incident": BROKEN},
                                   context={"settings": {"python_executor": {"backend": "unsafe-subprocess"}}})
    await client.runs.join(thread["thread_id"], run["run_id"])
    finished = await client.runs.get(thread["thread_id"], run["run_id"])
    assert finished["status"] == "error"
    assert "may override only" in server.log.read_text()


async def test_stream_mode_updates_shows_each_layer_s_attempts(server):
    client = server.client()
    thread = await client.threads.create()
    updates = [part.data async for part in client.runs.stream(thread["thread_id"], GRAPH, input={"incident": BROKEN},
                                                               stream_mode="updates") if part.event == "updates"]
    assert [next(iter(u)) for u in updates] == ["classify", "unicode_fix", "parser_fix"]
    assert updates[0]["classify"]["kind"] == "syntax"
    assert [a["verdict"] for a in updates[1]["unicode_fix"]["attempts"]] == ["failed"]
    assert [a["layer"] for a in updates[2]["parser_fix"]["attempts"]] == ["parser_fix"]
    assert updates[2]["parser_fix"]["result"]["recovered"]


async def test_a_malformed_input_fails_with_a_typed_validation_error(server):
    client = server.client()
    for bad, field in (({"incident": {"error_type": 7, "content": "{}"}}, "error_type"),
                       ({"incident": {"content": "{}", "status_code": 42}}, "status_code"),
                       ({"incident": {**BROKEN, "colour": "red"}}, "colour")):
        thread = await client.threads.create()
        with pytest.raises(Exception, match=f"InvalidIncident: invalid incident field '{field}'"):
            await client.runs.wait(thread["thread_id"], GRAPH, input=bad)
    assert "KeyError" not in server.log.read_text()


async def test_the_assistant_publishes_typed_schemas_and_a_description(server):
    client = server.client()
    assistant = (await client.assistants.search())[0]
    assert assistant["description"] and "incident" in assistant["description"]
    schemas = await client.assistants.get_schemas(assistant["assistant_id"])
    incident = schemas["input_schema"]["$defs"]["Incident"]
    assert schemas["input_schema"]["required"] == ["incident"] and "required" not in incident
    assert incident["properties"]["status_code"]["anyOf"][0] == {"maximum": 599, "minimum": 100, "type": "integer"}
    output = schemas["output_schema"]
    assert set(output["properties"]) == {"result", "attempts", "kind", "classified_by"}
    assert {"recovered", "value", "outcome", "attempts"} <= set(output["$defs"]["RecoveryResult"]["properties"])
    context = schemas["context_schema"]
    names = [context.get("title", ""), *context.get("$defs", {})]
    assert not [n for n in names if n.startswith("_")], names
    assert {"PolicyOverrides", "SyntaxOverrides", "ApiOverrides", "RecoveryOverrides"} <= set(context["$defs"])
    syntax = context["$defs"]["SyntaxOverrides"]["properties"]
    assert syntax["max_retries"]["type"] == "integer" and "required" not in context["$defs"]["SyntaxOverrides"]
    assert set(context["$defs"]["PolicyOverrides"]["properties"]) == {"syntax_error_management",
                                                                      "api_error_management", "error_recovery"}


def test_the_node_js_sdk_drives_the_same_server(server):
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _service_missing("Node.js and npm")
    if not (JS / "node_modules" / "@langchain" / "langgraph-sdk").exists():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--no-update-notifier"], cwd=JS,
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            _service_missing(f"@langchain/langgraph-sdk from npm ({done.stderr.strip()[-300:]})")
    run = subprocess.run([node, "--test", "server.test.mjs"], cwd=JS, capture_output=True, text=True, timeout=180, check=False,
                         env={**os.environ, "KGOT_SERVER_URL": server.url})
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^# pass 2$", run.stdout, re.MULTILINE) and re.search(r"^# fail 0$", run.stdout, re.MULTILINE)


_INET = re.compile(r'sa_family=AF_INET6?, .*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")')


def test_the_server_contacted_nothing_but_loopback(server):
    if server.trace is None:
        _service_missing("strace (to audit the server's connections)")
    lines = server.trace.read_text().splitlines()
    addresses = [m.group(1) or m.group(2) for line in lines if (m := _INET.search(line))]
    assert addresses, "the trace saw the server reach its loopback model"
    outside = sorted({a for a in addresses if not (a.startswith("127.") or a in ("::1", "::ffff:127.0.0.1"))})
    assert outside == [], json.dumps([line for line in lines if any(a in line for a in outside)][:10])
