/**
 * The status bar item: what statusPresentation.ts decides, drawn; a click opens the menu.
 */
import * as vscode from "vscode";

import { type ClientPhase, present, type StatusPayload, type SwitchView } from "./statusPresentation";

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;

  constructor(menuCommand: string) {
    this.item = vscode.window.createStatusBarItem("crucible.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "Crucible";
    this.item.command = menuCommand;
    this.item.show();
  }

  draw(phase: ClientPhase, status: StatusPayload | undefined, switchView: SwitchView): void {
    const shown = present(phase, status, switchView);
    this.item.text = shown.text;
    this.item.tooltip = shown.tooltip;
    this.item.accessibilityInformation = { label: shown.ariaLabel, role: "button" };
    this.item.backgroundColor =
      shown.background === undefined
        ? undefined
        : new vscode.ThemeColor(`statusBarItem.${shown.background}Background`);
  }

  dispose(): void {
    this.item.dispose();
  }
}
