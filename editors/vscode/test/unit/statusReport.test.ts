import assert from "node:assert/strict";
import { test } from "node:test";

import { renderStatusReport } from "../../src/statusReport";

test("providers with health and latency, cache hit rate and memory, readable", () => {
  const text = renderStatusReport({
    version: "0.1.0",
    uptime_s: 300.2,
    status: { state: "degraded", message: "Crucible: some providers are failing" },
    requests: { total: 12 },
    upstream: { calls: 9, errors: 2 },
    cache: { hits: 3, misses: 9, l1: { entries: 5 }, l2: { entries: 7 } },
    providers: [
      { name: "local", kind: "ollama", model: "qwen", health: "ready", state: "closed", calls: 7, failures: 0, latency_ms: { p50: 120.4, p95: 480 }, first_byte_ms: { p50: 80 } },
      { name: "cloud", kind: "openai", model: "gpt", health: "offline", state: "open", calls: 2, failures: 2, last_error: "HTTP 503" },
    ],
    memory: { rss_mb: 61.5, pressure: "none" },
  });
  assert.match(text, /^# Crucible 0\.1\.0$/m);
  assert.match(text, /\*\*State:\*\* degraded - Crucible: some providers are failing/);
  assert.match(text, /\| local \| ollama \| qwen \| ready \| closed \| 7 \| 0 \| 120 ms \/ 480 ms \| 80 ms \|/);
  assert.match(text, /\| cloud \| openai \| gpt \| offline \| open \| 2 \| 2 \| - \/ - \| - \|/);
  assert.match(text, /Last error of cloud: HTTP 503/);
  assert.match(text, /Hit rate 25 % \(3 hits, 9 misses\)/);
  assert.match(text, /61\.5 MB resident/);
  assert.match(text, /\*\*Uptime:\*\* 5 min/);
});

test("missing fields read as '-' instead of breaking the page", () => {
  const text = renderStatusReport({});
  assert.match(text, /# Crucible -/);
  assert.match(text, /\(none configured\)/);
  assert.match(text, /Hit rate - /);
});
