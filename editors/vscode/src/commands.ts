/**
 * The `Crucible:` commands and the status bar menu. Each calls the server's `crucible.*`
 * command (workspace/executeCommand) where one exists: crucible.status, crucible.clearCache.
 *
 * The server's own command ids are registered in VS Code by the language client (it does so
 * for every id in executeCommandProvider), so the palette commands here have ids of their
 * own (`crucible.showStatus`, `crucible.clearResponseCache`).
 */
import * as vscode from "vscode";
import { ExecuteCommandRequest, type LanguageClient } from "vscode-languageclient/node";

import type { ServerCommand } from "./serverDiscovery";
import { renderStatusReport } from "./statusReport";
import type { SuggestionSwitch } from "./suggestionSwitch";

export interface CommandDeps {
  readonly log: vscode.LogOutputChannel;
  readonly suggestions: SuggestionSwitch;
  readonly client: () => LanguageClient | undefined;
  readonly server: () => ServerCommand | undefined;
  readonly restart: () => Promise<void>;
  readonly install: () => Promise<void>;
  /** The user's switch changed: redraw the status bar. */
  readonly switched: () => void;
}

const STATUS_SCHEME = "crucible-status";
const STATUS_URI = vscode.Uri.parse(`${STATUS_SCHEME}:/Crucible%20Status.md`);

export function registerCommands(deps: CommandDeps): vscode.Disposable[] {
  const report = new StatusDocument();
  const commands: Record<string, () => Promise<unknown>> = {
    "crucible.showMenu": () => showMenu(deps),
    "crucible.toggleSuggestions": async () => {
      await deps.suggestions.toggle();
      deps.switched();
    },
    "crucible.toggleSuggestionsForLanguage": async () => {
      const language = vscode.window.activeTextEditor?.document.languageId;
      if (language === undefined) {
        void vscode.window.showInformationMessage("Crucible: open a file first, to pick its language.");
        return;
      }
      await deps.suggestions.toggleLanguage(language);
      deps.switched();
    },
    "crucible.snooze": async () => {
      await deps.suggestions.snooze();
      deps.switched();
    },
    "crucible.showStatus": async () => {
      const status = await serverCommand(deps, "crucible.status");
      if (status === undefined) return;
      report.set(renderStatusReport(status));
      const document = await vscode.workspace.openTextDocument(STATUS_URI);
      await vscode.window.showTextDocument(document, { preview: true });
    },
    "crucible.clearResponseCache": async () => {
      const held = await serverCommand(deps, "crucible.clearCache");
      if (held === undefined) return;
      void vscode.window.showInformationMessage(`Crucible: cache cleared (${describeCounts(held)}).`);
    },
    "crucible.restartServer": () => deps.restart(),
    "crucible.showLog": () => {
      deps.log.show();
      return Promise.resolve();
    },
    "crucible.runDoctor": () => {
      runDoctor(deps);
      return Promise.resolve();
    },
    "crucible.installServer": () => deps.install(),
    "crucible.acceptWord": () =>
      Promise.resolve(vscode.commands.executeCommand("editor.action.inlineSuggest.acceptNextWord")),
    "crucible.acceptLine": () =>
      Promise.resolve(vscode.commands.executeCommand("editor.action.inlineSuggest.acceptNextLine")),
  };
  return [
    vscode.workspace.registerTextDocumentContentProvider(STATUS_SCHEME, report),
    new vscode.Disposable(() => {
      report.dispose();
    }),
    ...Object.entries(commands).map(([id, run]) => vscode.commands.registerCommand(id, run)),
  ];
}

async function serverCommand(deps: CommandDeps, command: string): Promise<unknown> {
  const client = deps.client();
  if (client === undefined) {
    void vscode.window.showWarningMessage("Crucible: the server is not running (Crucible: Show Log says why).");
    return undefined;
  }
  try {
    return await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [] });
  } catch (error) {
    deps.log.error(`${command}: ${String(error)}`);
    void vscode.window.showErrorMessage(`Crucible: ${command} failed: ${String(error)}`);
    return undefined;
  }
}

function describeCounts(held: unknown): string {
  if (typeof held !== "object" || held === null) return "done";
  const parts = Object.entries(held as Record<string, unknown>).map(([k, v]) => `${k} ${String(v)}`);
  return parts.length > 0 ? parts.join(", ") : "it was empty";
}

function runDoctor(deps: CommandDeps): void {
  const server = deps.server();
  if (server === undefined) {
    void vscode.window.showWarningMessage("Crucible: crucible-lsp was not found, so doctor cannot run.");
    return;
  }
  const terminal = vscode.window.createTerminal({
    name: "Crucible doctor",
    shellPath: server.command,
    shellArgs: ["doctor"],
    ...(vscode.workspace.workspaceFolders?.[0] ? { cwd: vscode.workspace.workspaceFolders[0].uri } : {}),
  });
  terminal.show();
}

interface MenuItem extends vscode.QuickPickItem {
  readonly command: string;
}

async function showMenu(deps: CommandDeps): Promise<void> {
  const language = vscode.window.activeTextEditor?.document.languageId;
  const view = deps.suggestions.view(language);
  const items: MenuItem[] = [
    {
      label: view.off === "no" ? "$(circle-slash) Turn inline suggestions off" : "$(check) Turn inline suggestions on",
      command: "crucible.toggleSuggestions",
    },
    ...(language === undefined
      ? []
      : [{ label: `$(symbol-namespace) Turn suggestions on/off for ${language}`, command: "crucible.toggleSuggestionsForLanguage" }]),
    { label: "$(clock) Snooze suggestions for 5 minutes", command: "crucible.snooze" },
    { label: "$(pulse) Show status", command: "crucible.showStatus" },
    { label: "$(trash) Clear cache", command: "crucible.clearResponseCache" },
    { label: "$(debug-restart) Restart server", command: "crucible.restartServer" },
    { label: "$(output) Open log", command: "crucible.showLog" },
    { label: "$(terminal) Run doctor in a terminal", command: "crucible.runDoctor" },
    ...(deps.server() === undefined
      ? [{ label: "$(cloud-download) Install the server", command: "crucible.installServer" }]
      : []),
  ];
  const picked = await vscode.window.showQuickPick(items, { title: "Crucible", placeHolder: "Choose an action" });
  if (picked !== undefined) await vscode.commands.executeCommand(picked.command);
}

/** The read-only document "Crucible: Show Status" opens. */
class StatusDocument implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private text = "";
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  set(text: string): void {
    this.text = text;
    this.changed.fire(STATUS_URI);
  }

  provideTextDocumentContent(): string {
    return this.text;
  }

  dispose(): void {
    this.changed.dispose();
  }
}
