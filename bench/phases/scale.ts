/**
 * Scale phase (issue 14, point 3): 1,000 DGDs in 20 Kubernetes namespaces, 200 planners sending a
 * mix of non-blocking requests to ours with a GPU budget on. Ours only (upstream's budget is not
 * comparable: it lists every DGD on each decision).
 *
 *   npx -y deno@2.9.6 run -P=test bench/phases/scale.ts [--smoke] [--json FILE] [--rows FILE]
 *
 * BENCH_SCALE_CPU_PROF=DIR: the loaded service writes a V8 CPU profile into DIR on exit;
 * BENCH_SCALE_LOG=FILE: its log lines (JSON, one a line) are kept in FILE (e.g. to count the
 * `budget decision` lines by `decision`).
 *
 * Real etcd + kube-apiserver (audit log on); deploy/rbac.yaml's ServiceAccount; ours in in-cluster
 * mode, POD_NAMESPACE = the first namespace (the budget's watch cache), the other namespaces' DGDs
 * join the budget on their first request. tests/interop/py/scale_mix_driver.py (real
 * ai-dynamo-runtime 1.6.1, one DistributedRuntime) runs the planners as asyncio tasks.
 *
 * Two services, same flags, same cluster: first with no DGD (its RSS after a warm-up of health
 * requests is the baseline), then with the DGDs: the same health warm-up, one `same` request per
 * DGD (each joins the budget and is read once), then the measured load window. Decision time is
 * our `scale_decision_duration_seconds` histogram (receipt → write issued, or answer known,
 * waiting for earlier decisions included), diffed over the window.
 */
import { parseArgs } from "node:util";
import { parseAllDocuments } from "yaml";
import { applyManifest, createDgd, v1beta1Dgd } from "../../tests/support/dgd_fixtures.ts";
import { type KubeCluster, startKubeCluster } from "../../tests/support/kube_cluster.ts";
import { type ServiceProcess, startService } from "../../tests/support/service.ts";
import { type Audit, AUDIT_POLICY, auditCalls, auditDelta } from "../_audit.ts";
import { type Json, JsonLines as Lines } from "../_json_lines.ts";
import { type BenchRow, writeRows } from "../_rows.ts";
import { cpuSeconds, type Histogram, histogramDelta, quantileBound, rssMiB, scrape } from "../_process.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const PYTHON = `${ROOT}/.cache/venv/bin/python`;
const DRIVER = `${ROOT}/tests/interop/py/scale_mix_driver.py`;
const SA_NS = "dynamo-system";
const GP_NS = "bench-scale";
const USER = `system:serviceaccount:${SA_NS}:global-planner`;
const PHASE = "1k DGDs · kubernetes connector";
const DECISION = "dynamo_global_planner_scale_decision_duration_seconds";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    smoke: { type: "boolean", default: false },
    json: { type: "string" },
    rows: { type: "string" },
  },
});
const SMOKE = flags.smoke || Deno.env.get("BENCH_SMOKE") === "1";
const env = (name: string, fallback: number) => Number(Deno.env.get(name) ?? fallback);
const PLAN = SMOKE ? { namespaces: 4, dgds: 40, planners: 10, requests: 5, thinkMs: 50, healthWarm: 3 } : {
  namespaces: 20,
  dgds: env("BENCH_SCALE_DGDS", 1000),
  planners: 200,
  requests: env("BENCH_SCALE_REQUESTS", 25),
  thinkMs: env("BENCH_SCALE_THINK_MS", 2000),
  healthWarm: 5,
};
const MIX = { up: 3, down: 3, same: 2, reject: 1, health: 1 };
const MAX_DECODE = 3;
/**
 * Every DGD starts at prefill 1 + decode 2, one GPU per replica (so planners can scale down as
 * well as up); the ceiling leaves room for some ups, then rejects them.
 */
const START_DECODE = 2;
const START_GPUS = PLAN.dgds * (1 + START_DECODE);
const CEILING = START_GPUS + Math.ceil(PLAN.dgds / 4);
const REJECT_DECODE = CEILING + 1;

const nsName = (i: number): string => `scale-${String(i).padStart(2, "0")}`;
const dgdName = (i: number): string => `dgd-${String(i).padStart(4, "0")}`;

interface Summary {
  counts: Record<string, Record<string, number>>;
  lost: number;
  lost_examples: string[];
  error_examples: string[];
  e2e_ms: Record<string, [number | null, number | null]>;
  requests: number;
  wall_s: number;
}

/** Runs `work` over `items`, `limit` at a time. */
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}

interface Started {
  service: ServiceProcess;
  driver: Deno.ChildProcess;
  lines: Lines;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  metricsPort: number;
  kv: string;
}

/** Ours (budget on) and a driver whose planners own `owned` (DGD indexes per planner). */
async function start(cluster: KubeCluster, scratch: string, token: string, label: string, dgds: number) {
  const saDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-scale-sa-" });
  await cluster.writeServiceAccountDir(saDir, SA_NS, token);
  const kv = `${scratch}/kv-${label}`;
  await Deno.mkdir(kv);
  // BENCH_SCALE_CPU_PROF=DIR: the loaded service writes a V8 CPU profile there on exit.
  const prof = label === "full" ? Deno.env.get("BENCH_SCALE_CPU_PROF") : undefined;
  const service = await startService({
    prefix: prof
      ? ["bash", "-c", `exec "$1" run --cpu-prof --cpu-prof-dir=${prof} "\${@:3}"`, "_"]
      : undefined,
    args: ["--service-account-dir", saDir, "--max-total-gpus", String(CEILING)],
    env: {
      DYN_LOG: "info",
      DYN_NAMESPACE: GP_NS,
      POD_NAMESPACE: nsName(0),
      DYN_DISCOVERY_BACKEND: "file",
      DYN_FILE_KV: kv,
      DYN_SYSTEM_PORT: "0",
      DYN_SYSTEM_HOST: "127.0.0.1",
      ...cluster.inClusterEnv(),
    },
    readyTimeoutMs: 60_000,
  });
  const status = await service.waitForLog((l) => l.message === "system status server listening");
  await service.waitForLog((l) => l.message === "DGD cache synced", 30_000);
  const planners = Array.from({ length: PLAN.planners }, (_, p) => ({
    caller: `planner-${String(p).padStart(3, "0")}`,
    dgds: Array.from({ length: dgds }, (_, i) => i).filter((i) => i % PLAN.planners === p).map((i) => ({
      name: dgdName(i),
      k8s_namespace: nsName(i % PLAN.namespaces),
      prefill: 1,
      decode: START_DECODE,
    })),
  }));
  const plan = `${scratch}/plan-${label}.json`;
  await Deno.writeTextFile(
    plan,
    JSON.stringify({
      planners,
      requests: PLAN.requests,
      think_ms: PLAN.thinkMs,
      seed: 14,
      max_decode: MAX_DECODE,
      reject_decode: REJECT_DECODE,
      warm_concurrency: 8,
      mix: MIX,
    }),
  );
  const driver = new Deno.Command(PYTHON, {
    args: [DRIVER, "--namespace", GP_NS, "--plan", plan, "--request-timeout", "60"],
    env: {
      DYN_DISCOVERY_BACKEND: "file",
      DYN_REQUEST_PLANE: "tcp",
      DYN_FILE_KV: kv,
      DYN_TCP_RPC_HOST: "127.0.0.1",
      DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1",
      DYN_LOG: "warn",
      PATH: "/usr/bin:/bin",
    },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = new Lines(driver.stdout);
  const writer = driver.stdin.getWriter();
  const started: Started = { service, driver, lines, writer, metricsPort: Number(status.port), kv };
  try {
    await lines.next("ready", 120_000);
  } catch (e) {
    await stop(started, saDir);
    throw e;
  }
  return { ...started, saDir };
}

async function command(s: Started, what: string, timeoutMs: number): Promise<Summary> {
  await s.writer.write(new TextEncoder().encode(what + "\n"));
  return (await s.lines.next(what, timeoutMs))[what] as Summary;
}

async function stop(s: Started, saDir: string): Promise<void> {
  await s.writer.write(new TextEncoder().encode("\n")).catch(() => {});
  await s.lines.next("done", 15_000).catch(() => {});
  await s.writer.close().catch(() => {});
  try {
    s.driver.kill("SIGKILL");
  } catch { /* exited */ }
  await s.driver.status;
  await s.service.stop("SIGTERM");
  await Deno.remove(saDir, { recursive: true }).catch(() => {});
}

/** N health calls per planner: the same warm-up for both services. */
async function healthWarm(s: Started): Promise<void> {
  for (let i = 0; i < PLAN.healthWarm; i++) {
    const sum = await command(s, "health", 120_000);
    if (sum.lost > 0) throw new Error(`health warm-up lost answers: ${sum.lost_examples.join("; ")}`);
  }
}

interface Window {
  audit: Audit;
  apiCalls: number;
  decisions: Histogram;
  inTurn: Histogram;
  cpu: number;
  /** How many service log lines there were. */
  logLines: number;
}

async function window(s: Started, audit: string): Promise<Window> {
  await new Promise((r) => setTimeout(r, 300)); // the audit backend writes its last events
  const metrics = await scrape(s.metricsPort);
  return {
    audit: await auditCalls(audit, USER),
    apiCalls: metrics.counter("dynamo_global_planner_kube_api_calls_total"),
    decisions: metrics.histogram(DECISION, 'span="receipt"'),
    inTurn: metrics.histogram(DECISION, 'span="turn"'),
    cpu: await cpuSeconds(s.service.pid),
    logLines: s.service.logs.length,
  };
}

/** The service's "budget decision" lines between two windows, by decision (approve, reject, settle). */
function decisionKinds(logs: Record<string, unknown>[], from: number, to: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const line of logs.slice(from, to)) {
    if (line.message !== "budget decision") continue;
    const kind = String(line.decision);
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

/** Observations at or below `bound` (a bucket bound of the histogram; NaN when it is none). */
function within(h: Histogram, bound: number): number {
  return h.buckets.find(([le]) => Math.abs(le - bound) < 1e-12)?.[1] ?? NaN;
}

function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "—";
  return Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2);
}

async function main(): Promise<void> {
  for (const path of [PYTHON, DRIVER]) await Deno.stat(path);
  const started = Date.now();
  const scratch = await Deno.makeTempDir({ prefix: "gp-scale-bench-" });
  await Deno.writeTextFile(`${scratch}/audit-policy.yaml`, AUDIT_POLICY);
  const audit = `${scratch}/audit.log`;
  let cluster: KubeCluster | undefined;
  let baselineRss = NaN;
  let result: Json | undefined;
  try {
    console.error("scale bench: starting etcd + kube-apiserver ...");
    cluster = await startKubeCluster({
      extraApiserverArgs: [`--audit-policy-file=${scratch}/audit-policy.yaml`, `--audit-log-path=${audit}`],
    });
    for (let n = 0; n < PLAN.namespaces; n++) await cluster.createNamespace(nsName(n));
    await cluster.createNamespace(SA_NS);
    await applyManifest(
      cluster,
      parseAllDocuments(await Deno.readTextFile(`${ROOT}/deploy/rbac.yaml`)).map((d) => d.toJSON()),
    );
    const token = await cluster.createServiceAccountToken(SA_NS, "global-planner");

    console.error("scale bench: baseline (no DGD) ...");
    const empty = await start(cluster, scratch, token, "empty", 0);
    try {
      await healthWarm(empty);
      baselineRss = await rssMiB(empty.service.pid);
    } finally {
      await stop(empty, empty.saDir);
    }

    console.error(`scale bench: creating ${PLAN.dgds} DGDs in ${PLAN.namespaces} namespaces ...`);
    const c = cluster;
    await pool(Array.from({ length: PLAN.dgds }, (_, i) => i), 16, async (i) => {
      await createDgd(
        c,
        v1beta1Dgd(dgdName(i), nsName(i % PLAN.namespaces), {
          prefill: { role: "prefill", replicas: 1, gpu: 1 },
          decode: { role: "decode", replicas: START_DECODE, gpu: 1 },
        }),
      );
    });

    console.error("scale bench: ours with the DGDs ...");
    const full = await start(cluster, scratch, token, "full", PLAN.dgds);
    try {
      await healthWarm(full);
      const warm = await command(full, "warm", 300_000);
      const before = await window(full, audit);
      console.error("scale bench: load ...");
      const load = await command(full, "load", 900_000);
      const after = await window(full, audit);
      const rss = await rssMiB(full.service.pid);
      const kinds = decisionKinds(full.service.logs, before.logLines, after.logLines);
      result = { warm, load, before, after, rss, kinds };
    } finally {
      await stop(full, full.saDir);
      // BENCH_SCALE_LOG=FILE: the loaded service's log lines, one JSON object a line.
      const log = Deno.env.get("BENCH_SCALE_LOG");
      if (log) await Deno.writeTextFile(log, full.service.logs.map((l) => JSON.stringify(l) + "\n").join(""));
    }
  } finally {
    await cluster?.stop();
    if (!flags.json) await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
  const { warm, load, before, after, rss, kinds } = result as {
    warm: Summary;
    load: Summary;
    before: Window;
    after: Window;
    rss: number;
    kinds: Record<string, number>;
  };
  const decisions = histogramDelta(before.decisions, after.decisions);
  // Beyond the last bucket: the last bound, a lower bound of the quantile (the table says so).
  const finite = (x: number) => Number.isFinite(x) ? x : 30;
  const over = (q: number) => !Number.isFinite(quantileBound(decisions, q));
  const p50 = finite(quantileBound(decisions, 0.5)) * 1000;
  const p99 = finite(quantileBound(decisions, 0.99)) * 1000;
  const inTurn = histogramDelta(before.inTurn, after.inTurn);
  const writeMs = after.audit.serverMs.slice(before.audit.total).sort((a, b) => a - b);
  const byVerb = auditDelta(before.audit, after.audit);
  const count = (re: RegExp) =>
    Object.entries(byVerb).filter(([k]) => re.test(k)).reduce((s, [, v]) => s + v, 0);
  const writes = count(/^(patch|update) dynamographdeployments(\/scale)? 2\d\d$/);
  const conflicts = count(/^(patch|update) \S+ 409$/);
  const gets = count(/^get dynamographdeployments /);
  const decisionReads = Math.max(0, gets - conflicts);
  const watches = count(/^(watch|list) /);
  const other = after.audit.total - before.audit.total - writes - conflicts - gets - watches;
  const ownCalls = after.apiCalls - before.apiCalls;
  const scaleRequests = load.requests - Object.values(load.counts.health ?? {}).reduce((s, n) => s + n, 0);
  const cpuPer1k = (after.cpu - before.cpu) / load.requests * 1000;
  const statuses: Record<string, number> = {};
  for (const [kind, by] of Object.entries(load.counts)) {
    if (kind === "health") continue;
    for (const [status, n] of Object.entries(by)) statuses[status] = (statuses[status] ?? 0) + n;
  }
  const lost = warm.lost + load.lost;

  console.log(
    `## Scale: ${
      PLAN.dgds.toLocaleString("en")
    } DGDs in ${PLAN.namespaces} namespaces, ${PLAN.planners} planners${
      SMOKE ? " (SMOKE: tiny counts, figures meaningless)" : ""
    }\n`,
  );
  console.log(
    `ours only; GPU budget on (ceiling ${CEILING}, ${START_GPUS} GPUs at start); each planner owns ` +
      `${
        PLAN.dgds / PLAN.planners
      } DGDs and sends ${PLAN.requests} requests, mean think time ${PLAN.thinkMs} ms, ` +
      `mix ${JSON.stringify(MIX)}; load window ${fmt(load.wall_s)} s (${load.requests} requests, ` +
      `${fmt(load.requests / load.wall_s)} req/s); wall ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
  );
  const rows: [string, string][] = [
    [
      `decision time, p50 (ms, histogram bucket bound; ${decisions.count} decisions)`,
      `${over(0.5) ? ">" : "≤"} ${fmt(p50)}`,
    ],
    ["decision time, p99 (ms, histogram bucket bound)", `${over(0.99) ? ">" : "≤"} ${fmt(p99)}`],
    ["decision time, mean (ms)", fmt(decisions.sum / decisions.count * 1000)],
    [
      "decisions within 2 ms (the target's bound; cumulative bucket count)",
      `${within(decisions, 0.002)} of ${decisions.count} (${
        fmt(within(decisions, 0.002) / decisions.count * 100)
      } %)`,
    ],
    [
      "budget decisions logged, by kind (`settle`: left open by writes in flight, decided again)",
      JSON.stringify(kinds),
    ],
    [
      "  of which in its own turn (after the decisions and writes ahead of it), p50 / p99 / mean (ms)",
      `≤ ${fmt(quantileBound(inTurn, 0.5) * 1000)} / ≤ ${fmt(quantileBound(inTurn, 0.99) * 1000)} / ${
        fmt(inTurn.sum / inTurn.count * 1000)
      }`,
    ],
    [
      "API server time per call in the window, p50 / p99 (ms, audit timestamps)",
      `${fmt(writeMs[Math.floor(writeMs.length / 2)])} / ${fmt(writeMs[Math.floor(writeMs.length * 0.99)])}`,
    ],
    [
      "RSS after the load / no-DGD RSS (MiB)",
      `${fmt(rss)} / ${fmt(baselineRss)} = ${fmt(rss / baselineRss)}×`,
    ],
    [
      "API calls in the load window (audit log / our `kube_api_calls_total`)",
      `${after.audit.total - before.audit.total} / ${ownCalls}`,
    ],
    ["  writes (patch/update 2xx)", String(writes)],
    ["  GETs on the decision path (GETs − 409 re-reads)", String(decisionReads)],
    ["  409 conflicts (each followed by one fresh read)", `${conflicts} (GETs in all: ${gets})`],
    ["  watch / list (watch renewals)", String(watches)],
    ["  other (the connector's periodic /version probe)", String(other)],
    ["server CPU per 1,000 requests (s, utime+stime)", fmt(cpuPer1k)],
    ["answers by status (scale requests)", `${JSON.stringify(statuses)} of ${scaleRequests}`],
    ["answers by kind and status", JSON.stringify(load.counts)],
    ["end-to-end p50 / p99 by kind (ms, caller side)", JSON.stringify(load.e2e_ms)],
    ["failed / lost answers (warm-up + load)", String(lost)],
    ["warm-up: one `same` per DGD (joins the budget) — API calls", String(before.audit.total)],
  ];
  console.log("| metric | ours |\n|---|---|\n" + rows.map(([k, v]) => `| ${k} | ${v} |`).join("\n") + "\n");
  console.log(
    "API calls in the load window by verb, resource and code (audit log): " +
      (Object.entries(byVerb).sort().map(([k, v]) => `\`${k}\` ${v}`).join(", ") || "none") + "\n",
  );
  for (const e of [...warm.lost_examples, ...load.lost_examples]) console.log(`- lost: ${e}`);
  for (const e of load.error_examples) console.log(`- error answer: ${e}`);

  const benchRows: BenchRow[] = [
    { phase: PHASE, metric: "decision time p50 (budget on)", unit: "ms", ours: p50 },
    {
      phase: PHASE,
      metric: "decision time in its own turn p99 (budget on)",
      unit: "ms",
      ours: quantileBound(inTurn, 0.99) * 1000,
    },
    {
      phase: PHASE,
      metric: "decision time p99 (budget on)",
      unit: "ms",
      ours: p99,
      target: { of: "value", max: 2 },
    },
    {
      phase: PHASE,
      metric: "RSS after the load",
      unit: "MiB",
      ours: rss,
      limit: baselineRss,
      limitName: "no-DGD RSS",
      target: { of: "limit", max: 1.5 },
    },
    {
      phase: PHASE,
      metric: "API reads on the decision path (409 re-reads excluded)",
      unit: "calls",
      ours: decisionReads,
      target: { of: "value", max: 0 },
    },
    { phase: PHASE, metric: "server CPU per 1,000 requests", unit: "s", ours: cpuPer1k },
    { phase: PHASE, metric: "lost answers", unit: "", ours: lost, target: { of: "value", max: 0 } },
  ];
  await writeRows(flags.rows, benchRows);
  if (flags.json) {
    await Deno.writeTextFile(
      flags.json,
      JSON.stringify({ plan: PLAN, smoke: SMOKE, ceiling: CEILING, baselineRss, ...result, byVerb }, null, 2),
    );
    console.error(`scale bench: raw figures in ${flags.json}; audit log in ${scratch}`);
  }
  if (lost > 0) Deno.exit(1);
}

await main();
