import assert from "node:assert/strict";
import { test } from "node:test";

import { parseStatus, present, type StatusPayload } from "../../src/statusPresentation";

const on = { off: "no" } as const;

function status(state: StatusPayload["state"], message = `Crucible: ${state}`): StatusPayload {
  return { state, message, providers: [{ name: "local", state: "ready" }] };
}

test("each server state has its icon, label and background", () => {
  const drawn = (["ready", "busy", "degraded", "offline", "disabled"] as const).map((state) => {
    const shown = present("running", status(state), on);
    return [state, shown.text, shown.ariaLabel.split(" - ")[0], shown.background];
  });
  assert.deepEqual(drawn, [
    ["ready", "$(sparkle) Crucible", "Crucible: ready", undefined],
    ["busy", "$(loading~spin) Crucible", "Crucible: busy", undefined],
    ["degraded", "$(warning) Crucible", "Crucible: degraded", "warning"],
    ["offline", "$(warning) Crucible", "Crucible: offline", "error"],
    ["disabled", "$(circle-slash) Crucible", "Crucible: disabled", undefined],
  ]);
});

test("the tooltip carries the server's message and each provider's state", () => {
  const shown = present("running", status("offline", "Crucible: Ollama refused the connection"), on);
  assert.equal(shown.tooltip, "Crucible: Ollama refused the connection\nlocal: ready");
  assert.equal(shown.ariaLabel, "Crucible: offline - Crucible: Ollama refused the connection");
});

test("the user's switch shows before the server's state; the client's own troubles before both", () => {
  assert.equal(present("running", status("ready"), { off: "everywhere" }).ariaLabel.split(" - ")[0], "Crucible: off");
  assert.match(present("running", status("ready"), { off: "snoozed", snoozedMinutesLeft: 4 }).tooltip, /snoozed \(4 min left\)/);
  assert.match(present("running", status("ready"), { off: "language", language: "python" }).tooltip, /off for python/);
  assert.equal(present("no-server", undefined, { off: "everywhere" }).ariaLabel.split(" - ")[0], "Crucible: not found");
  assert.equal(present("stopped", status("ready"), on).background, "warning");
  assert.equal(present("starting", undefined, on).ariaLabel.split(" - ")[0], "Crucible: starting");
});

test("a malformed notification is ignored; unknown provider fields are dropped", () => {
  assert.equal(parseStatus(null), undefined);
  assert.equal(parseStatus({ state: "sleeping" }), undefined);
  assert.deepEqual(parseStatus({ state: "busy", providers: [{ name: "a", state: "ready" }, { name: 3 }] }), {
    state: "busy",
    message: "",
    providers: [{ name: "a", state: "ready" }],
  });
});
