/**
 * `deno task bench`: every phase of the benchmark, each in its own process, then ONE table of
 * absolute figures and ratios (to upstream, to the echo limit, to the raw PATCH limit, to an empty
 * Deno process) with the issue's targets, the machine and the command (docs/benchmarks.md).
 *
 *   npx -y deno@2.9.6 task bench            full run
 *   npx -y deno@2.9.6 task bench --smoke    tiny counts, proves the harness works (CI; or BENCH_SMOKE=1)
 *   --json FILE                             the raw figures: FILE (plan, rows) and FILE-stem.<phase>.json
 *   --no-kube                               skip the phases that need a Kubernetes API server
 *   --no-nats                               skip the NATS request-plane cells
 *
 * Every phase script takes `--smoke`, `--json FILE` and `--rows FILE` and appends its rows
 * (bench/_rows.ts) to the one rows file. No assertion on timings: the run fails only when a phase
 * fails; its cells then carry that in the table.
 */
import { parseArgs } from "node:util";
import { machine } from "./_proc.ts";
import { type BenchRow, readRows, renderTable, writeRows } from "./_rows.ts";
import { isSmoke, ROOT } from "./_util.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    smoke: { type: "boolean", default: false },
    json: { type: "string" },
    "no-kube": { type: "boolean", default: false },
    "no-nats": { type: "boolean", default: false },
  },
});
const SMOKE = isSmoke(flags.smoke);

interface PhaseSpec {
  /** Names the phase in the log, in its JSON file's name and in a row saying it failed. */
  name: string;
  script: string;
  args?: string[];
  /** No-op cells: the request planes, on `--planes`. */
  planes?: ("tcp" | "nats")[];
  /** Needs a Kubernetes API server (skipped with --no-kube). */
  kube?: boolean;
}

/**
 * The phases, in order. One no-op process per discovery backend, all its planes on one backend
 * start; the full measurement set only on file/tcp. Extend here when a phase is added.
 */
const PHASES: PhaseSpec[] = [
  {
    name: "noop-file",
    script: "bench/phases/noop.ts",
    args: ["--discovery", "file", "--full", "tcp"],
    planes: ["tcp", "nats"],
  },
  {
    name: "noop-etcd",
    script: "bench/phases/noop.ts",
    args: ["--discovery", "etcd"],
    planes: ["tcp", "nats"],
  },
  {
    name: "noop-kubernetes",
    script: "bench/phases/noop.ts",
    args: ["--discovery", "kubernetes"],
    planes: ["tcp", "nats"],
    kube: true,
  },
  { name: "kube-scale", script: "bench/phases/kube_scale.ts", kube: true },
  { name: "blocking", script: "bench/phases/blocking.ts", kube: true },
  { name: "scale-1k", script: "bench/phases/scale.ts", kube: true },
];

const started = Date.now();
const scratch = await Deno.makeTempDir({ prefix: "gp-bench-" });
const stem = flags.json?.replace(/\.json$/, "");
const rowsFile = stem ? `${stem}.rows.jsonl` : `${scratch}/rows.jsonl`;
if (stem) await Deno.remove(rowsFile).catch(() => {});

/**
 * Smoke runs overlap phases: only "every target answered" counts there, and the run is latency-
 * bound (process starts), not CPU-bound. Full runs go one phase at a time, so figures stay clean.
 */
const JOBS = SMOKE ? Number(Deno.env.get("BENCH_JOBS") ?? 2) : 1;

interface Outcome {
  spec: PhaseSpec;
  code: number | "skipped";
  wallS: number;
  json?: string;
  stdout: Uint8Array;
  /** Its rows, read from its own rows file so phases running at once cannot interleave. */
  written: BenchRow[];
}

async function runPhase(spec: PhaseSpec, index: number): Promise<Outcome> {
  const path = `${ROOT}/${spec.script}`;
  const skip = spec.kube && flags["no-kube"];
  const planes = spec.planes?.filter((p) => p !== "nats" || !flags["no-nats"]);
  const none = { spec, wallS: 0, stdout: new Uint8Array(), written: [] };
  if (skip || planes?.length === 0) return { ...none, code: "skipped" };
  const args = ["run", "-P=test", "--quiet", path, ...(spec.args ?? [])];
  if (planes) args.push("--planes", planes.join(","));
  if (SMOKE) args.push("--smoke");
  const json = stem ? `${stem}.${spec.name}.json` : undefined;
  if (json) args.push("--json", json);
  const own = `${scratch}/rows-${index}.jsonl`;
  args.push("--rows", own);
  const t0 = Date.now();
  console.error(`bench: ${spec.name} (${spec.script}) ...`);
  // Its own table goes to the terminal as it comes when alone; held and printed in order otherwise.
  const run = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: JOBS > 1 ? "piped" : "inherit",
  }).output();
  const wallS = (Date.now() - t0) / 1000;
  console.error(`bench: ${spec.name} done (exit ${run.code}, ${wallS.toFixed(0)} s)`);
  const stdout = JOBS > 1 ? run.stdout : new Uint8Array();
  return { spec, code: run.code, wallS, json, stdout, written: await readRows(own) };
}

const outcomes: Outcome[] = new Array(PHASES.length);
let nextPhase = 0;
await Promise.all(Array.from({ length: JOBS }, async () => {
  while (nextPhase < PHASES.length) {
    const i = nextPhase++;
    outcomes[i] = await runPhase(PHASES[i], i);
  }
}));

const ran = outcomes.map((o) => ({
  name: o.spec.name,
  script: o.spec.script,
  json: o.json,
  code: o.code,
  wallS: o.wallS,
}));
let failed = false;
for (const o of outcomes) {
  await Deno.stdout.write(o.stdout);
  await writeRows(rowsFile, o.written);
  if (o.code === "skipped") continue;
  if (o.code !== 0) failed = true;
  if (o.code !== 0 || o.written.length === 0) {
    const why = o.code !== 0
      ? `phase failed (exit ${o.code}); its figures are missing`
      : "the phase wrote no rows";
    await writeRows(rowsFile, [{ phase: o.spec.name, metric: "(phase)", unit: "", ours: NaN, note: why }]);
  }
}

const all = await readRows(rowsFile);
const wall = (Date.now() - started) / 1000;
const command = `deno task bench${Deno.args.length ? " " + Deno.args.join(" ") : ""}`;
console.log(
  `# Global Planner benchmark: one table${SMOKE ? " (SMOKE: tiny counts, figures meaningless)" : ""}\n`,
);
console.log(`machine: ${await machine()}`);
console.log(`command: \`${command}\` (deno run -P=test bench/main.ts), loopback only`);
console.log(
  `phases: ${
    ran.map((r) => `${r.name} ${r.code === "skipped" ? "skipped" : `${r.wallS.toFixed(0)} s`}`).join(", ")
  }${JOBS > 1 ? ` (${JOBS} at a time)` : ""}${
    flags["no-nats"] ? "; NATS cells skipped (--no-nats)" : ""
  }; wall ${wall.toFixed(0)} s\n`,
);
console.log(renderTable(all));
if (flags.json) {
  const raw = { machine: await machine(), command, smoke: SMOKE, wallS: wall, phases: ran, rows: all };
  await Deno.writeTextFile(flags.json, JSON.stringify(raw, null, 2));
  console.error(`bench: raw figures in ${flags.json} and ${stem}.<phase>.json`);
}
await Deno.remove(scratch, { recursive: true }).catch(() => {});
if (failed) Deno.exit(1);
