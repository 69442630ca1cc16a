/**
 * Crucible for VS Code: the composition root. It builds each part and wires their hooks:
 *
 *   serverDiscovery    where crucible-lsp is (setting, Python extension, PATH, private env)
 *   serverArguments    its arguments: crucible.server.args, and --shared when that is on
 *   managedEnvironment the private environment, installed on request
 *   serverConnection   the language client (middleware: switch, retrigger, configuration)
 *   settingsTranslation VS Code settings -> the server's configuration table
 *   statusBar          crucible/didChangeStatus drawn (statusPresentation.ts decides)
 *   commands           the Crucible: commands and the status bar menu
 *   diagnosticsForwarding other extensions' diagnostics -> crucible/didChangeDiagnostics
 *   suggestionSwitch   off / off for a language / snoozed
 *   readyRetrigger     ask again when a slow answer lands while the user waits for it
 *
 * Runs in the workspace extension host (package.json extensionKind), so with Remote-SSH, WSL,
 * dev containers and code-server the server runs next to the files.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as vscode from "vscode";

import { registerCommands } from "./commands";
import { DiagnosticsForwarding } from "./diagnosticsForwarding";
import { environmentFolder, findPython, installServer, PythonMissing } from "./managedEnvironment";
import { ReadyRetrigger } from "./readyRetrigger";
import { serverArguments } from "./serverArguments";
import { discoverServer, type ServerCommand } from "./serverDiscovery";
import { ServerConnection } from "./serverConnection";
import { SERVER_VERSION } from "./serverVersion";
import { removedKeys, SECTION, serverSettings, settingSpecs, type ServerTable } from "./settingsTranslation";
import { StatusBar } from "./statusBar";
import type { ClientPhase, StatusPayload } from "./statusPresentation";
import { SuggestionSwitch } from "./suggestionSwitch";

const INSTALL_OFFERED = "crucible.installOffered";

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = vscode.window.createOutputChannel("Crucible", { log: true });
  const suggestions = new SuggestionSwitch(context.globalState, Date.now);
  const retrigger = new ReadyRetrigger();
  const specs = settingSpecs(context.extension.packageJSON);
  const statusBar = new StatusBar("crucible.showMenu");
  const managedFolder = environmentFolder(context.globalStorageUri, SERVER_VERSION);
  let phase: ClientPhase = "starting";
  let status: StatusPayload | undefined;
  let server: ServerCommand | undefined;

  const redraw = (): void => {
    statusBar.draw(phase, status, suggestions.view(vscode.window.activeTextEditor?.document.languageId));
  };
  const readSettings = (): ServerTable => {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    const configuration = vscode.workspace.getConfiguration(SECTION, folder);
    return serverSettings(specs, (key) => configuration.inspect(key), vscode.workspace.isTrusted);
  };

  const connection = new ServerConnection({
    log,
    suggestions,
    retrigger,
    settings: readSettings,
    onStatus: (next) => {
      status = next;
      redraw();
      if (retrigger.stateChanged(next.state, cursorSpot())) {
        log.debug("the answer VS Code gave up on is ready: asking for it again");
        void vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
      }
    },
    onRunning: (running) => {
      phase = running ? "running" : "stopped";
      if (!running) status = undefined;
      redraw();
    },
  });

  const startServer = async (): Promise<void> => {
    phase = "starting";
    status = undefined;
    redraw();
    const found = discoverServer({
      configuredPath: vscode.workspace.getConfiguration(SECTION).get<string>("server.path", ""),
      pythonInterpreter: await pythonExtensionInterpreter(log),
      pathVariable: process.env.PATH ?? "",
      managedEnvironment: managedFolder,
      platform: process.platform,
      home: os.homedir(),
      isExecutable,
    });
    if (found.kind === "found") {
      server = found.server;
      try {
        const settings = vscode.workspace.getConfiguration(SECTION);
        const args = serverArguments(settings.get<string[]>("server.args", []), settings.get<boolean>("server.shared", false));
        await connection.start(found.server, args);
      } catch (error) {
        log.error(`the server did not start: ${String(error)}`);
        phase = "stopped";
        redraw();
      }
      return;
    }
    server = undefined;
    await connection.stop();
    phase = "no-server";
    redraw();
    if (found.kind === "bad-setting") {
      const message = `Crucible: crucible.server.path is set to ${found.path}, which is not an executable file.`;
      log.error(message);
      if ((await vscode.window.showErrorMessage(message, "Open Settings")) === "Open Settings") {
        await vscode.commands.executeCommand("workbench.action.openSettings", "crucible.server.path");
      }
      return;
    }
    log.warn(`crucible-lsp not found; looked at: ${found.looked.join(", ")}`);
    if (context.globalState.get<boolean>(INSTALL_OFFERED) === true) return; // offered once
    await context.globalState.update(INSTALL_OFFERED, true);
    const choice = await vscode.window.showInformationMessage(
      `Crucible: crucible-lsp was not found (beside the Python extension's interpreter, on PATH). ` +
        `Install crucible-lsp ${SERVER_VERSION} into a private environment managed by this extension?`,
      "Install",
      "Set Path",
    );
    if (choice === "Install") await install();
    else if (choice === "Set Path") {
      await vscode.commands.executeCommand("workbench.action.openSettings", "crucible.server.path");
    }
  };

  const install = async (): Promise<void> => {
    try {
      const interpreter = await pythonExtensionInterpreter(log);
      const python = await findPython([...(interpreter ? [interpreter] : []), "python3", "python"]);
      await installServer({ python, folder: managedFolder, version: SERVER_VERSION, log });
      log.info(`installed crucible-lsp ${SERVER_VERSION} into ${managedFolder}`);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log.error(message);
      void vscode.window.showErrorMessage(
        error instanceof PythonMissing ? message : `Crucible: installing the server failed: ${message}`,
      );
      return;
    }
    await startServer();
  };

  context.subscriptions.push(
    log,
    statusBar,
    connection,
    new DiagnosticsForwarding(
      () => connection.running,
      () => vscode.workspace.getConfiguration(SECTION).get<boolean>("client.forwardDiagnostics", true),
    ),
    ...registerCommands({
      log,
      suggestions,
      client: () => connection.running,
      server: () => server,
      restart: startServer,
      install,
      switched: redraw,
    }),
    vscode.window.onDidChangeActiveTextEditor(redraw),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration(`${SECTION}.server`)) void startServer();
      else if (event.affectsConfiguration(SECTION)) {
        // A key the server got at start-up and no longer has can only leave by a restart.
        if (removedKeys(connection.initialSettings, readSettings()).length > 0) void startServer();
        else void connection.pushSettings();
      }
    }),
  );
  const tick = setInterval(redraw, 15_000); // a snooze's minutes left, and its end
  context.subscriptions.push({
    dispose: () => {
      clearInterval(tick);
    },
  });
  await startServer();
}

export function deactivate(): void {
  // context.subscriptions stops the server.
}

function cursorSpot(): { uri: string; version: number; line: number; character: number } | undefined {
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined) return undefined;
  const { line, character } = editor.selection.active;
  return { uri: editor.document.uri.toString(), version: editor.document.version, line, character };
}

function isExecutable(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The interpreter the Python extension selected for the workspace, when it is installed. */
async function pythonExtensionInterpreter(log: vscode.LogOutputChannel): Promise<string | undefined> {
  const extension = vscode.extensions.getExtension("ms-python.python");
  if (extension === undefined) return undefined;
  try {
    const api: unknown = extension.isActive ? extension.exports : await extension.activate();
    const environments = (api as { environments?: { getActiveEnvironmentPath?: (r?: vscode.Uri) => { path?: string } | undefined } })
      .environments;
    return environments?.getActiveEnvironmentPath?.(vscode.workspace.workspaceFolders?.[0]?.uri)?.path;
  } catch (error) {
    log.warn(`the Python extension did not say which interpreter it uses: ${String(error)}`);
    return undefined;
  }
}
