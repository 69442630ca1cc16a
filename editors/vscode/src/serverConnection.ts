/**
 * The language client: starts `crucible-lsp` (found by serverDiscovery.ts), keeps it
 * configured, and routes what it says.
 *
 * Middleware, where VS Code meets the server:
 *   - inline completion: nothing is asked while the user's switch is off (suggestionSwitch.ts);
 *     each request's outcome feeds readyRetrigger.ts;
 *   - workspace/configuration (the server pulls the `crucible` section after initialized):
 *     answered with the settings the user set, not VS Code's defaults (settingsTranslation.ts).
 * Pushed: workspace/didChangeConfiguration with the same table when a `crucible.*` setting
 * changes. Received: crucible/didChangeStatus (to the status bar).
 */
import * as vscode from "vscode";
import {
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
} from "vscode-languageclient/node";

import type { ReadyRetrigger } from "./readyRetrigger";
import { SECTION, type ServerTable } from "./settingsTranslation";
import type { ServerCommand } from "./serverDiscovery";
import { parseStatus, type StatusPayload } from "./statusPresentation";
import type { SuggestionSwitch } from "./suggestionSwitch";

export const DID_CHANGE_STATUS = "crucible/didChangeStatus";

export interface ConnectionHooks {
  readonly log: vscode.LogOutputChannel;
  readonly suggestions: SuggestionSwitch;
  readonly retrigger: ReadyRetrigger;
  readonly settings: () => ServerTable;
  readonly onStatus: (status: StatusPayload) => void;
  readonly onRunning: (running: boolean) => void;
}

export class ServerConnection implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private sentAtStart: ServerTable = {};

  constructor(private readonly hooks: ConnectionHooks) {}

  get running(): LanguageClient | undefined {
    return this.client?.state === State.Running ? this.client : undefined;
  }

  /** The settings the server got in initializationOptions (they stay until a restart). */
  get initialSettings(): ServerTable {
    return this.sentAtStart;
  }

  async start(server: ServerCommand, args: readonly string[]): Promise<void> {
    await this.stop();
    const { log } = this.hooks;
    log.info(`starting ${server.command} ${args.join(" ")} (found: ${server.source})`);
    const serverOptions: ServerOptions = { command: server.command, args: [...args] };
    this.sentAtStart = this.hooks.settings();
    const client = new LanguageClient("crucible", "Crucible", serverOptions, this.clientOptions());
    client.onNotification(DID_CHANGE_STATUS, (raw: unknown) => {
      const status = parseStatus(raw);
      if (status !== undefined) this.hooks.onStatus(status);
    });
    client.onDidChangeState((event) => {
      this.hooks.onRunning(event.newState === State.Running);
    });
    this.client = client;
    await client.start();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client === undefined) return;
    try {
      await client.dispose(2000);
    } catch (error) {
      this.hooks.log.warn(`stopping the server: ${String(error)}`);
    }
  }

  /** workspace/didChangeConfiguration with the user's current settings. */
  async pushSettings(): Promise<void> {
    const client = this.running;
    if (client === undefined) return;
    await client.sendNotification("workspace/didChangeConfiguration", {
      settings: { [SECTION]: this.hooks.settings() },
    });
  }

  dispose(): void {
    void this.stop();
  }

  private clientOptions(): LanguageClientOptions {
    const { log, suggestions, retrigger, settings } = this.hooks;
    return {
      // Every file: a completion model knows every language.
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      outputChannel: log,
      traceOutputChannel: log,
      initializationOptions: { [SECTION]: this.sentAtStart },
      middleware: {
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          if (!suggestions.allows(document.languageId)) return null;
          const spot = {
            uri: document.uri.toString(),
            version: document.version,
            line: position.line,
            character: position.character,
          };
          let result: InlineResult;
          try {
            result = await next(document, position, context, token);
          } finally {
            retrigger.requestEnded(spot, !token.isCancellationRequested && hasItems(result));
          }
          return result;
        },
        workspace: {
          configuration: (params, token, next) =>
            params.items.every((item) => item.section === SECTION)
              ? params.items.map(() => settings())
              : next(params, token),
        },
      },
    };
  }
}

type InlineResult = vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined;

function hasItems(result: InlineResult): boolean {
  if (result === null || result === undefined) return false;
  return Array.isArray(result) ? result.length > 0 : result.items.length > 0;
}
