// kgot-errors behind LangGraph Server, driven from Node.js with the official SDK.
// Run by tests/integration/test_server.py, which starts the server and sets KGOT_SERVER_URL.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.env.KGOT_SERVER_URL });
const GRAPH = "kgot-errors";
const SCHEMA = { type: "object", properties: { answer: { type: "integer" } }, required: ["answer"] };

test("a broken JSON incident is recovered and its attempts are in the thread's state", async () => {
  const thread = await client.threads.create();
  const out = await client.runs.wait(thread.thread_id, GRAPH, {
    input: { incident: { error_type: "json.decoder.JSONDecodeError", message: "Expecting ','", content: "{'a': 1,}" } },
  });
  assert.equal(out.result.recovered, true);
  assert.deepEqual(out.result.value, { a: 1 });
  assert.equal(out.result.recovered_by, "parser_fix");

  const state = await client.threads.getState(thread.thread_id);
  assert.deepEqual(state.next, []);
  assert.deepEqual(state.values.attempts.map((a) => a.layer), ["unicode_fix", "parser_fix"]);
  const history = await client.threads.getHistory(thread.thread_id);
  assert.ok(history.some((h) => h.next.includes("parser_fix")), "history holds the step before parser_fix");
});

test("an unfixable incident pauses in the human node and a person's fix resumes it", async () => {
  const thread = await client.threads.create();
  const paused = await client.runs.wait(thread.thread_id, GRAPH, {
    input: { incident: { error_type: "json.decoder.JSONDecodeError", message: "Expecting value",
                         content: "UNFIXABLE: nothing to parse here", output_schema: SCHEMA } },
  });
  assert.ok(paused.__interrupt__, "the run ends interrupted");
  const state = await client.threads.getState(thread.thread_id);
  assert.deepEqual(state.next, ["human"]);
  assert.match(state.tasks[0].interrupts[0].value.question, /Resume with the corrected value/);
  assert.equal((await client.threads.get(thread.thread_id)).status, "interrupted");

  const done = await client.runs.wait(thread.thread_id, GRAPH, { command: { resume: { answer: 7 } } });
  assert.equal(done.result.recovered, true);
  assert.equal(done.result.recovered_by, "human");
  assert.deepEqual(done.result.value, { answer: 7 });
});
