// The client against the running service (LOG_ANALYZER_URL, set by the Rust test that starts it) and against
// local servers that fail on purpose. Run: `node --test test/`.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";

import { LogAnalyzerClient, LogAnalyzerError } from "../index.js";

const url = process.env.LOG_ANALYZER_URL;
const service = url ? { skip: false } : { skip: "LOG_ANALYZER_URL is not set (the Rust test `node` starts the service)" };

test("one line gets the original's answer", service, async () => {
  const client = new LogAnalyzerClient({ baseUrl: url });
  const a = await client.analyzeLog(7, "2024-05-01 12:00:03 ERROR db: timeout after 30 s");
  assert.equal(a.log_id, 7);
  assert.equal(typeof a.anomaly_score, "number");
  assert.equal(typeof a.is_anomaly, "boolean");
  assert.equal(a.template, "db: timeout after <NUM> s");
  assert.ok(Array.isArray(a.reasons));
});

test("a batch keeps its order and refuses items in place", service, async () => {
  const client = new LogAnalyzerClient({ baseUrl: url });
  const answers = await client.analyzeBatch([
    { log_id: "a", log_text: "user alice logged in" },
    { log_id: "b", log_text: "" },
    { log_id: "c", log_text: "user bob logged in" },
  ]);
  assert.deepEqual(answers.map((a) => a.log_id), ["a", "b", "c"]);
  assert.match(answers[1].error, /empty/);
  assert.equal(answers[2].template, "user <*> logged in");
  const health = await client.health();
  assert.ok(health.lines_seen >= 3);
  const page = await client.templates({ pageSize: 1 });
  assert.equal(page.templates.length, 1);
});

test("a refused line throws with its status and reason", service, async () => {
  const client = new LogAnalyzerClient({ baseUrl: url });
  await assert.rejects(client.analyzeLog(1, ""), (e) => e instanceof LogAnalyzerError && e.status === 422 && /empty/.test(e.message));
});

/** A local server answering with `answers` in turn (the last one repeats); returns it and its request count. */
async function serve(answers) {
  let count = 0;
  const server = createServer((req, res) => {
    const answer = answers[Math.min(count, answers.length - 1)];
    count++;
    if (answer === "hang") return;
    res.writeHead(answer.status, { "Content-Type": "application/json", ...(answer.headers || {}) });
    res.end(JSON.stringify(answer.body));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return { server, base: `http://127.0.0.1:${port}`, requests: () => count };
}

test("503s are retried, then the answer is returned", async () => {
  const s = await serve([{ status: 503, body: { error: "busy" } }, { status: 503, body: { error: "busy" } }, { status: 200, body: { status: "ok" } }]);
  try {
    const client = new LogAnalyzerClient({ baseUrl: s.base, retries: 2, retryDelayMs: 10 });
    assert.deepEqual(await client.health(), { status: "ok" });
    assert.equal(s.requests(), 3);
  } finally {
    s.server.closeAllConnections();
    s.server.close();
  }
});

test("a 4xx is not retried", async () => {
  const s = await serve([{ status: 422, body: { error: "log_text is empty" } }]);
  try {
    const client = new LogAnalyzerClient({ baseUrl: s.base, retries: 3, retryDelayMs: 10 });
    await assert.rejects(client.analyzeLog(1, ""), (e) => e.status === 422);
    assert.equal(s.requests(), 1);
  } finally {
    s.server.closeAllConnections();
    s.server.close();
  }
});

test("a POST that timed out is not retried: the service may have learned the line", async () => {
  const s = await serve(["hang"]);
  try {
    const client = new LogAnalyzerClient({ baseUrl: s.base, timeoutMs: 100, retries: 3, retryDelayMs: 10 });
    await assert.rejects(client.analyzeLog(1, "x"), (e) => e.status === null && /timed out/.test(e.message));
    assert.equal(s.requests(), 1);
  } finally {
    s.server.closeAllConnections();
    s.server.close();
  }
});

test("a POST refused with 503 is retried", async () => {
  const s = await serve([{ status: 503, body: { error: "busy" } }, { status: 200, body: { log_id: 1 } }]);
  try {
    const client = new LogAnalyzerClient({ baseUrl: s.base, retries: 2, retryDelayMs: 10 });
    assert.deepEqual(await client.analyzeLog(1, "x"), { log_id: 1 });
    assert.equal(s.requests(), 2);
  } finally {
    s.server.closeAllConnections();
    s.server.close();
  }
});

test("a GET that never answers times out on every attempt", async () => {
  const s = await serve(["hang"]);
  try {
    const client = new LogAnalyzerClient({ baseUrl: s.base, timeoutMs: 100, retries: 1, retryDelayMs: 10 });
    await assert.rejects(client.health(), (e) => e instanceof LogAnalyzerError && e.status === null && /timed out/.test(e.message));
    assert.equal(s.requests(), 2);
  } finally {
    s.server.closeAllConnections();
    s.server.close();
  }
});

test("the token is sent as a bearer token", async () => {
  let seen;
  const server = createServer((req, res) => {
    seen = req.headers.authorization;
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end("{}");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const client = new LogAnalyzerClient({ baseUrl: `http://127.0.0.1:${server.address().port}/`, token: "s3cret" });
    await client.health();
    assert.equal(seen, "Bearer s3cret");
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
