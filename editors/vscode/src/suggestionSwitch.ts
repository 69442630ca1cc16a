/**
 * The user's switch for inline suggestions: off everywhere, off for some languages, or
 * snoozed for a while (5 minutes, as Copilot does). Client-side only: the extension simply
 * answers no inline suggestions while off (the server and its configuration are untouched,
 * so turning it back on is instant and costs nothing).
 *
 * State lives in a key-value store (VS Code's globalState) so it survives restarts; time comes
 * from an injected clock. Pure, so it is unit-tested.
 */
import type { SwitchView } from "./statusPresentation";

export interface Store {
  get(key: string): unknown;
  update(key: string, value: unknown): PromiseLike<void>;
}

export const SNOOZE_MS = 5 * 60 * 1000;
const OFF_KEY = "crucible.suggestions.off";
const LANGUAGES_KEY = "crucible.suggestions.offLanguages";
const SNOOZE_KEY = "crucible.suggestions.snoozedUntil";

export class SuggestionSwitch {
  constructor(
    private readonly store: Store,
    private readonly now: () => number,
  ) {}

  /** What applies to a document of `language` now. */
  view(language: string | undefined): SwitchView {
    if (this.store.get(OFF_KEY) === true) return { off: "everywhere" };
    if (language !== undefined && this.offLanguages().includes(language)) {
      return { off: "language", language };
    }
    const left = this.snoozeLeftMs();
    if (left > 0) return { off: "snoozed", snoozedMinutesLeft: Math.ceil(left / 60_000) };
    return { off: "no" };
  }

  allows(language: string | undefined): boolean {
    return this.view(language).off === "no";
  }

  /** Off everywhere <-> on (turning on also ends a snooze). */
  async toggle(): Promise<void> {
    const off = this.store.get(OFF_KEY) === true || this.snoozeLeftMs() > 0;
    await this.store.update(OFF_KEY, !off);
    await this.store.update(SNOOZE_KEY, undefined);
  }

  async toggleLanguage(language: string): Promise<void> {
    const languages = this.offLanguages();
    const next = languages.includes(language)
      ? languages.filter((l) => l !== language)
      : [...languages, language];
    await this.store.update(LANGUAGES_KEY, next);
  }

  async snooze(): Promise<void> {
    await this.store.update(SNOOZE_KEY, this.now() + SNOOZE_MS);
  }

  /** Milliseconds until a snooze ends (0 when none runs). */
  snoozeLeftMs(): number {
    const until = this.store.get(SNOOZE_KEY);
    return typeof until === "number" ? Math.max(0, until - this.now()) : 0;
  }

  private offLanguages(): string[] {
    const languages = this.store.get(LANGUAGES_KEY);
    return Array.isArray(languages) ? languages.filter((l): l is string => typeof l === "string") : [];
  }
}
