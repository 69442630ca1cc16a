/**
 * The arguments `crucible-lsp` is started with: the user's `crucible.server.args`, then
 * `--shared` when `crucible.server.shared` is on (the window becomes a thin client of the
 * per-user daemon, docs/architecture.md "The shared daemon"). Pure, so it is unit-tested.
 */
export const SHARED_FLAG = "--shared";

export function serverArguments(userArgs: readonly string[], shared: boolean): string[] {
  const args = [...userArgs];
  // Once: a user who already passes --shared in server.args keeps one.
  if (shared && !args.includes(SHARED_FLAG)) args.push(SHARED_FLAG);
  return args;
}
