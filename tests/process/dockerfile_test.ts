/**
 * The image as written: no container engine exists where this is built, so the Dockerfile is
 * parsed and its security-relevant shape asserted (two stages, pinned bases, the compile task's
 * permission set, distroless non-root final stage with no shell use, exec-form entrypoint).
 */
import assert from "node:assert/strict";
import { parse as parseJsonc } from "jsonc-parser";
import { PROJECT_ROOT } from "../support/paths.ts";
import { SERVICE_V8_FLAGS } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

interface Instruction {
  keyword: string;
  /** Flags before the arguments (`--from=build`, `--chown=...`), by name. */
  flags: Record<string, string>;
  args: string;
  line: number;
}

interface Stage {
  index: number;
  base: string;
  name?: string;
  instructions: Instruction[];
}

/** A small Dockerfile parser: comments, parser directives, `\` continuations, stages, flags. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split("\n");
  let pending = "";
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i];
    const trimmed = raw.trim();
    if (pending === "" && (trimmed === "" || trimmed.startsWith("#"))) continue;
    if (pending !== "" && trimmed.startsWith("#")) continue; // comments inside a continuation
    if (pending === "") start = i + 1;
    if (trimmed.endsWith("\\")) {
      pending += trimmed.slice(0, -1).trimEnd() + " ";
      continue;
    }
    const logical = (pending + trimmed).trim();
    pending = "";
    const match = /^(\S+)\s*(.*)$/s.exec(logical);
    if (!match) continue;
    const keyword = match[1].toUpperCase();
    let rest = match[2];
    const flags: Record<string, string> = {};
    for (let flag; (flag = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest));) {
      flags[flag[1]] = flag[2] ?? "";
      rest = rest.slice(flag[0].length);
    }
    const instruction = { keyword, flags, args: rest.trim(), line: start };
    if (keyword === "FROM") {
      const [base, as, name] = instruction.args.split(/\s+/);
      assert.ok(base, `line ${start}: FROM without an image`);
      if (as !== undefined) assert.equal(as.toUpperCase(), "AS", `line ${start}: FROM ${instruction.args}`);
      stages.push({ index: stages.length, base, name, instructions: [] });
      continue;
    }
    assert.ok(stages.length > 0 || keyword === "ARG", `line ${start}: ${keyword} before the first FROM`);
    stages.at(-1)?.instructions.push(instruction);
  }
  assert.equal(pending, "", "the file ends inside a line continuation");
  return stages;
}

const BUILD_BASE = /^denoland\/deno:2\.9\.6(@sha256:[0-9a-f]{64})?$/;
const FINAL_BASE = /^gcr\.io\/distroless\/cc-debian12:nonroot(@sha256:[0-9a-f]{64})?$/;
const ALLOW_ALL = /(^|[\s"'])(-A|--allow-all|-A=\S*)(?=$|[\s"'])/;

/** Every rule the image must keep, as a list of problems (empty = fine). */
function dockerfileProblems(text: string): string[] {
  const problems: string[] = [];
  const stages = parseDockerfile(text);
  if (stages.length < 2) return [`expected at least 2 stages, found ${stages.length}`];
  const build = stages[0];
  const final = stages.at(-1)!;
  const of = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);

  if (!BUILD_BASE.test(build.base)) {
    problems.push(`build stage FROM ${build.base}, expected denoland/deno:2.9.6`);
  }
  if (!of(build, "RUN").some((i) => /(^|&&\s*|;\s*)deno task compile(\s|&&|;|$)/.test(i.args))) {
    problems.push("the build stage does not run `deno task compile`");
  }
  for (const stage of stages) {
    for (const i of stage.instructions) {
      if (ALLOW_ALL.test(i.args) || /--allow-[a-z]/.test(i.args)) {
        problems.push(`line ${i.line}: permissions given on the command line (${i.keyword} ${i.args})`);
      }
      if (i.keyword === "RUN" && /\bdeno (compile|run)\b/.test(i.args)) {
        problems.push(`line ${i.line}: deno compile/run called directly; use the compile task`);
      }
    }
  }
  const buildSources = of(build, "COPY").flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  const extra = buildSources.filter((s) => !["deno.json", "deno.lock", "main.ts", "src/", "src"].includes(s));
  if (extra.length > 0) problems.push(`the build stage copies more than it needs: ${extra.join(" ")}`);
  if (of(build, "ADD").length > 0) problems.push("the build stage uses ADD");

  if (!FINAL_BASE.test(final.base)) {
    problems.push(`final stage FROM ${final.base}, expected gcr.io/distroless/cc-debian12:nonroot`);
  }
  const buildRefs = new Set([String(build.index), build.name].filter((x) => x !== undefined));
  for (const i of [...of(final, "COPY"), ...of(final, "ADD")]) {
    if (i.keyword === "ADD" || !buildRefs.has(i.flags.from)) {
      problems.push(`line ${i.line}: the final stage takes files from elsewhere than the build stage`);
    }
  }
  if (!of(final, "COPY").some((i) => /\s\/global-planner$/.test(i.args))) {
    problems.push("the final stage does not copy the binary to /global-planner");
  }
  for (const i of of(final, "RUN")) problems.push(`line ${i.line}: RUN in the final stage (no shell there)`);
  const user = of(final, "USER").at(-1)?.args;
  if (!user || !/^(nonroot|65532)(:(nonroot|65532))?$/.test(user)) {
    problems.push(`final USER is ${user ?? "unset"}, expected nonroot or 65532`);
  }
  const entrypoints = of(final, "ENTRYPOINT");
  const entry = entrypoints.at(-1)?.args ?? "";
  let parsed: unknown;
  try {
    parsed = JSON.parse(entry);
  } catch {
    parsed = undefined;
  }
  if (entrypoints.length !== 1 || JSON.stringify(parsed) !== '["/global-planner"]') {
    problems.push(`ENTRYPOINT must be exactly ["/global-planner"] (exec form), got ${entry || "none"}`);
  }
  if (of(final, "CMD").some((i) => !i.args.startsWith("["))) problems.push("CMD in shell form");
  return problems;
}

const DOCKERFILE = await Deno.readTextFile(`${PROJECT_ROOT}/Dockerfile`);

Deno.test("the Dockerfile: pinned multi-stage build, compile task, distroless non-root exec entrypoint", () => {
  const stages = parseDockerfile(DOCKERFILE);
  assert.ok(stages.length >= 2);
  assert.match(stages[0].base, BUILD_BASE);
  assert.match(stages.at(-1)!.base, FINAL_BASE);
  const finalCopies = stages.at(-1)!.instructions.filter((i) => i.keyword === "COPY");
  assert.deepEqual(finalCopies.map((i) => [i.flags.from, i.args]), [[
    stages[0].name,
    "/src/global-planner /global-planner",
  ]]);
  assert.deepEqual(dockerfileProblems(DOCKERFILE), []);
});

Deno.test("the checks catch a broken Dockerfile", () => {
  const good = DOCKERFILE;
  const broken = (from: string | RegExp, to: string) => {
    const text = good.replace(from, to);
    assert.notEqual(text, good, `mutation ${from} did not apply`);
    return dockerfileProblems(text).join("\n");
  };
  assert.match(broken("FROM denoland/deno:2.9.6", "FROM denoland/deno:latest"), /build stage FROM/);
  assert.match(
    broken("RUN deno task compile", "RUN deno compile -A --output global-planner main.ts"),
    /command line/,
  );
  assert.match(broken("RUN deno task compile", "RUN echo"), /does not run `deno task compile`/);
  assert.match(
    broken("FROM gcr.io/distroless/cc-debian12:nonroot", "FROM gcr.io/distroless/cc-debian12:debug"),
    /final stage FROM/,
  );
  assert.match(broken(/\nUSER nonroot\n/, "\nUSER root\n"), /final USER is root/);
  assert.match(broken('ENTRYPOINT ["/global-planner"]', "ENTRYPOINT /global-planner"), /ENTRYPOINT must be/);
  assert.match(
    broken('ENTRYPOINT ["/global-planner"]', 'ENTRYPOINT ["/global-planner", "--no-operation"]'),
    /ENTRYPOINT must be/,
  );
  assert.match(
    broken(/\nUSER nonroot\n/, "\nRUN chmod 755 /global-planner\nUSER nonroot\n"),
    /RUN in the final/,
  );
  assert.match(
    broken("COPY --from=build ", "COPY --from=busybox:latest /bin/sh /sh\nCOPY --from=build "),
    /elsewhere than the build stage/,
  );
  assert.match(broken("COPY main.ts ./", "COPY . ./"), /copies more than it needs/);
  assert.match(
    dockerfileProblems("FROM gcr.io/distroless/cc-debian12:nonroot\n").join(),
    /at least 2 stages/,
  );
});

Deno.test("the parser: continuations, comments inside them, flags, stage names", () => {
  const stages = parseDockerfile(
    "# syntax=docker/dockerfile:1\nARG V=1\nFROM a:1 AS one\nRUN echo a \\\n# comment\n  && echo b\n" +
      "from b:2\ncopy --from=one --chown=1:1 /x /y\n",
  );
  assert.deepEqual(stages.map((s) => [s.base, s.name]), [["a:1", "one"], ["b:2", undefined]]);
  assert.equal(stages[0].instructions[0].args, "echo a && echo b");
  assert.deepEqual(stages[1].instructions[0].flags, { from: "one", chown: "1:1" });
  assert.equal(stages[1].instructions[0].args, "/x /y");
});

Deno.test("deno.json: the compile task bakes in the `service` permission set, nothing broader", async () => {
  const config = parseJsonc(await Deno.readTextFile(`${PROJECT_ROOT}/deno.json`));
  const compile: string = config.tasks.compile;
  assert.match(compile, /^(deno check main\.ts && )?deno compile /);
  assert.ok(compile.split(/\s+/).includes("-P=service"), compile);
  assert.doesNotMatch(compile, ALLOW_ALL);
  assert.doesNotMatch(compile, /--allow-/);
  assert.match(compile, /\s--output[= ]global-planner\s/);
  assert.match(compile, /\smain\.ts$/);
  assert.ok(config.permissions?.service, "permissions.service exists");
  const ignore = await Deno.readTextFile(`${PROJECT_ROOT}/.dockerignore`);
  assert.match(ignore, /^\*$/m, ".dockerignore starts from nothing");
});

Deno.test("deno.json: start and compile run with the V8 flags every test and bench service runs with", async () => {
  const config = parseJsonc(await Deno.readTextFile(`${PROJECT_ROOT}/deno.json`));
  for (const task of ["start", "compile"]) {
    const flags = (config.tasks[task] as string).split(/\s+/).filter((a) => a.startsWith("--v8-flags="));
    assert.deepEqual(flags, [`--v8-flags=${SERVICE_V8_FLAGS}`], task);
  }
});
