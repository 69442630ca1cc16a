import assert from "node:assert/strict";
import { test } from "node:test";

import { SNOOZE_MS, type Store, SuggestionSwitch } from "../../src/suggestionSwitch";

class MemoryStore implements Store {
  readonly values = new Map<string, unknown>();
  get(key: string): unknown {
    return this.values.get(key);
  }
  update(key: string, value: unknown): PromiseLike<void> {
    if (value === undefined) this.values.delete(key);
    else this.values.set(key, value);
    return Promise.resolve();
  }
}

test("on by default; the toggle turns suggestions off everywhere and back on", async () => {
  const switched = new SuggestionSwitch(new MemoryStore(), () => 0);
  assert.ok(switched.allows("python"));
  await switched.toggle();
  assert.deepEqual(switched.view("python"), { off: "everywhere" });
  await switched.toggle();
  assert.ok(switched.allows("python"));
});

test("off for one language leaves the others on", async () => {
  const switched = new SuggestionSwitch(new MemoryStore(), () => 0);
  await switched.toggleLanguage("markdown");
  assert.deepEqual(switched.view("markdown"), { off: "language", language: "markdown" });
  assert.ok(switched.allows("python"));
  await switched.toggleLanguage("markdown");
  assert.ok(switched.allows("markdown"));
});

test("a snooze lasts five minutes, counts down, and the toggle ends it early", async () => {
  let now = 1_000_000;
  const switched = new SuggestionSwitch(new MemoryStore(), () => now);
  await switched.snooze();
  assert.deepEqual(switched.view("python"), { off: "snoozed", snoozedMinutesLeft: 5 });
  now += SNOOZE_MS - 61_000;
  assert.deepEqual(switched.view("python"), { off: "snoozed", snoozedMinutesLeft: 2 });
  now += 61_000;
  assert.ok(switched.allows("python"));
  await switched.snooze();
  await switched.toggle();
  assert.ok(switched.allows("python"));
});

test("the state survives a restart (it lives in the store)", async () => {
  const store = new MemoryStore();
  await new SuggestionSwitch(store, () => 0).toggle();
  assert.ok(!new SuggestionSwitch(store, () => 0).allows("python"));
});
