/**
 * Kubernetes rows of the side-by-side benchmark: end-to-end latency of a non-blocking scale that
 * writes one DGD, API calls per request and TLS connections per request, on the real test cluster
 * (etcd + kube-apiserver from tests/support/kube_cluster.ts), for ours and for upstream's Python
 * Global Planner (ai-dynamo 1.6.1, `python -m dynamo.global_planner` WITHOUT --no-operation).
 *
 *   npx -y deno@2.9.6 run -P=test bench/kube_scale.ts            full run (200 requests per target)
 *   npx -y deno@2.9.6 run -P=test bench/kube_scale.ts --smoke    5 requests per target
 *   (`deno task bench` runs it after the no-op phases; `--json FILE` also writes the raw figures)
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
import { parseAllDocuments, stringify as yamlStringify } from "yaml";
import { applyManifest, createDgd, DGD_PATH, v1beta1Dgd } from "../tests/support/dgd_fixtures.ts";
import { type KubeCluster, REDUCED_DGD_CRD, startKubeCluster } from "../tests/support/kube_cluster.ts";
import { type ServiceProcess, startService } from "../tests/support/service.ts";
import { type CountingProxy, startCountingProxy } from "../tests/support/tcp_proxy.ts";
import { type Audit, AUDIT_POLICY, auditCalls } from "./_audit.ts";
import { type Json, JsonLines as Lines } from "./_json_lines.ts";
import { type KubeDiscoveryPhase, runKubeDiscoveryPhase } from "./kube_discovery.ts";
import { UPSTREAM_RBAC, UPSTREAM_SA } from "../tests/support/upstream_rbac.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const PYTHON = `${ROOT}/.cache/venv/bin/python`;
const DRIVER = `${ROOT}/tests/interop/py/kube_scale_driver.py`;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: { smoke: { type: "boolean", default: false }, json: { type: "string" } },
});
const SMOKE = flags.smoke || Deno.env.get("BENCH_SMOKE") === "1";
const PLAN = SMOKE ? { warmup: 2, n: 5 } : { warmup: 2, n: Number(Deno.env.get("BENCH_KUBE_N") ?? 1000) };

const K8S_NS = "bench-kube";
const SA_NS = "dynamo-system";
const DGD = "bench-dgd";
const CALLER = "bench-caller";

// ------------------------------------------------------------------------------ helpers

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.round((p / 100) * (sorted.length - 1)))];
}

/** The bench as operator: spec replicas → status (observedGeneration, Ready, component counts). */
async function reconcile(cluster: KubeCluster): Promise<number> {
  const got = await cluster.request("GET", DGD_PATH("v1beta1", K8S_NS, DGD));
  if (!got.ok) throw new Error(`read DGD: ${got.status} ${got.text}`);
  const dgd = got.json;
  const components: Record<string, Json> = {};
  for (const c of dgd.spec.components as { name: string; replicas?: number }[]) {
    const n = c.replicas ?? 1;
    components[c.name] = {
      componentKind: "Deployment",
      componentName: `${DGD}-${c.name}`,
      gpusPerEngine: 1,
      gpusPerReplica: 1,
      replicas: n,
      updatedReplicas: n,
      readyReplicas: n,
      availableReplicas: n,
    };
  }
  const r = await cluster.request("PATCH", DGD_PATH("v1beta1", K8S_NS, DGD) + "/status", {
    status: {
      state: "successful",
      observedGeneration: dgd.metadata.generation,
      components,
      conditions: [{
        type: "Ready",
        status: "True",
        reason: "all_resources_are_ready",
        message: "ok",
        lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      }],
    },
  });
  if (!r.ok) throw new Error(`status: ${r.status} ${r.text}`);
  return dgd.metadata.generation;
}

async function ourApiCalls(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = /^dynamo_global_planner_kube_api_calls_total(?:\{[^}]*\})?\s+(\S+)/m.exec(text);
  if (!m) throw new Error("no dynamo_global_planner_kube_api_calls_total in /metrics");
  return Number(m[1]);
}

async function stopChild(child: Deno.ChildProcess, graceMs = 15_000): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* exited */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, graceMs);
  await child.status;
  clearTimeout(timer);
}

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

interface Started {
  namespace: string;
  proxy: CountingProxy;
  user: string;
  metricsPort?: number;
  stop(): Promise<void>;
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

async function startOurs(cluster: KubeCluster, scratch: string, token: string): Promise<Started> {
  const proxy = startCountingProxy(cluster.port);
  // Under /tmp: the service's permission set reads only /tmp and the standard SA path.
  const saDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-bench-sa-" });
  await cluster.writeServiceAccountDir(saDir, SA_NS, token);
  const kv = `${scratch}/kv-shared-bench-kube-ours`;
  await Deno.mkdir(kv, { recursive: true });
  let service: ServiceProcess | undefined;
  try {
    service = await startService({
      args: ["--service-account-dir", saDir],
      env: {
        DYN_LOG: "info",
        DYN_NAMESPACE: "bench-kube-ours",
        POD_NAMESPACE: K8S_NS,
        DYN_DISCOVERY_BACKEND: "file",
        DYN_FILE_KV: kv,
        KUBERNETES_SERVICE_HOST: "127.0.0.1",
        KUBERNETES_SERVICE_PORT: String(proxy.port),
        DYN_SYSTEM_PORT: "0",
        DYN_SYSTEM_HOST: "127.0.0.1",
      },
      readyTimeoutMs: 60_000,
    });
    const status = await service.waitForLog((l) => l.message === "system status server listening");
    const connector = await service.waitForLog((l) => l.message === "Kubernetes connector ready");
    if (connector.server !== `https://127.0.0.1:${proxy.port}`) {
      throw new Error(`ours talks to ${connector.server}, not to the counting proxy`);
    }
    const s = service;
    return {
      namespace: "bench-kube-ours",
      proxy,
      user: `system:serviceaccount:${SA_NS}:global-planner`,
      metricsPort: Number(status.port),
      async stop() {
        await s.stop("SIGTERM");
        await proxy.close();
        await Deno.remove(saDir, { recursive: true }).catch(() => {});
      },
    };
  } catch (e) {
    await service?.stop("SIGKILL");
    await proxy.close();
    await Deno.remove(saDir, { recursive: true }).catch(() => {});
    throw e;
  }
}

async function startUpstream(cluster: KubeCluster, scratch: string, token: string): Promise<Started> {
  const proxy = startCountingProxy(cluster.port);
  const kubeconfig = `${scratch}/upstream-kubeconfig`;
  await cluster.kubeconfig(kubeconfig, token, K8S_NS);
  const text = await Deno.readTextFile(kubeconfig);
  const direct = `https://127.0.0.1:${cluster.port}`;
  if (!text.includes(direct)) throw new Error(`kubeconfig has no ${direct}`);
  await Deno.writeTextFile(kubeconfig, text.replaceAll(direct, `https://127.0.0.1:${proxy.port}`));
  const kv = `${scratch}/kv-shared-bench-kube-peer`;
  await Deno.mkdir(kv, { recursive: true });
  const child = new Deno.Command(PYTHON, {
    args: ["-m", "dynamo.global_planner"],
    env: {
      DYN_NAMESPACE: "bench-kube-peer",
      POD_NAMESPACE: K8S_NS,
      DYN_DISCOVERY_BACKEND: "file",
      DYN_REQUEST_PLANE: "tcp",
      DYN_FILE_KV: kv,
      DYN_TCP_RPC_HOST: "127.0.0.1",
      KUBECONFIG: kubeconfig,
      HOME: scratch,
      PATH: "/usr/bin:/bin",
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs = Promise.all([
    Deno.open(`${scratch}/upstream.stdout`, { write: true, create: true }).then((f) =>
      child.stdout.pipeTo(f.writable)
    ),
    Deno.open(`${scratch}/upstream.stderr`, { write: true, create: true }).then((f) =>
      child.stderr.pipeTo(f.writable)
    ),
  ]).catch(() => {});
  return {
    namespace: "bench-kube-peer",
    proxy,
    user: `system:serviceaccount:${SA_NS}:${UPSTREAM_SA}`,
    async stop() {
      await stopChild(child);
      await logs;
      await proxy.close();
    },
  };
}

/**
 * The physical limit of a non-blocking scale: this process sends the one PATCH such a scale needs
 * (the same JSON patch of the same DGD, as the same ServiceAccount, through a counting proxy as
 * the targets' traffic) on a warm connection, and times its round trip. Same steps, same
 * operator turn between two requests (outside the timed window).
 */
async function runRawPatch(cluster: KubeCluster, token: string): Promise<number[]> {
  const proxy = startCountingProxy(cluster.port);
  const http = Deno.createHttpClient({ caCerts: [cluster.caPem] });
  const url = `https://127.0.0.1:${proxy.port}${DGD_PATH("v1beta1", K8S_NS, DGD)}`;
  const got = await cluster.request("GET", DGD_PATH("v1beta1", K8S_NS, DGD));
  const index = (got.json.spec.components as { name: string }[]).findIndex((c) => c.name === "decode");
  let decode = 2;
  const patch = async (): Promise<number> => {
    const body = JSON.stringify([
      { op: "test", path: `/spec/components/${index}/name`, value: "decode" },
      { op: "add", path: `/spec/components/${index}/replicas`, value: decode },
    ]);
    decode = decode === 2 ? 3 : 2;
    const t0 = performance.now();
    const response = await fetch(url, {
      method: "PATCH",
      client: http,
      headers: {
        accept: "application/json",
        authorization: `Bearer ${token}`,
        "content-type": "application/json-patch+json",
      },
      body,
    });
    await response.arrayBuffer();
    const ms = performance.now() - t0;
    if (!response.ok) throw new Error(`raw PATCH: HTTP ${response.status}`);
    await reconcile(cluster);
    return ms;
  };
  const latMs: number[] = [];
  try {
    for (let i = 0; i < PLAN.warmup; i++) await patch();
    for (let i = 0; i < PLAN.n; i++) latMs.push(await patch());
  } finally {
    http.close();
    await proxy.close();
  }
  return latMs.sort((a, b) => a - b);
}

// ------------------------------------------------------------------------------ report

function fmt(x: number | undefined, digits = 2): string {
  if (x === undefined || !Number.isFinite(x)) return "—";
  return x >= 100 ? x.toFixed(0) : x.toFixed(digits);
}

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

// ------------------------------------------------------------------------------ main

for (const path of [PYTHON, DRIVER]) {
  try {
    await Deno.stat(path);
  } catch {
    console.error(`kube bench: ${path} is missing (run scripts/setup_python_env.sh)`);
    Deno.exit(1);
  }
}

const started = Date.now();
const scratch = await Deno.makeTempDir({ prefix: "gp-kube-bench-" });
await Deno.writeTextFile(`${scratch}/audit-policy.yaml`, AUDIT_POLICY);
const audit = `${scratch}/audit.log`;
let cluster: KubeCluster | undefined;
let ours: Result | undefined;
let peer: Result | undefined;
let peerError: string | undefined;
let discovery: KubeDiscoveryPhase | undefined;
let rawMs: number[] = [];
try {
  console.error("kube bench: starting etcd + kube-apiserver ...");
  // The project's reduced DGD CRD stores v1alpha1, whose status schema has `services`, so a v1beta1
  // `status.components` (which upstream reads) would be pruned. Same CRD, v1beta1 as storage version.
  const crd = parseAllDocuments(await Deno.readTextFile(REDUCED_DGD_CRD))
    .map((d) => d.toJS({ maxAliasCount: -1 }))
    .find((o) => o?.kind === "CustomResourceDefinition");
  for (const v of crd.spec.versions) v.storage = v.name === "v1beta1";
  await Deno.writeTextFile(
    `${scratch}/dgd-crd-v1beta1-storage.yaml`,
    yamlStringify(crd, { aliasDuplicateObjects: false }),
  );
  cluster = await startKubeCluster({
    dgdCrd: "none",
    extraCrdFiles: [`${scratch}/dgd-crd-v1beta1-storage.yaml`],
    extraApiserverArgs: [`--audit-policy-file=${scratch}/audit-policy.yaml`, `--audit-log-path=${audit}`],
  });
  await cluster.createNamespace(K8S_NS);
  await cluster.createNamespace(SA_NS);
  await applyManifest(
    cluster,
    parseAllDocuments(await Deno.readTextFile(`${ROOT}/deploy/rbac.yaml`)).map((d) => d.toJSON()),
  );
  await applyManifest(cluster, UPSTREAM_RBAC);
  const ourToken = await cluster.createServiceAccountToken(SA_NS, "global-planner");
  const upstreamToken = await cluster.createServiceAccountToken(SA_NS, UPSTREAM_SA);
  await createDgd(
    cluster,
    v1beta1Dgd(DGD, K8S_NS, {
      prefill: { type: "prefill", replicas: 1 },
      decode: { type: "decode", replicas: 1 },
    }),
  );
  await reconcile(cluster);

  console.error("kube bench: ours ...");
  ours = await runTarget(cluster, audit, "ours", scratch, () => startOurs(cluster!, scratch, ourToken));
  console.error(`kube bench:   p50 ${fmt(pct(ours.latMs, 50))} ms, ${JSON.stringify(ours.statuses)}`);
  console.error("kube bench: upstream Python Global Planner ...");
  try {
    peer = await runTarget(
      cluster,
      audit,
      "Python GP",
      scratch,
      () => startUpstream(cluster!, scratch, upstreamToken),
    );
    console.error(`kube bench:   p50 ${fmt(pct(peer.latMs, 50))} ms, ${JSON.stringify(peer.statuses)}`);
  } catch (e) {
    peerError = String(e instanceof Error ? e.message : e);
    const tail = await Deno.readTextFile(`${scratch}/upstream.stderr`).catch(() => "");
    console.error(`kube bench: upstream failed: ${peerError}\n${tail.slice(-3000)}`);
  }
  // Last, so the audit log's per-user counts of the targets (same ServiceAccount) stay clean.
  console.error("kube bench: raw PATCH limit ...");
  rawMs = await runRawPatch(cluster, ourToken);
  console.error(`kube bench:   p50 ${fmt(pct(rawMs, 50))} ms`);
  // The Kubernetes-discovery rows (bench/kube_discovery.ts) share this cluster: one start fewer.
  discovery = await runKubeDiscoveryPhase(cluster, scratch, SMOKE);
} finally {
  await cluster?.stop();
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
console.log(discovery!.markdown);
if (flags.json) {
  await Deno.writeTextFile(
    flags.json,
    JSON.stringify({ plan: PLAN, smoke: SMOKE, ours, peer, peerError, rawMs, discovery }, null, 2),
  );
  console.error(`kube bench: raw figures in ${flags.json}; logs and audit log in ${scratch}`);
}
