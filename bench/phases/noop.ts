/**
 * No-op phase: ours vs upstream's Python Global Planner (`--no-operation`) vs the echo limit, on
 * one discovery backend and one or more request planes (one cell each), driven by the same caller
 * (bench/_noop_targets.ts). The full measurement set (startup trials, 64 callers, soak, RSS at
 * 2k/10k/20k requests, an empty Deno process as the memory floor) runs on the `--full` plane;
 * the other cells a shorter set (1 caller, 16 callers, server CPU, failed + lost, one start).
 *
 *   npx -y deno@2.9.6 run -P=test bench/phases/noop.ts --discovery file|etcd|kubernetes \
 *     [--planes tcp,nats] [--full tcp] [--smoke] [--json FILE] [--rows FILE]
 *
 * A target that cannot run in a cell (its server exits, never answers) is reported with the
 * reason in the cell's rows; no figure is made up for it. No assertion on timings.
 */
import { parseArgs } from "node:util";
import { startNats } from "../../tests/support/nats.ts";
import { type Discovery, DISCOVERY_NAMES, type DiscoveryName, startDiscovery } from "../_discovery.ts";
import { type Json, JsonLines } from "../_json_lines.ts";
import {
  DRIVER,
  driverCommand,
  ECHO,
  type Key,
  natsMappings,
  noopTargets,
  type Plane,
  PLANES,
  type Target,
} from "../_noop_targets.ts";
import { cpuMs, emptyDenoRssKb, procStatus, readProc } from "../_proc.ts";
import { renderTable, writeRows } from "../_rows.ts";
import { drain, epochMs, isSmoke, PYTHON, requireFiles, stopChild } from "../_util.ts";
import { cellRows, type TargetResult } from "../_noop_rows.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    discovery: { type: "string", default: "file" },
    planes: { type: "string", default: "tcp" },
    full: { type: "string" },
    smoke: { type: "boolean", default: false },
    json: { type: "string" },
    rows: { type: "string" },
  },
});
const DISCOVERY = flags.discovery as DiscoveryName;
const CELL_PLANES = flags.planes.split(",") as Plane[];
if (!DISCOVERY_NAMES.includes(DISCOVERY) || !CELL_PLANES.every((p) => PLANES.includes(p))) {
  console.error(`noop bench: unknown --discovery ${flags.discovery} or --planes ${flags.planes}`);
  Deno.exit(2);
}
const SMOKE = isSmoke(flags.smoke);

/** Request counts. The RSS samples fall at 2,000 / 10,000 / 20,000 requests served (full set). */
const PLAN = SMOKE
  ? { startupTrials: 1, warmup: 5, lat: 20, c16: 32, c64: 64, soak: 64 }
  : { startupTrials: 3, warmup: 100, lat: 1_900, c16: 4_000, c64: 4_000, soak: 10_000 };

/** A start whose server exits first: the last lines it logged say why. */
class ServerExited extends Error {}

async function runTarget(
  t: Target,
  discovery: Discovery,
  planeEnv: Record<string, string>,
  full: boolean,
  scratch: string,
): Promise<TargetResult> {
  const result: TargetResult = { startupMs: [], phases: [], rss: {}, exe: "" };
  const trials = full ? PLAN.startupTrials : 1;
  for (let trial = 0; trial < trials; trial++) {
    const last = trial === trials - 1;
    const start = await discovery.start(t.key);
    const phases = !last
      ? ""
      : full
      ? `1:${PLAN.lat},16:${PLAN.c16},64:${PLAN.c64},16:${PLAN.soak}`
      : `1:${PLAN.lat},16:${PLAN.c16}`;
    const base = { DYN_TCP_RPC_HOST: "127.0.0.1", ...planeEnv };
    const driver = driverCommand(t, { ...base, ...start.driver }, phases, PLAN.warmup, last).spawn();
    const lines = new JsonLines(driver.stdout);
    let server: Deno.ChildProcess | undefined;
    try {
      // A guard against a hung driver, not a measurement: generous for a loaded machine.
      await lines.next("poller_ready", 120_000);
      await start.beforeSpawn();
      const spawnedAt = epochMs();
      server = t.command({ ...base, ...start.server, PATH: "/usr/bin:/bin" }).spawn();
      const log = `${scratch}/${t.key}-${planeEnv.DYN_REQUEST_PLANE}-${trial}.stderr`;
      drain(server.stdout, log.replace(/stderr$/, "stdout"));
      const logged = drain(server.stderr, log);
      const exited = server.status.then(async (s) => {
        await logged;
        const tail = (await Deno.readTextFile(log).catch(() => "")).trim().split("\n").slice(-3).join(" | ");
        throw new ServerExited(`exited with code ${s.code} before answering: ${tail.slice(0, 400)}`);
      });
      exited.catch(() => {});
      const next = async (key: string, ms: number) =>
        (await Promise.race([lines.next(key, ms), exited]))[key];
      const startup = await next("startup", 90_000) as Json;
      result.startupMs.push(Number(startup.both_ok_epoch_ms) - spawnedAt);
      if (!last) {
        await driver.status;
        continue;
      }
      const pid = server.pid;
      result.exe = (await readProc(`/proc/${pid}/cmdline`)).split("\0")[0];
      result.rss.idle = await procStatus(pid);
      const writer = driver.stdin.getWriter();
      const phase = async () => result.phases.push(await next("phase", 600_000) as Json);
      const go = () => writer.write(new TextEncoder().encode("\n"));
      // 1 caller: warm-up + latency; the server has then answered 2,000 requests (full set).
      await phase();
      result.rss.at2k = await procStatus(pid);
      let cpuBefore = await cpuMs(pid);
      await go();
      await phase();
      if (full) {
        await go();
        await phase();
        result.rss.at10k = await procStatus(pid);
        cpuBefore = await cpuMs(pid);
        await go();
        await phase();
        result.rss.at20k = await procStatus(pid);
      }
      const cpuPhase = result.phases[result.phases.length - 1];
      result.cpuMsPer1k = ((await cpuMs(pid)) - cpuBefore) / (Number(cpuPhase.ok) / 1000);
      await lines.next("done", 60_000);
      await writer.close().catch(() => {});
      await driver.status;
    } catch (e) {
      result.unavailable = e instanceof Error ? e.message : String(e);
      return result;
    } finally {
      try {
        driver.kill("SIGKILL");
      } catch { /* exited */ }
      await driver.status;
      await lines.closed.catch(() => {});
      if (server) await stopChild(server, 30_000);
      await start.cleanup();
    }
  }
  return result;
}

async function runCell(discovery: Discovery, plane: Plane, full: boolean, scratch: string) {
  const targets = noopTargets(plane);
  const nats = plane === "nats" ? await startNats({ config: natsMappings(targets) }) : undefined;
  const planeEnv: Record<string, string> = {
    DYN_REQUEST_PLANE: plane,
    ...(nats ? { NATS_SERVER: nats.url } : {}),
  };
  const results = {} as Record<Key, TargetResult>;
  const cell = `${discovery.name}/${plane}`;
  const one = async (t: Target) => {
    console.error(`noop bench ${cell}: ${t.label} ...`);
    const r = results[t.key] = await runTarget(t, discovery, planeEnv, full, scratch);
    console.error(
      r.unavailable
        ? `noop bench ${cell}:   ${t.key} not available: ${r.unavailable}`
        : `noop bench ${cell}:   ${t.key} startup ${r.startupMs.map((x) => x.toFixed(0)).join("/")} ms; ` +
          r.phases.map((p) => `c=${p.c} ${p.rps} req/s p50 ${p.p50_ms} p99 ${p.p99_ms}`).join("; "),
    );
  };
  try {
    // Smoke runs start the three at once: there only "every target answered" counts.
    if (SMOKE) await Promise.all(targets.map(one));
    else for (const t of targets) await one(t);
  } finally {
    await nats?.stop();
  }
  return results;
}

await requireFiles("noop bench", [PYTHON, DRIVER, ECHO]);
const started = Date.now();
const scratch = await Deno.makeTempDir({ prefix: "gp-bench-noop-" });
const cells: Record<string, { full: boolean; results: Record<Key, TargetResult> }> = {};
let emptyKb: number | undefined;
let empty: { medianKb: number; samplesKb: number[] } | undefined;
const discovery = await startDiscovery(DISCOVERY, scratch);
try {
  const cell = async (plane: Plane) => {
    const full = plane === flags.full;
    cells[plane] = { full, results: await runCell(discovery, plane, full, scratch) };
  };
  // One plane at a time even in smoke runs: with the orchestrator overlapping phases, more
  // Python runtimes starting at once on 2 cores took over a minute each.
  for (const plane of CELL_PLANES) await cell(plane);
  if (Object.values(cells).some((c) => c.full)) {
    empty = await emptyDenoRssKb(SMOKE ? 1 : 5);
    emptyKb = empty.medianKb;
  }
} finally {
  await discovery.stop();
  if (!flags.json) await Deno.remove(scratch, { recursive: true }).catch(() => {});
}

console.log(`## No-op: ${DISCOVERY} discovery${SMOKE ? " (SMOKE: tiny counts, figures meaningless)" : ""}\n`);
console.log(
  `plan: warm-up ${PLAN.warmup}, 1 caller ${PLAN.lat}, 16 callers ${PLAN.c16}; full set (${
    flags.full ?? "none"
  }) ` +
    `also 64 callers ${PLAN.c64}, soak 16 callers ${PLAN.soak}, ${PLAN.startupTrials} start(s) per target; ` +
    `wall ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
);
for (const plane of CELL_PLANES) {
  const c = cells[plane];
  const rows = cellRows(`no-op · ${DISCOVERY}/${plane}`, c.results, c.full, emptyKb, SMOKE);
  console.log(renderTable(rows));
  console.log(
    "startup samples (ms): " +
      (["ours", "peer", "echo"] as Key[]).map((k) =>
        `${k} ${c.results[k].startupMs.map((x) => x.toFixed(0)).join(", ") || "—"}`
      ).join("; ") + (c.results.ours.exe ? `; ours exe ${c.results.ours.exe}` : "") +
      (c.full && empty
        ? `; empty Deno RSS (MiB) ${empty.samplesKb.map((kb) => (kb / 1024).toFixed(1)).join(", ")}`
        : "") +
      "\n",
  );
  await writeRows(flags.rows, rows);
}
if (flags.json) {
  await Deno.writeTextFile(
    flags.json,
    JSON.stringify({ plan: PLAN, smoke: SMOKE, discovery: DISCOVERY, emptyKb, empty, cells }, null, 2),
  );
  console.error(`noop bench: raw figures in ${flags.json}; server logs in ${scratch}`);
}
