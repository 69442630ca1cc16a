/**
 * Other extensions' diagnostics, forwarded to the server so that hover can explain them:
 * `crucible/didChangeDiagnostics` {textDocument: {uri, version}, diagnostics} per open
 * document whose diagnostics changed, debounced (a linter publishing on every keystroke
 * sends one notification per pause, not per change), without Crucible's own diagnostics.
 * The server keeps them per document (replace semantics) and explains them on hover.
 */
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";

export const DID_CHANGE_DIAGNOSTICS = "crucible/didChangeDiagnostics";
const DELAY_MS = 500;

export class DiagnosticsForwarding implements vscode.Disposable {
  private readonly pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private readonly subscription: vscode.Disposable;

  constructor(
    private readonly client: () => LanguageClient | undefined,
    private readonly enabled: () => boolean,
  ) {
    this.subscription = vscode.languages.onDidChangeDiagnostics((event) => {
      if (!this.enabled()) return;
      for (const uri of event.uris) this.pending.add(uri.toString());
      if (this.timer === undefined) this.timer = setTimeout(() => void this.flush(), DELAY_MS);
    });
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.subscription.dispose();
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    const client = this.client();
    const uris = [...this.pending];
    this.pending.clear();
    if (client === undefined) return;
    for (const key of uris) {
      const document = vscode.workspace.textDocuments.find((d) => d.uri.toString() === key);
      if (document === undefined) continue; // only open documents: the server knows no others
      const own = new Set(client.diagnostics?.get(document.uri) ?? []);
      const others = vscode.languages
        .getDiagnostics(document.uri)
        .filter((d) => !own.has(d) && d.source?.toLowerCase() !== "crucible");
      await client.sendNotification(DID_CHANGE_DIAGNOSTICS, {
        textDocument: { uri: client.code2ProtocolConverter.asUri(document.uri), version: document.version },
        diagnostics: await client.code2ProtocolConverter.asDiagnostics(others),
      });
    }
  }
}
