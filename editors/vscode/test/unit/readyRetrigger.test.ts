import assert from "node:assert/strict";
import { test } from "node:test";

import { ReadyRetrigger, type Spot } from "../../src/readyRetrigger";

const here: Spot = { uri: "file:///a.py", version: 3, line: 4, character: 9 };

test("a cancelled request at the cursor is asked again once, when busy turns ready", () => {
  const retrigger = new ReadyRetrigger();
  retrigger.requestEnded(here, false);
  assert.equal(retrigger.stateChanged("busy", here), false);
  assert.equal(retrigger.stateChanged("ready", here), true);
  // never twice for the same spot
  retrigger.requestEnded(here, false);
  assert.equal(retrigger.stateChanged("busy", here), false);
  assert.equal(retrigger.stateChanged("ready", here), false);
});

test("not when the answer was shown, the cursor moved, or the document changed", () => {
  const answered = new ReadyRetrigger();
  answered.requestEnded(here, true);
  answered.stateChanged("busy", here);
  assert.equal(answered.stateChanged("ready", here), false);

  for (const moved of [{ ...here, character: 10 }, { ...here, version: 4 }, { ...here, uri: "file:///b.py" }, undefined]) {
    const retrigger = new ReadyRetrigger();
    retrigger.requestEnded(here, false);
    retrigger.stateChanged("busy", here);
    assert.equal(retrigger.stateChanged("ready", moved), false);
  }
});

test("only on busy -> ready, not on other transitions", () => {
  const retrigger = new ReadyRetrigger();
  retrigger.requestEnded(here, false);
  assert.equal(retrigger.stateChanged("offline", here), false);
  assert.equal(retrigger.stateChanged("ready", here), false);
  retrigger.stateChanged("busy", here);
  assert.equal(retrigger.stateChanged("offline", here), false);
});
