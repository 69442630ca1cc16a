/**
 * `crucible/didChangeStatus` -> what the status bar item shows.
 *
 * The server decides the state (server/crucible/runtime/status_feed.py); this only draws it,
 * together with the user's own switch (suggestions off, snoozed) and the client's life
 * (starting, server not found). Pure, so the mapping is unit-tested.
 */

export type ServerState = "ready" | "busy" | "degraded" | "offline" | "disabled";

export interface ProviderState {
  readonly name: string;
  readonly state: string;
}

/** The notification's payload (the wire contract). */
export interface StatusPayload {
  readonly state: ServerState;
  readonly message: string;
  readonly providers: readonly ProviderState[];
}

/** Where the client itself is, before or besides the server's word. */
export type ClientPhase = "starting" | "running" | "stopped" | "no-server";

/** The user's switch, already resolved for the active editor's language. */
export interface SwitchView {
  readonly off: "no" | "everywhere" | "language" | "snoozed";
  readonly language?: string;
  readonly snoozedMinutesLeft?: number;
}

export interface Presentation {
  readonly text: string;
  readonly tooltip: string;
  /** Read by screen readers (and by the end-to-end tests): `Crucible: <state> - <message>`. */
  readonly ariaLabel: string;
  readonly background: "warning" | "error" | undefined;
}

const STATES: readonly ServerState[] = ["ready", "busy", "degraded", "offline", "disabled"];

/** The payload if `raw` is one, else undefined (a malformed notification is ignored). */
export function parseStatus(raw: unknown): StatusPayload | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const record = raw as Record<string, unknown>;
  const state = record.state;
  if (typeof state !== "string" || !STATES.includes(state as ServerState)) return undefined;
  const providers = Array.isArray(record.providers) ? record.providers : [];
  return {
    state: state as ServerState,
    message: typeof record.message === "string" ? record.message : "",
    providers: providers.filter(isProvider),
  };
}

function isProvider(value: unknown): value is ProviderState {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  return typeof record.name === "string" && typeof record.state === "string";
}

export function present(
  phase: ClientPhase,
  status: StatusPayload | undefined,
  switchView: SwitchView,
): Presentation {
  if (phase === "no-server") {
    return shape("$(error) Crucible", "not found", "crucible-lsp was not found: click for options", "error");
  }
  if (phase === "stopped") {
    return shape("$(debug-disconnect) Crucible", "stopped", "The server is not running: click to restart it", "warning");
  }
  const off = offText(switchView);
  if (off !== undefined) return shape("$(circle-slash) Crucible", "off", off, undefined);
  if (phase === "starting" || status === undefined) {
    return shape("$(loading~spin) Crucible", "starting", "Starting the Crucible server", undefined);
  }
  const tooltip = withProviders(status);
  switch (status.state) {
    case "ready":
      return shape("$(sparkle) Crucible", "ready", tooltip, undefined);
    case "busy":
      return shape("$(loading~spin) Crucible", "busy", tooltip, undefined);
    case "degraded":
      return shape("$(warning) Crucible", "degraded", tooltip, "warning");
    case "offline":
      return shape("$(warning) Crucible", "offline", tooltip, "error");
    case "disabled":
      return shape("$(circle-slash) Crucible", "disabled", tooltip, undefined);
  }
}

function offText(view: SwitchView): string | undefined {
  switch (view.off) {
    case "no":
      return undefined;
    case "everywhere":
      return "Inline suggestions are off: click to turn them on";
    case "language":
      return `Inline suggestions are off for ${view.language ?? "this language"}: click to turn them on`;
    case "snoozed":
      return `Inline suggestions are snoozed (${view.snoozedMinutesLeft ?? 0} min left): click to resume`;
  }
}

function withProviders(status: StatusPayload): string {
  const message = status.message || `Crucible: ${status.state}`;
  if (status.providers.length === 0) return message;
  const lines = status.providers.map((provider) => `${provider.name}: ${provider.state}`);
  return `${message}\n${lines.join("\n")}`;
}

function shape(
  text: string,
  state: string,
  tooltip: string,
  background: Presentation["background"],
): Presentation {
  const firstLine = tooltip.split("\n")[0] ?? "";
  return { text, tooltip, ariaLabel: `Crucible: ${state} - ${firstLine}`, background };
}
