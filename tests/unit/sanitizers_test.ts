/**
 * Every test file opts in to Deno's op and resource sanitizers. Since Deno 2.8 they are off
 * unless asked for, so a test file without the opt-in hides leaked timers, children, streams
 * and sockets; and a per-test `sanitizeOps: false` / `sanitizeResources: false` must say, in a
 * comment right above it, what leaks and why that leak is not ours.
 */
import assert from "node:assert/strict";
import { PROJECT_ROOT } from "../support/paths.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const OPT_IN = "Deno.test.sanitizer({ ops: true, resources: true });";

/** Every `*_test.ts` under tests/, as paths relative to the project root. */
async function testFiles(dir = "tests"): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(`${PROJECT_ROOT}/${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...await testFiles(path));
    else if (entry.isFile && entry.name.endsWith("_test.ts")) found.push(path);
  }
  return found.sort();
}

/** Why `text` (one test file) does not keep the sanitizers on, or undefined when it does. */
function sanitizerProblem(text: string): string | undefined {
  const optIn = text.indexOf(OPT_IN);
  const firstTest = text.search(/^Deno\.test\s*\(/m);
  if (optIn < 0) return `no top-level ${OPT_IN}`;
  if (firstTest >= 0 && firstTest < optIn) return "a Deno.test is registered before the opt-in";
  const lines = text.split("\n");
  const optOut = /^\s*sanitize(Ops|Resources)\s*:\s*false\s*,?\s*$/;
  for (const [i, line] of lines.entries()) {
    if (!optOut.test(line)) continue;
    let j = i - 1;
    while (j >= 0 && optOut.test(lines[j])) j--;
    if (j < 0 || !lines[j].trim().startsWith("//")) {
      return `line ${i + 1}: sanitizer off without a comment why`;
    }
  }
  return undefined;
}

Deno.test("every test file turns the op and resource sanitizers on", async () => {
  const files = await testFiles();
  assert.ok(files.length > 40, `found only ${files.length} test files`);
  const problems: string[] = [];
  for (const file of files) {
    const problem = sanitizerProblem(await Deno.readTextFile(`${PROJECT_ROOT}/${file}`));
    if (problem) problems.push(`${file}: ${problem}`);
  }
  assert.deepEqual(problems, []);
});

Deno.test("the check itself: a missing, late or unexplained opt-out is found", () => {
  const test = 'Deno.test("x", () => {});';
  assert.equal(sanitizerProblem(`${OPT_IN}\n${test}`), undefined);
  assert.match(sanitizerProblem(test)!, /no top-level/);
  assert.match(sanitizerProblem(`${test}\n${OPT_IN}`)!, /before the opt-in/);
  assert.match(
    sanitizerProblem(`${OPT_IN}\nDeno.test({\n  name: "x",\n  sanitizeOps: false,\n  fn() {},\n});`)!,
    /line 4: sanitizer off without a comment/,
  );
  assert.equal(
    sanitizerProblem(
      `${OPT_IN}\nDeno.test({\n  // Deno's own X leaks Y.\n  sanitizeOps: false,\n  sanitizeResources: false,\n  fn() {},\n});`,
    ),
    undefined,
  );
});
