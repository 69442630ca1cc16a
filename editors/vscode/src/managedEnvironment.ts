/**
 * The private environment: a venv under the extension's global storage holding the server
 * version this extension was built for, for users with Python but no `crucible-lsp`.
 *
 *   python3 -m venv <globalStorage>/server-<version>
 *   <venv>/bin/python -m pip install crucible-lsp==<version>
 *
 * pip runs with the extension host's environment, so pip's own configuration applies
 * (PIP_INDEX_URL, PIP_FIND_LINKS, pip.conf: a company mirror, or the end-to-end tests' local
 * wheel). Its output goes to the Crucible log line by line; a progress notification shows the
 * step and can cancel it.
 *
 * Errors: `PythonMissing` (no Python 3.11+ found: the message says what to do) and
 * `InstallFailed` (venv or pip exited non-zero: the message points at the log).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";

import { scriptsFolder } from "./serverDiscovery";

export class PythonMissing extends Error {}
export class InstallFailed extends Error {}

const MINIMUM = [3, 11] as const;

export function environmentFolder(storage: vscode.Uri, version: string): string {
  return path.join(storage.fsPath, `server-${version}`);
}

/** The first candidate that runs and is Python 3.11 or newer. */
export async function findPython(candidates: readonly string[]): Promise<string> {
  const seen: string[] = [];
  for (const candidate of candidates) {
    const version = await pythonVersion(candidate);
    if (version === undefined) continue;
    seen.push(`${candidate} is ${version.join(".")}`);
    const [major = 0, minor = 0] = version;
    if (major > MINIMUM[0] || (major === MINIMUM[0] && minor >= MINIMUM[1])) return candidate;
  }
  const found = seen.length > 0 ? ` (found: ${seen.join("; ")})` : "";
  throw new PythonMissing(
    `Crucible needs Python ${MINIMUM.join(".")} or newer to install its server${found}. ` +
      "Install Python (python.org, or your system's package manager), or install the server " +
      "yourself (pip install crucible-lsp) and set crucible.server.path to its crucible-lsp.",
  );
}

function pythonVersion(command: string): Promise<number[] | undefined> {
  return new Promise((resolve) => {
    let out = "";
    const child = spawn(command, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", () => {
      resolve(undefined);
    });
    child.on("close", (code) => {
      resolve(code === 0 ? out.trim().split(".").map(Number) : undefined);
    });
  });
}

export interface InstallRequest {
  readonly python: string;
  readonly folder: string;
  readonly version: string;
  readonly log: vscode.LogOutputChannel;
}

/** Creates the venv and installs the server into it, with a cancellable progress notification. */
export async function installServer(request: InstallRequest): Promise<void> {
  const { python, folder, version, log } = request;
  const venvPython = path.join(
    scriptsFolder(folder, process.platform),
    process.platform === "win32" ? "python.exe" : "python",
  );
  await vscode.window.withProgress(
    {
      location: vscode.ProgressLocation.Notification,
      title: `Crucible: installing crucible-lsp ${version}`,
      cancellable: true,
    },
    async (progress, token) => {
      fs.rmSync(folder, { recursive: true, force: true }); // a half-made venv from a failed try
      progress.report({ message: "creating a Python environment" });
      await run(python, ["-m", "venv", folder], log, token);
      progress.report({ message: "pip install (details in the Crucible log)" });
      await run(
        venvPython,
        ["-m", "pip", "install", "--disable-pip-version-check", `crucible-lsp==${version}`],
        log,
        token,
      );
    },
  );
}

function run(
  command: string,
  args: readonly string[],
  log: vscode.LogOutputChannel,
  token: vscode.CancellationToken,
): Promise<void> {
  log.info(`$ ${command} ${args.join(" ")}`);
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    const cancel = token.onCancellationRequested(() => child.kill());
    const forward = (chunk: Buffer): void => {
      for (const line of chunk.toString().split(/\r?\n/)) if (line.trim() !== "") log.info(line);
    };
    child.stdout.on("data", forward);
    child.stderr.on("data", forward);
    child.on("error", (error) => {
      cancel.dispose();
      reject(new InstallFailed(`${command} could not start: ${error.message}`));
    });
    child.on("close", (code) => {
      cancel.dispose();
      if (code === 0) resolve();
      else if (token.isCancellationRequested) reject(new InstallFailed("installation cancelled"));
      else reject(new InstallFailed(`${path.basename(command)} ${args.slice(0, 2).join(" ")} failed (exit ${code ?? "signal"}): see the Crucible log`));
    });
  });
}
