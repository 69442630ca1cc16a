/**
 * VS Code's settings -> the server's configuration table.
 *
 * The extension contributes one setting per key of the server's schema, named as in TOML
 * (`crucible.completion.debounce_ms`); scripts/sync_settings.py writes them from
 * server/crucible/config/settings.py. What goes to the server (initializationOptions, the
 * answer to workspace/configuration, workspace/didChangeConfiguration) is the nested table of
 * the values the USER SET, never VS Code's defaults: the editor's settings rank above the
 * user's config.toml and the workspace's crucible.toml, so sending a default would silently
 * override those files.
 *
 * Trust follows the server's (config/trust.py): a `machine`-scoped key (providers, trust keys,
 * file paths) is read from the user's (or remote) settings only, and a restricted key is read
 * from workspace settings only when VS Code trusts the workspace.
 *
 * The extension's own keys (`server.*`, `trace.*`, `client.*`) stay here; the server would
 * ignore them anyway (config/settings.py CLIENT_KEYS).
 */

export const SECTION = "crucible";
const CLIENT_PREFIXES = ["server.", "trace.", "client."];

export interface SettingSpec {
  /** Relative to the section: `completion.debounce_ms`. */
  readonly key: string;
  /** From user or remote settings only. */
  readonly machine: boolean;
  /** Listed in capabilities.untrustedWorkspaces.restrictedConfigurations. */
  readonly restricted: boolean;
}

/** What `WorkspaceConfiguration.inspect` tells of one key (only the fields read here). */
export interface Inspected {
  readonly globalValue?: unknown;
  readonly workspaceValue?: unknown;
  readonly workspaceFolderValue?: unknown;
}

export type ServerTable = Record<string, unknown>;

interface PackageJsonShape {
  contributes?: { configuration?: { properties?: Record<string, { scope?: string }> } };
  capabilities?: { untrustedWorkspaces?: { restrictedConfigurations?: string[] } };
}

/** The server's keys among the settings the extension contributes (from its package.json). */
export function settingSpecs(packageJson: unknown): SettingSpec[] {
  const shape = packageJson as PackageJsonShape;
  const properties = shape.contributes?.configuration?.properties ?? {};
  const restricted = new Set(shape.capabilities?.untrustedWorkspaces?.restrictedConfigurations);
  const prefix = `${SECTION}.`;
  return Object.entries(properties)
    .filter(([full]) => full.startsWith(prefix))
    .map(([full, property]) => ({
      key: full.slice(prefix.length),
      machine: property.scope === "machine" || property.scope === "application",
      restricted: restricted.has(full),
    }))
    .filter((spec) => !CLIENT_PREFIXES.some((client) => spec.key.startsWith(client)));
}

/** The value the user set for one key, where it is allowed to come from; undefined if none. */
export function userValue(spec: SettingSpec, inspected: Inspected, trusted: boolean): unknown {
  if (spec.machine || (spec.restricted && !trusted)) return inspected.globalValue;
  return inspected.workspaceFolderValue ?? inspected.workspaceValue ?? inspected.globalValue;
}

/** The nested table the server takes: `{completion: {debounce_ms: 80}}`. */
export function serverSettings(
  specs: readonly SettingSpec[],
  inspect: (key: string) => Inspected | undefined,
  trusted: boolean,
): ServerTable {
  const table: ServerTable = {};
  for (const spec of specs) {
    const inspected = inspect(spec.key);
    const value = inspected === undefined ? undefined : userValue(spec, inspected, trusted);
    if (value !== undefined && value !== null) place(table, spec.key.split("."), value);
  }
  return table;
}

/**
 * Keys present in `before` and gone from `after`. The server keeps initializationOptions as
 * a layer of their own: a setting the user removes can only leave it by a restart.
 */
export function removedKeys(before: ServerTable, after: ServerTable): string[] {
  const gone: string[] = [];
  for (const key of leafKeys(before)) {
    if (!leafKeys(after).includes(key)) gone.push(key);
  }
  return gone;
}

function leafKeys(table: ServerTable, prefix = ""): string[] {
  return Object.entries(table).flatMap(([key, value]) =>
    isTable(value) ? leafKeys(value, `${prefix}${key}.`) : [`${prefix}${key}`],
  );
}

function place(table: ServerTable, path: readonly string[], value: unknown): void {
  const [head, ...rest] = path;
  if (head === undefined) return;
  if (rest.length === 0) {
    table[head] = value;
    return;
  }
  const inner = table[head];
  const next: ServerTable = isTable(inner) ? inner : {};
  table[head] = next;
  place(next, rest, value);
}

function isTable(value: unknown): value is ServerTable {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
