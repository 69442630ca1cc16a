import assert from "node:assert/strict";
import { test } from "node:test";

import { serverArguments } from "../../src/serverArguments";

test("the shared setting adds --shared after the user's arguments, once", () => {
  assert.deepEqual(serverArguments(["--log-level", "debug"], true), ["--log-level", "debug", "--shared"]);
  assert.deepEqual(serverArguments(["--shared"], true), ["--shared"]);
  assert.deepEqual(serverArguments([], true), ["--shared"]);
});

test("off, the user's arguments are passed as they are", () => {
  assert.deepEqual(serverArguments(["--config", "/c.toml"], false), ["--config", "/c.toml"]);
  assert.deepEqual(serverArguments([], false), []);
});
