/**
 * Where `crucible-lsp` is, without trusting the extension host's PATH alone.
 *
 * VS Code's extension host is started by the window manager, a remote agent or code-server,
 * not by the user's shell: a venv activated in a terminal is not on its PATH (the throwaway
 * extension this one replaces died with `spawn crucible-lsp ENOENT`). So, first match wins:
 *
 *   1. the `crucible.server.path` setting (when set, it is the answer, or an error: never
 *      silently something else);
 *   2. `crucible-lsp` beside the interpreter the Python extension selected for the workspace
 *      (a venv's bin/ or Scripts/), as the black/isort/ruff extensions find their tools;
 *   3. `crucible-lsp` on the extension host's PATH;
 *   4. the private environment this extension manages (installed on request, see
 *      managedEnvironment.ts).
 *
 * Pure: the file system is reached through `isExecutable`, so the order is unit-tested.
 */
import * as path from "node:path";

export type ServerSource = "setting" | "python-extension" | "path" | "managed";

export interface ServerCommand {
  readonly source: ServerSource;
  readonly command: string;
}

export interface DiscoveryInputs {
  /** `crucible.server.path`, "" when unset (a leading `~` means the home folder). */
  readonly configuredPath: string;
  /** The Python extension's interpreter for the workspace, when that extension is there. */
  readonly pythonInterpreter: string | undefined;
  /** The extension host's PATH. */
  readonly pathVariable: string;
  /** The root of the private environment (a venv), whether it exists or not. */
  readonly managedEnvironment: string;
  readonly platform: NodeJS.Platform;
  readonly home: string;
  readonly isExecutable: (file: string) => boolean;
}

export type Discovery =
  | { readonly kind: "found"; readonly server: ServerCommand }
  | { readonly kind: "bad-setting"; readonly path: string }
  | { readonly kind: "missing"; readonly looked: readonly string[] };

export function executableName(platform: NodeJS.Platform): string {
  return platform === "win32" ? "crucible-lsp.exe" : "crucible-lsp";
}

/** A venv's folder of executables. */
export function scriptsFolder(environment: string, platform: NodeJS.Platform): string {
  return pathFor(platform).join(environment, platform === "win32" ? "Scripts" : "bin");
}

export function discoverServer(inputs: DiscoveryInputs): Discovery {
  const p = pathFor(inputs.platform);
  const exe = executableName(inputs.platform);
  const configured = expandHome(inputs.configuredPath.trim(), inputs.home, p);
  if (configured !== "") {
    return inputs.isExecutable(configured)
      ? { kind: "found", server: { source: "setting", command: configured } }
      : { kind: "bad-setting", path: configured };
  }
  const candidates: ServerCommand[] = [];
  if (inputs.pythonInterpreter) {
    candidates.push({
      source: "python-extension",
      command: p.join(p.dirname(inputs.pythonInterpreter), exe),
    });
  }
  const separator = inputs.platform === "win32" ? ";" : ":";
  for (const folder of inputs.pathVariable.split(separator)) {
    if (folder !== "") candidates.push({ source: "path", command: p.join(folder, exe) });
  }
  candidates.push({
    source: "managed",
    command: p.join(scriptsFolder(inputs.managedEnvironment, inputs.platform), exe),
  });
  const found = candidates.find((candidate) => inputs.isExecutable(candidate.command));
  return found
    ? { kind: "found", server: found }
    : { kind: "missing", looked: candidates.map((candidate) => candidate.command) };
}

function expandHome(file: string, home: string, p: path.PlatformPath): string {
  if (file === "~") return home;
  if (file.startsWith("~/") || file.startsWith("~\\")) return p.join(home, file.slice(2));
  return file;
}

function pathFor(platform: NodeJS.Platform): path.PlatformPath {
  return platform === "win32" ? path.win32 : path.posix;
}
