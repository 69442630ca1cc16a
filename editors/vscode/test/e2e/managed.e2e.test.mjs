// VS Code with Crucible and no crucible-lsp anywhere: the extension offers, once, to install
// the server into a private environment; the user clicks Install, and suggestions work.
// pip installs from the wheels run.sh built of this repository (its index turned off), so
// the test needs no network: exactly the version in server/crucible/__init__.py.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";

import { FakeProvider, REPO, required, startEditor } from "./harness.mjs";

describe("VS Code, server installed by the extension", { timeout: 300_000 }, () => {
  let fake;
  let editor;

  before(async () => {
    fake = await FakeProvider.start();
    editor = await startEditor({
      name: "managed",
      fake,
      settings: { "crucible.completion.debounce_mode": "fixed", "crucible.cache.prefetch": "off" },
      // No PYTHONPATH (run.sh may pass one through for the other tests): pip would find the
      // checkout on it, call crucible-lsp installed, and put no script in the environment.
      // The wheel is built of this checkout, so the server runs its code all the same.
      env: { PIP_NO_INDEX: "1", PIP_FIND_LINKS: required("CRUCIBLE_WHEELS"), PYTHONPATH: undefined },
      files: { "demo.py": "import os\n\n" },
    });
  });

  after(async () => {
    await editor?.close();
    fake?.close();
  });

  test("with no crucible-lsp found, the status bar says so and the extension offers to install it", async () => {
    const label = await editor.waitForStatus("not found", 60_000);
    assert.match(label, /crucible-lsp was not found/);
    const toast = editor.page.locator(".notification-toast", { hasText: "crucible-lsp was not found" }).first();
    await toast.waitFor({ timeout: 30_000 });
    await editor.screenshot("install-offer");
    await toast.getByRole("button", { name: "Install" }).click();
  });

  test("after the install the server runs from the private environment, at the repository's version", async () => {
    await editor.waitForStatus("ready", 240_000);
    const version = /^__version__ = "([^"]+)"$/m.exec(fs.readFileSync(path.join(REPO, "server", "crucible", "__init__.py"), "utf8"))[1];
    const log = editor.crucibleLog();
    assert.match(log, new RegExp(`installed crucible-lsp ${version.replace(/\./g, "\\.")} into `));
    assert.match(log, /found: managed/);
    assert.match(log, new RegExp(`Successfully installed .*crucible-lsp-${version.replace(/\./g, "\\.")}`));
  });

  test("and suggestions work", async () => {
    await fake.send({ reply: "_numbers(a, b):" });
    await editor.open("demo.py");
    await editor.type("def add");
    assert.equal(await editor.waitForGhost("_numbers(a, b):"), "_numbers(a, b):");
  });
});
