/**
 * `deno task compile` as far as it can run without denort (unreachable here): the type check and
 * the module graph pass, and the compiler takes denort from DENORT_BIN.
 */
import assert from "node:assert/strict";
import { PROJECT_ROOT } from "../support/paths.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("deno task compile gets to the denort step and takes denort from DENORT_BIN", async () => {
  const missing = "/nonexistent/denort-for-test";
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile"],
    cwd: PROJECT_ROOT,
    env: { DENORT_BIN: missing, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.notEqual(out.code, 0);
  assert.match(text, new RegExp(`Could not find denort at '${missing}'`), text.slice(-3000));
  assert.doesNotMatch(text, /out of memory|error: TS\d+/i);
  await Deno.stat(`${PROJECT_ROOT}/global-planner`).then(
    () => assert.fail("a binary was written without denort"),
    () => {},
  );
});
