/**
 * Kube scale phase: end-to-end latency of a non-blocking scale that
 * writes one DGD, API calls per request and TLS connections per request, on the real test cluster
 * (etcd + kube-apiserver from tests/support/kube_cluster.ts), for ours and for upstream's Python
 * Global Planner (ai-dynamo 1.6.1, `python -m dynamo.global_planner` WITHOUT --no-operation).
 *
 *   npx -y deno@2.9.6 run -P=test bench/phases/kube_scale.ts [--smoke] [--json FILE] [--rows FILE]
 *   full: 2 warm-up + BENCH_KUBE_N (1,000) requests per target; smoke: 5. `deno task bench`
 *   (bench/main.ts) runs it after the no-op cells. The cluster side lives in bench/_kube_scale.ts.
 *
 * Per target, one after the other, on the same cluster and the same v1beta1 DGD (components
 * `prefill` and `decode`, marked Ready):
 *   - the server's Kubernetes traffic goes through its own counting TCP proxy (as
 *     tests/support/tcp_proxy.ts (TCP_NODELAY on both legs); TLS stays end to end,
 *     so the proxy counts connections);
 *   - ours runs in-cluster mode (KUBERNETES_SERVICE_HOST/PORT = the proxy, --service-account-dir
 *     with a token of deploy/rbac.yaml's ServiceAccount), DYN_SYSTEM_PORT=0 for /metrics;
 *   - upstream runs with KUBECONFIG (server = the proxy, token of its own ServiceAccount): its
 *     kubernetes client tries load_incluster_config() first, which fails without
 *     KUBERNETES_SERVICE_HOST, and falls back to load_kube_config();
 *   - tests/interop/py/kube_scale_driver.py (real ai-dynamo-runtime 1.6.1, upstream's ScaleRequest
 *     model) sends one request per step: prefill 1 (unchanged) and decode alternating 2 / 3, so
 *     every request writes the DGD;
 *   - between two requests (outside the timed window) the bench plays the operator: it copies the
 *     new spec into status (observedGeneration, Ready, per-component replica counts), as the real
 *     operator would have done between two planner ticks. Upstream needs that to scale down
 *     (it checks the components' status before reducing); ours only needs Ready.
 * API calls are counted on the API server's audit log (per ServiceAccount, stage ResponseComplete),
 * for both; ours is cross-checked with its own `dynamo_global_planner_kube_api_calls_total`.
 */
import { parseArgs } from "node:util";
import type { KubeCluster } from "../../tests/support/kube_cluster.ts";
import { type Json, JsonLines as Lines } from "../_json_lines.ts";
import {
  type Audit,
  auditCalls,
  DGD,
  K8S_NS,
  ourApiCalls,
  reconcile,
  runRawPatch,
  type ScaleCluster,
  type Started,
  startOurs,
  startScaleCluster,
  startUpstream,
} from "../_kube_scale.ts";
import { type BenchRow, writeRows } from "../_rows.ts";
import { fmt, isSmoke, pct, PYTHON, requireFiles, ROOT } from "../_util.ts";

const DRIVER = `${ROOT}/tests/interop/py/kube_scale_driver.py`;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    smoke: { type: "boolean", default: false },
    json: { type: "string" },
    rows: { type: "string" },
  },
});
const SMOKE = isSmoke(flags.smoke);
const PLAN = SMOKE ? { warmup: 2, n: 5 } : { warmup: 2, n: Number(Deno.env.get("BENCH_KUBE_N") ?? 1000) };

const CALLER = "bench-caller";

// ------------------------------------------------------------------------------ targets

interface Snapshot {
  connections: number;
  audit: Audit;
  own?: number;
  generation: number;
}

interface Result {
  label: string;
  latMs: number[];
  statuses: Record<string, number>;
  errors: string[];
  startup: Snapshot;
  before: Snapshot;
  after: Snapshot;
}

async function runTarget(
  cluster: KubeCluster,
  audit: string,
  label: string,
  scratch: string,
  start: () => Promise<Started>,
): Promise<Result> {
  const target = await start();
  const driver = new Deno.Command(PYTHON, {
    args: [DRIVER, "--endpoint", `${target.namespace}.GlobalPlanner.scale_request`, "--caller", CALLER]
      .concat(["--dgd", DGD, "--k8s-namespace", K8S_NS, "--startup-timeout", "90"]),
    env: {
      DYN_DISCOVERY_BACKEND: "file",
      DYN_REQUEST_PLANE: "tcp",
      DYN_FILE_KV: `${scratch}/kv-shared-${target.namespace}`,
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
  const result: Result = {
    label,
    latMs: [],
    statuses: {},
    errors: [],
    startup: undefined as unknown as Snapshot,
    before: undefined as unknown as Snapshot,
    after: undefined as unknown as Snapshot,
  };
  const snapshot = async (): Promise<Snapshot> => {
    await new Promise((r) => setTimeout(r, 300)); // let the audit backend write the last events
    return {
      connections: target.proxy.connections,
      audit: await auditCalls(audit, target.user),
      own: target.metricsPort ? await ourApiCalls(target.metricsPort) : undefined,
      generation: await reconcile(cluster),
    };
  };
  try {
    await lines.next("ready", 120_000);
    result.startup = await snapshot();
    let decode = 2;
    const step = async (timed: boolean) => {
      await writer.write(new TextEncoder().encode(JSON.stringify({ prefill: 1, decode }) + "\n"));
      decode = decode === 2 ? 3 : 2;
      const r = (await lines.next("result", 60_000)).result as Json;
      await reconcile(cluster); // the operator's turn, outside the timed window
      if (!timed) return;
      result.latMs.push(Number(r.ms));
      const status = String(r.status ?? "raised");
      result.statuses[status] = (result.statuses[status] ?? 0) + 1;
      if (status !== "success" && result.errors.length < 3) result.errors.push(JSON.stringify(r));
    };
    for (let i = 0; i < PLAN.warmup; i++) await step(false);
    result.before = await snapshot();
    for (let i = 0; i < PLAN.n; i++) await step(true);
    result.after = await snapshot();
    await writer.write(new TextEncoder().encode("\n"));
    await lines.next("done", 30_000).catch(() => {});
  } finally {
    await writer.close().catch(() => {});
    try {
      driver.kill("SIGKILL");
    } catch { /* exited */ }
    await driver.status;
    await target.stop();
  }
  result.latMs.sort((a, b) => a - b);
  return result;
}

// ------------------------------------------------------------------------------ report

function perRequest(r: Result) {
  const n = r.latMs.length;
  const byDelta: Record<string, number> = {};
  for (const [k, v] of Object.entries(r.after.audit.by)) {
    const d = v - (r.before.audit.by[k] ?? 0);
    if (d) byDelta[k] = d / n;
  }
  return {
    n,
    p50: pct(r.latMs, 50),
    p99: pct(r.latMs, 99),
    mean: r.latMs.reduce((s, x) => s + x, 0) / n,
    max: r.latMs[n - 1],
    auditCalls: (r.after.audit.total - r.before.audit.total) / n,
    serverMs: r.after.audit.serverMs.slice(r.before.audit.total).reduce((a, b) => a + b, 0) / n,
    ownCalls: r.after.own !== undefined ? (r.after.own - r.before.own!) / n : NaN,
    connections: (r.after.connections - r.before.connections) / n,
    connectionsTotal: r.after.connections,
    startupCalls: r.startup.audit.total,
    writes: (r.after.generation - r.before.generation) / n,
    ok: r.statuses.success ?? 0,
    byDelta,
  };
}

function report(
  ours: Result,
  peer: Result | undefined,
  peerError: string | undefined,
  rawMs: number[],
): string {
  const o = perRequest(ours);
  const p = peer ? perRequest(peer) : undefined;
  type Row = [string, (x: ReturnType<typeof perRequest>) => number, boolean?];
  const rows: Row[] = [
    ["non-blocking scale, p50 (ms)", (x) => x.p50],
    ["non-blocking scale, p99 (ms)", (x) => x.p99],
    ["mean (ms)", (x) => x.mean],
    ["max (ms)", (x) => x.max],
    ["answered `success` (of N)", (x) => x.ok, false],
    ["DGD writes per request (metadata.generation delta / N)", (x) => x.writes, false],
    ["API calls per request (API server audit log)", (x) => x.auditCalls],
    ["API calls per request (our `kube_api_calls_total`)", (x) => x.ownCalls],
    ["API server time per request (ms, sum over its calls, audit timestamps)", (x) => x.serverMs],
    ["new TLS connections per request (proxy, measured requests)", (x) => x.connections],
    ["TLS connections in total (start + warm-up + N requests)", (x) => x.connectionsTotal],
    ["API calls before the first request (start-up)", (x) => x.startupCalls],
  ];
  let out = `| metric (N = ${o.n}) | ours | Python GP | ours / Python GP |\n|---|---:|---:|---:|\n`;
  for (const [name, get, compare = true] of rows) {
    const a = get(o), b = p ? get(p) : NaN;
    const ratio = compare && p && b !== 0 && Number.isFinite(a / b) ? `${fmt(a / b)}×` : "—";
    out += `| ${name} | ${fmt(a)} | ${fmt(b)} | ${ratio} |\n`;
  }
  const rawP50 = pct(rawMs, 50);
  out += `\nthe physical limit: one raw PATCH of the same DGD from this process on a warm connection ` +
    `(N = ${rawMs.length}): p50 ${fmt(rawP50)} ms, p99 ${fmt(pct(rawMs, 99))} ms\n\n` +
    `| ratio (same run) | value |\n|---|---:|\n` +
    `| ours p50 / raw PATCH p50 | ${fmt(o.p50 / rawP50)}× |\n` +
    `| Python GP p50 / raw PATCH p50 | ${p ? `${fmt(p.p50 / rawP50)}×` : "—"} |\n` +
    `| ours p50 / Python GP p50 | ${p ? `${fmt(o.p50 / p.p50)}×` : "—"} |\n` +
    `| ours API calls per scale (audit log / our metric) | ${fmt(o.auditCalls)} / ${fmt(o.ownCalls)} |\n`;
  if (o.ownCalls === 0 && o.auditCalls > 0) {
    out += "\nnote: ours' `dynamo_global_planner_kube_api_calls_total` did not move while the audit log " +
      "saw its calls (the counter is not fed by the Kubernetes client in this build).\n";
  }
  out += "\nAPI calls per request by verb, resource and HTTP code (audit log):\n\n";
  const show = (label: string, by: Record<string, number>) =>
    `- ${label}: ` + (Object.entries(by).sort().map(([k, v]) => `\`${k}\` ${fmt(v)}`).join(", ") || "none") +
    "\n";
  out += show("ours", o.byDelta);
  out += p ? show("Python GP", p.byDelta) : `- Python GP: did not run (${peerError})\n`;
  for (const r of [ours, peer]) {
    if (r?.errors.length) out += `\nfirst non-success answers (${r.label}): ${r.errors.join("; ")}\n`;
  }
  return out;
}

/**
 * The rows of the one table: p50 against the raw PATCH limit and against upstream (a row carries
 * one target, so two rows), API calls per scale from both counts.
 */
function scaleRows(ours: Result, peer: Result | undefined, peerError: string | undefined, rawMs: number[]) {
  const o = perRequest(ours);
  const p = peer ? perRequest(peer) : undefined;
  const phase = "kube scale · file/tcp";
  const note = p ? {} : { note: `upstream not available: ${peerError}` };
  const row = (metric: string, unit: string, get: (x: typeof o) => number, more = {}): BenchRow => ({
    phase,
    metric,
    unit,
    ours: get(o),
    ...(p ? { upstream: get(p) } : {}),
    ...more,
    ...note,
  });
  const raw = { limit: pct(rawMs, 50), limitName: "raw PATCH" };
  return [
    row("non-blocking scale p50", "ms", (x) => x.p50, { ...raw, target: { of: "limit", max: 1.25 } }),
    row("non-blocking scale p50 (to upstream)", "ms", (x) => x.p50, {
      ...raw,
      target: { of: "upstream", max: 0.35 },
    }),
    row("non-blocking scale p99", "ms", (x) => x.p99, { limit: pct(rawMs, 99), limitName: "raw PATCH" }),
    row("API calls per scale (audit log)", "calls", (x) => x.auditCalls, {
      target: { of: "value", max: 1.05 },
    }),
    row("API calls per scale (our metric)", "calls", (x) => x.ownCalls, {
      target: { of: "value", max: 1.05 },
    }),
    row("DGD writes per scale", "", (x) => x.writes),
    row("answered success (of N)", "", (x) => x.ok, { limit: o.n, limitName: "N" }),
  ] satisfies BenchRow[];
}

// ------------------------------------------------------------------------------ main

await requireFiles("kube bench", [PYTHON, DRIVER]);
const started = Date.now();
const scratch = await Deno.makeTempDir({ prefix: "gp-kube-bench-" });
let setup: ScaleCluster | undefined;
let ours: Result | undefined;
let peer: Result | undefined;
let peerError: string | undefined;
let rawMs: number[] = [];
try {
  console.error("kube bench: starting etcd + kube-apiserver ...");
  setup = await startScaleCluster(scratch);
  const { cluster, audit, ourToken, upstreamToken } = setup;
  console.error("kube bench: ours ...");
  ours = await runTarget(cluster, audit, "ours", scratch, () => startOurs(cluster, scratch, ourToken));
  console.error(`kube bench:   p50 ${fmt(pct(ours.latMs, 50))} ms, ${JSON.stringify(ours.statuses)}`);
  console.error("kube bench: upstream Python Global Planner ...");
  try {
    peer = await runTarget(
      cluster,
      audit,
      "Python GP",
      scratch,
      () => startUpstream(cluster, scratch, upstreamToken),
    );
    console.error(`kube bench:   p50 ${fmt(pct(peer.latMs, 50))} ms, ${JSON.stringify(peer.statuses)}`);
  } catch (e) {
    peerError = String(e instanceof Error ? e.message : e);
    const tail = await Deno.readTextFile(`${scratch}/upstream.stderr`).catch(() => "");
    console.error(`kube bench: upstream failed: ${peerError}\n${tail.slice(-3000)}`);
  }
  // Last, so the audit log's per-user counts of the targets (same ServiceAccount) stay clean.
  console.error("kube bench: raw PATCH limit ...");
  rawMs = await runRawPatch(cluster, ourToken, PLAN);
  console.error(`kube bench:   p50 ${fmt(pct(rawMs, 50))} ms`);
} finally {
  await setup?.cluster.stop();
  if (!flags.json) await Deno.remove(scratch, { recursive: true }).catch(() => {});
}

console.log(
  `## Kubernetes: non-blocking scale that writes one DGD${
    SMOKE ? " (SMOKE: 5 requests, figures meaningless)" : ""
  }\n`,
);
console.log(
  `real etcd + kube-apiserver on loopback; one v1beta1 DGD (prefill + decode, Ready); per request prefill 1 ` +
    `(unchanged) and decode alternating 2/3, blocking=false; ${PLAN.warmup} warm-up + ${PLAN.n} requests per ` +
    `target, 1 caller; wall ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
);
console.log(report(ours!, peer, peerError, rawMs));
await writeRows(flags.rows, scaleRows(ours!, peer, peerError, rawMs));
if (flags.json) {
  await Deno.writeTextFile(
    flags.json,
    JSON.stringify({ plan: PLAN, smoke: SMOKE, ours, peer, peerError, rawMs }, null, 2),
  );
  console.error(`kube bench: raw figures in ${flags.json}; logs and audit log in ${scratch}`);
}
