/**
 * Asking VS Code again for the inline suggestion it gave up on.
 *
 * VS Code cancels a pending inline-completion request about 0.75 s after the last keystroke
 * (measured in code-server 4.139 / Code 1.139). With a slow provider the server still finishes
 * the fetch and caches the answer, then reports busy -> ready; nobody asks for it again, so
 * no ghost text appears although the answer is there. This decides when to ask once more
 * (`editor.action.inlineSuggest.trigger`, served from the cache): only when
 *
 *   - the last request VS Code made was cancelled or came back empty,
 *   - the server has just gone from busy to ready, and
 *   - the cursor is still exactly where that request was made, in the same document version
 *     (the user is idle there).
 *
 * At most once per position and version: never a loop, never a spam of requests. Pure.
 */

export interface Spot {
  readonly uri: string;
  readonly version: number;
  readonly line: number;
  readonly character: number;
}

export class ReadyRetrigger {
  private unanswered: Spot | undefined;
  private retried: Spot | undefined;
  private lastState: string | undefined;

  /** An inline-completion request ended: `answered` when it returned at least one item. */
  requestEnded(spot: Spot, answered: boolean): void {
    this.unanswered = answered ? undefined : spot;
  }

  /**
   * The server's state changed; `cursor` is where the active editor is now. True when the
   * caller should trigger inline suggestions once.
   */
  stateChanged(state: string, cursor: Spot | undefined): boolean {
    const wasBusy = this.lastState === "busy";
    this.lastState = state;
    const spot = this.unanswered;
    if (!wasBusy || state !== "ready" || spot === undefined || cursor === undefined) return false;
    if (!same(spot, cursor) || (this.retried !== undefined && same(this.retried, spot))) {
      return false;
    }
    this.retried = spot;
    this.unanswered = undefined;
    return true;
  }
}

function same(a: Spot, b: Spot): boolean {
  return (
    a.uri === b.uri && a.version === b.version && a.line === b.line && a.character === b.character
  );
}
