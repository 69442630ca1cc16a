import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { type Inspected, removedKeys, serverSettings, settingSpecs } from "../../src/settingsTranslation";

const packageJson: unknown = JSON.parse(readFileSync(join(__dirname, "..", "..", "..", "package.json"), "utf8"));
const specs = settingSpecs(packageJson);

function from(values: Record<string, Inspected>, trusted = true): Record<string, unknown> {
  return serverSettings(specs, (key) => values[key], trusted);
}

test("the extension's own keys are not the server's", () => {
  const keys = specs.map((spec) => spec.key);
  assert.ok(keys.includes("completion.debounce_ms"));
  assert.ok(keys.includes("providers"));
  assert.ok(!keys.some((key) => /^(server|trace|client)\./.test(key)), keys.join());
});

test("only what the user set is sent, nested as the server's table, never VS Code's defaults", () => {
  assert.deepEqual(from({}), {});
  const table = from({
    "completion.debounce_ms": { globalValue: 80 },
    "completion.multiline": { workspaceValue: "never" },
    "cache.enabled": { globalValue: false },
  });
  assert.deepEqual(table, { completion: { debounce_ms: 80, multiline: "never" }, cache: { enabled: false } });
});

test("a folder's value wins over the workspace's, which wins over the user's", () => {
  const table = from({ "completion.max_lines": { globalValue: 4, workspaceValue: 6, workspaceFolderValue: 8 } });
  assert.deepEqual(table, { completion: { max_lines: 8 } });
});

test("providers and the trust keys come from the user's (or remote) settings only", () => {
  const table = from({
    providers: { globalValue: [{ name: "mine" }], workspaceValue: [{ name: "repo's" }] },
    trusted_workspaces: { workspaceValue: ["/"] },
    "cache.disk_path": { workspaceFolderValue: "/tmp/x" },
  });
  assert.deepEqual(table, { providers: [{ name: "mine" }] });
});

test("in an untrusted workspace, restricted keys ignore the workspace's value", () => {
  // hedging costs calls: config/trust.py does not let an untrusted crucible.toml set it either
  const values = { "resilience.hedging": { globalValue: false, workspaceValue: true } };
  assert.deepEqual(from(values, false), { resilience: { hedging: false } });
  assert.deepEqual(from(values, true), { resilience: { hedging: true } });
  // completion.enabled is one a workspace may always set (config/trust.py ALLOWED)
  assert.deepEqual(from({ "completion.enabled": { workspaceValue: false } }, false), { completion: { enabled: false } });
});

test("a key removed since start-up is named (it can only leave by a restart)", () => {
  const before = { completion: { debounce_ms: 80, max_lines: 4 }, providers: [] };
  assert.deepEqual(removedKeys(before, { completion: { debounce_ms: 90, max_lines: 4 }, providers: [] }), []);
  assert.deepEqual(removedKeys(before, { completion: { max_lines: 4 } }), ["completion.debounce_ms", "providers"]);
});
