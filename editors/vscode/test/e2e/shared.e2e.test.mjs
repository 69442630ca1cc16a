// VS Code with `crucible.server.shared` on: the server the extension starts is a thin client
// of the per-user shared daemon (crucible-lsp --shared), which it starts in this run's own
// XDG_RUNTIME_DIR, and suggestions come through it. CRUCIBLE_SHARED is set to 0 for this
// window, so the setting alone decides, whatever the suite runs with.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";

import { FakeProvider, required, startEditor, until } from "./harness.mjs";

/** Every process whose command line has `crucible-lsp` and whose XDG_RUNTIME_DIR is `runtime`. */
function serverProcesses(runtime) {
  const found = [];
  for (const pid of fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const argv = fs.readFileSync(path.join("/proc", pid, "cmdline"), "utf8").split("\0");
      const environ = fs.readFileSync(path.join("/proc", pid, "environ"), "utf8").split("\0");
      if (argv.some((arg) => arg.endsWith("crucible-lsp")) && environ.includes(`XDG_RUNTIME_DIR=${runtime}`)) {
        found.push({ pid: Number(pid), argv });
      }
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

describe("VS Code, crucible.server.shared on", { timeout: 180_000 }, () => {
  let fake;
  let editor;

  before(async () => {
    fake = await FakeProvider.start();
    await fake.send({ reply: "", replies: [["def add", "_numbers(a, b):"]] });
    editor = await startEditor({
      name: "shared",
      fake,
      machineSettings: { "crucible.server.path": required("CRUCIBLE_LSP"), "crucible.server.shared": true },
      settings: { "crucible.completion.debounce_mode": "fixed", "crucible.cache.prefetch": "off" },
      env: { CRUCIBLE_SHARED: "0" },
      files: { "demo.py": "import os\n\n" },
    });
  });

  after(async () => {
    await editor?.close();
    fake?.close();
  });

  test("the server runs as a thin client of a daemon it started in the run's XDG_RUNTIME_DIR", async () => {
    await editor.waitForStatus("ready", 60_000);
    assert.match(editor.crucibleLog(), /starting .*crucible-lsp --shared \(found: setting\)/);
    const socket = path.join(editor.daemonDir, "daemon.sock");
    await until("the daemon's socket", () => fs.existsSync(socket), 15_000);
    assert.ok(fs.statSync(socket).isSocket());
    const daemon = editor.daemonPid();
    assert.ok(daemon, "no daemon.pid");
    const daemonArgv = fs.readFileSync(`/proc/${daemon}/cmdline`, "utf8").split("\0");
    assert.ok(daemonArgv.some((arg) => arg.includes("crucible.shared.daemon")), daemonArgv.join(" "));
    const clients = serverProcesses(path.dirname(editor.daemonDir));
    assert.equal(clients.length, 1, JSON.stringify(clients));
    assert.ok(clients[0].argv.includes("--shared"), clients[0].argv.join(" "));
  });

  test("suggestions come through the daemon", async () => {
    await editor.open("demo.py");
    await editor.type("def add");
    assert.equal(await editor.waitForGhost("_numbers(a, b):"), "_numbers(a, b):");
  });
});
