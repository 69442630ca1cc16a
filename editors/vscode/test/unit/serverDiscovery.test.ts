import assert from "node:assert/strict";
import { test } from "node:test";

import { type DiscoveryInputs, discoverServer } from "../../src/serverDiscovery";

function inputs(executables: readonly string[], overrides: Partial<DiscoveryInputs> = {}): DiscoveryInputs {
  return {
    configuredPath: "",
    pythonInterpreter: "/work/.venv/bin/python",
    pathVariable: "/usr/local/bin:/usr/bin",
    managedEnvironment: "/storage/server-0.1.0",
    platform: "linux",
    home: "/home/me",
    isExecutable: (file) => executables.includes(file),
    ...overrides,
  };
}

const everywhere = [
  "/opt/crucible-lsp",
  "/work/.venv/bin/crucible-lsp",
  "/usr/bin/crucible-lsp",
  "/storage/server-0.1.0/bin/crucible-lsp",
];

test("the path setting comes first", () => {
  const found = discoverServer(inputs(everywhere, { configuredPath: "/opt/crucible-lsp" }));
  assert.deepEqual(found, { kind: "found", server: { source: "setting", command: "/opt/crucible-lsp" } });
});

test("a path setting that is no executable is an error, never silently something else", () => {
  const found = discoverServer(inputs(everywhere, { configuredPath: "/nowhere/crucible-lsp" }));
  assert.deepEqual(found, { kind: "bad-setting", path: "/nowhere/crucible-lsp" });
});

test("~ in the path setting is the home folder", () => {
  const found = discoverServer(inputs(["/home/me/.local/bin/crucible-lsp"], { configuredPath: "~/.local/bin/crucible-lsp" }));
  assert.equal(found.kind === "found" && found.server.command, "/home/me/.local/bin/crucible-lsp");
});

test("then beside the Python extension's interpreter, then PATH in order, then the private environment", () => {
  const order = everywhere.slice(1);
  const sources = [];
  for (let i = 0; i < order.length; i++) {
    const found = discoverServer(inputs(order.slice(i)));
    assert.equal(found.kind, "found");
    sources.push([found.server.source, found.server.command]);
  }
  assert.deepEqual(sources, [
    ["python-extension", "/work/.venv/bin/crucible-lsp"],
    ["path", "/usr/bin/crucible-lsp"],
    ["managed", "/storage/server-0.1.0/bin/crucible-lsp"],
  ]);
});

test("without the Python extension, PATH is next", () => {
  const found = discoverServer(inputs(everywhere.slice(1), { pythonInterpreter: undefined }));
  assert.equal(found.kind === "found" && found.server.source, "path");
});

test("nothing found lists every place looked at", () => {
  const found = discoverServer(inputs([]));
  assert.deepEqual(found, {
    kind: "missing",
    looked: [
      "/work/.venv/bin/crucible-lsp",
      "/usr/local/bin/crucible-lsp",
      "/usr/bin/crucible-lsp",
      "/storage/server-0.1.0/bin/crucible-lsp",
    ],
  });
});

test("Windows: Scripts\\crucible-lsp.exe and ; between PATH folders", () => {
  const found = discoverServer(
    inputs([], {
      platform: "win32",
      pythonInterpreter: "C:\\p\\.venv\\Scripts\\python.exe",
      pathVariable: "C:\\bin;D:\\tools",
      managedEnvironment: "C:\\storage\\server-0.1.0",
    }),
  );
  assert.deepEqual(found.kind === "missing" && found.looked, [
    "C:\\p\\.venv\\Scripts\\crucible-lsp.exe",
    "C:\\bin\\crucible-lsp.exe",
    "D:\\tools\\crucible-lsp.exe",
    "C:\\storage\\server-0.1.0\\Scripts\\crucible-lsp.exe",
  ]);
});
