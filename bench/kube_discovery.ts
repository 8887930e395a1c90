/**
 * Kubernetes-discovery rows of the side-by-side benchmark: ours vs upstream's Python Global
 * Planner (ai-dynamo 1.6.1, `--no-operation`) vs the runtime's echo endpoint, each run with
 * `DYN_DISCOVERY_BACKEND=kubernetes` on the real test cluster (etcd + kube-apiserver) and found
 * by a real ai-dynamo-runtime 1.6.1 caller in kubernetes mode (tests/interop/py/load_driver.py):
 * the caller joins each DynamoWorkerMetadata CR with a ready EndpointSlice entry whose
 * `targetRef.uid` is the writer's POD_UID.
 *
 *   npx -y deno@2.9.6 run -P=test bench/kube_discovery.ts            full run
 *   npx -y deno@2.9.6 run -P=test bench/kube_discovery.ts --smoke    1 start, tiny counts
 *   (`deno task bench` runs it after the other phases; `--json FILE` also writes the raw figures)
 *
 * No controller-manager runs on the test cluster, so the bench plays the EndpointSlice
 * controller: before each start it creates the slice a discovery-labelled Service would get
 * (ready, `targetRef` = the pod name and uid the process is given). kube-apiserver refuses
 * loopback addresses in slices, so the slice carries a documentation-range address; callers
 * route by the address in the CR's transport, which is loopback.
 *
 * A target that exits before it answers (ours, while the kubernetes backend is missing) is
 * reported "not available" with the reason it logged; no figure is printed for it.
 */
import { parseArgs } from "node:util";
import { type KubeCluster, startKubeCluster, upstreamDwmCrd } from "../tests/support/kube_cluster.ts";
import { type Json, JsonLines as Lines } from "./_json_lines.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const PYTHON = `${ROOT}/.cache/venv/bin/python`;
const DRIVER = `${ROOT}/tests/interop/py/load_driver.py`;
const ECHO = `${ROOT}/tests/interop/py/echo_server.py`;

interface Plan {
  starts: number;
  warmup: number;
  n: number;
}

const FULL: Plan = { starts: 3, warmup: 100, n: 2_000 };
const SMOKE_PLAN: Plan = { starts: 1, warmup: 5, n: 20 };

const K8S_NS = "bench-kd";
const DWM_PATH = `/apis/nvidia.com/v1alpha1/namespaces/${K8S_NS}/dynamoworkermetadatas`;
const SLICE_PATH = `/apis/discovery.k8s.io/v1/namespaces/${K8S_NS}/endpointslices`;
/** TEST-NET-1: the API server refuses loopback in slices, and nothing routes by it. */
const SLICE_ADDRESS = "192.0.2.10";

type Key = "ours" | "peer" | "echo";

interface Target {
  key: Key;
  label: string;
  namespace: string;
  scale: string;
  health: string;
  expect: "success" | "echo";
  command(env: Record<string, string>): Deno.Command;
}

const piped = { clearEnv: true, stdin: "null", stdout: "piped", stderr: "piped" } as const;

const TARGETS: Target[] = [
  {
    key: "echo",
    label: "echo limit (Python runtime, handler yields its input)",
    namespace: "bench-kd-echo",
    scale: "bench-kd-echo.Echo.generate",
    health: "bench-kd-echo.Echo.health",
    expect: "echo",
    command: (env) =>
      new Deno.Command(PYTHON, {
        args: [
          ECHO,
          "--endpoint",
          "bench-kd-echo.Echo.generate",
          "--extra-endpoint",
          "bench-kd-echo.Echo.health",
        ]
          .concat(["--mode", "raw"]),
        env: { ...env, DYN_NAMESPACE: "bench-kd-echo" },
        ...piped,
      }),
  },
  {
    key: "peer",
    label: "upstream Python Global Planner (ai-dynamo 1.6.1)",
    namespace: "bench-kd-peer",
    scale: "bench-kd-peer.GlobalPlanner.scale_request",
    health: "bench-kd-peer.GlobalPlanner.health",
    expect: "success",
    command: (env) =>
      new Deno.Command(PYTHON, {
        args: ["-m", "dynamo.global_planner", "--no-operation"],
        env: { ...env, DYN_NAMESPACE: "bench-kd-peer" },
        ...piped,
      }),
  },
  {
    key: "ours",
    label: "ours (deno run -P=service main.ts)",
    namespace: "bench-kd-ours",
    scale: "bench-kd-ours.GlobalPlanner.scale_request",
    health: "bench-kd-ours.GlobalPlanner.health",
    expect: "success",
    command: (env) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-P=service", "--v8-flags=--max-semi-space-size=1,--max-old-space-size=96"]
          .concat(["--quiet", "main.ts", "--no-operation"]),
        cwd: ROOT,
        env: { ...env, DYN_NAMESPACE: "bench-kd-ours" },
        ...piped,
      }),
  },
];

interface Identity {
  name: string;
  uid: string;
}

function identity(prefix: string): Identity {
  const uid = crypto.randomUUID();
  return { name: `${prefix}-${uid.slice(0, 8)}`, uid };
}

/** The slice the EndpointSlice controller would make for a ready pod behind a discovery Service. */
async function createSlice(cluster: KubeCluster, pod: Identity): Promise<void> {
  const r = await cluster.request("POST", SLICE_PATH, {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: pod.name,
      labels: {
        "kubernetes.io/service-name": pod.name,
        "nvidia.com/dynamo-discovery-backend": "kubernetes",
        "nvidia.com/dynamo-discovery-enabled": "true",
      },
    },
    addressType: "IPv4",
    endpoints: [{
      addresses: [SLICE_ADDRESS],
      conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: "Pod", namespace: K8S_NS, name: pod.name, uid: pod.uid },
    }],
    ports: [{ name: "system", port: 9090, protocol: "TCP" }],
  });
  if (!r.ok) throw new Error(`create EndpointSlice ${pod.name}: HTTP ${r.status} ${r.text}`);
}

/** Removes what a pod leaves behind (upstream keeps its CR after SIGTERM; no GC runs here). */
async function removePod(cluster: KubeCluster, pod: Identity): Promise<void> {
  for (const path of [`${SLICE_PATH}/${pod.name}`, `${DWM_PATH}/${pod.name}`]) {
    const r = await cluster.request("DELETE", path);
    if (!r.ok && r.status !== 404) throw new Error(`DELETE ${path}: HTTP ${r.status} ${r.text}`);
  }
}

function epochMs(): number {
  return performance.timeOrigin + performance.now();
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

async function drain(stream: ReadableStream<Uint8Array>, path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  await stream.pipeTo(file.writable).catch(() => {});
}

interface Result {
  startupMs: number[];
  phase?: Json;
  /** Set when the target exited before answering: the reason, from its own log. */
  unavailable?: string;
}

/** A start whose server exits first: the last lines it logged say why. */
class ServerExited extends Error {}

async function runTarget(
  cluster: KubeCluster,
  kubeconfig: string,
  t: Target,
  scratch: string,
  plan: Plan,
): Promise<Result> {
  const result: Result = { startupMs: [] };
  const kube = { DYN_DISCOVERY_BACKEND: "kubernetes", DYN_REQUEST_PLANE: "tcp", KUBECONFIG: kubeconfig };
  for (let trial = 0; trial < plan.starts; trial++) {
    const last = trial === plan.starts - 1;
    const caller = identity(`bench-caller-${t.key}`);
    const pod = identity(`bench-${t.key}`);
    const args = [DRIVER, "--endpoint", t.scale, "--health-endpoint", t.health, "--poll-startup"]
      .concat(["--expect", t.expect, "--startup-timeout", "60", "--deadline", "600"]);
    if (last) args.push("--phases", `1:${plan.n}`, "--warmup", String(plan.warmup));
    const driver = new Deno.Command(PYTHON, {
      args,
      env: {
        ...kube,
        POD_NAME: caller.name,
        POD_UID: caller.uid,
        POD_NAMESPACE: K8S_NS,
        DYN_TCP_RPC_HOST: "127.0.0.1",
        DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1",
        DYN_LOG: "warn",
        PATH: "/usr/bin:/bin",
      },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const lines = new Lines(driver.stdout);
    let server: Deno.ChildProcess | undefined;
    try {
      await lines.next("poller_ready", 60_000);
      await createSlice(cluster, pod);
      const spawnedAt = epochMs();
      server = t.command({
        ...kube,
        POD_NAME: pod.name,
        POD_UID: pod.uid,
        POD_NAMESPACE: K8S_NS,
        DYN_TCP_RPC_HOST: "127.0.0.1",
        PATH: "/usr/bin:/bin",
      }).spawn();
      const log = `${scratch}/${t.key}-${trial}.stderr`;
      drain(server.stdout, `${scratch}/${t.key}-${trial}.stdout`);
      const logged = drain(server.stderr, log);
      const exited = server.status.then(async (s) => {
        await logged;
        const tail = (await Deno.readTextFile(log).catch(() => "")).trim().split("\n").slice(-3).join(" | ");
        throw new ServerExited(`exited with code ${s.code} before answering: ${tail.slice(0, 400)}`);
      });
      const startup = await Promise.race([lines.next("startup", 90_000), exited]);
      result.startupMs.push(Number((startup.startup as Json).both_ok_epoch_ms) - spawnedAt);
      if (last) {
        result.phase = (await Promise.race([lines.next("phase", 600_000), exited])).phase as Json;
        await lines.next("done", 60_000);
      }
      await driver.status;
    } catch (e) {
      if (!(e instanceof ServerExited)) throw e;
      result.unavailable = e.message;
      return result;
    } finally {
      try {
        driver.kill("SIGKILL");
      } catch { /* exited */ }
      await driver.status;
      await lines.closed.catch(() => {});
      if (server) await stopChild(server);
      await removePod(cluster, pod);
    }
  }
  return result;
}

// ------------------------------------------------------------------------------ report

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

function fmt(x: number | undefined, digits = 2): string {
  if (x === undefined || !Number.isFinite(x)) return "—";
  return x >= 100 ? x.toFixed(0) : x.toFixed(digits);
}

function report(r: Record<Key, Result>): string {
  const na = (k: Key) => r[k].unavailable !== undefined;
  const cell = (k: Key, x: number) => na(k) ? "not available" : fmt(x);
  const ratio = (a: Key, b: Key, f: (k: Key) => number) =>
    na(a) || na(b) || !Number.isFinite(f(a) / f(b)) ? "—" : `${fmt(f(a) / f(b))}×`;
  type Row = [string, (k: Key) => number];
  const rows: Row[] = [
    ["spawn → health AND scale_request answered (ms, median)", (k) => median(r[k].startupMs)],
    ["no-op scale_request p50, 1 caller (ms)", (k) => Number(r[k].phase?.p50_ms)],
    ["no-op scale_request p99, 1 caller (ms)", (k) => Number(r[k].phase?.p99_ms)],
    ["failed + lost responses", (k) => Number(r[k].phase?.failed) + Number(r[k].phase?.lost)],
  ];
  let out = "| metric | ours | Python GP | echo limit | ours / Python GP | ours / echo |\n" +
    "|---|---:|---:|---:|---:|---:|\n";
  for (const [name, f] of rows) {
    out +=
      `| ${name} | ${cell("ours", f("ours"))} | ${cell("peer", f("peer"))} | ${cell("echo", f("echo"))} | ` +
      `${ratio("ours", "peer", f)} | ${ratio("ours", "echo", f)} |\n`;
  }
  out += "\nstartup samples (ms): " +
    (["ours", "peer", "echo"] as Key[]).map((k) =>
      `${k} ${na(k) ? "—" : r[k].startupMs.map((x) => x.toFixed(0)).join(", ")}`
    ).join("; ") + "\n";
  for (const k of ["ours", "peer", "echo"] as Key[]) {
    if (na(k)) out += `\n${k}: not available — ${r[k].unavailable}\n`;
  }
  return out;
}

// ------------------------------------------------------------------------------ phase

export interface KubeDiscoveryPhase {
  plan: Plan;
  results: Record<Key, Result>;
  markdown: string;
}

/**
 * Runs the three targets on `cluster` (its DWM CRD is installed here if missing) and returns the
 * report. Full runs go one target after the other; smoke runs start them together, since only
 * "every target answered" counts there. Fails if the Python targets do not answer.
 */
export async function runKubeDiscoveryPhase(
  cluster: KubeCluster,
  scratch: string,
  smoke: boolean,
): Promise<KubeDiscoveryPhase> {
  const started = Date.now();
  const plan = smoke ? SMOKE_PLAN : FULL;
  await cluster.installCrdFile(upstreamDwmCrd());
  await cluster.createNamespace(K8S_NS);
  // In the scratch space under $TMPDIR (/tmp): the service's permission set reads /tmp.
  const kubeconfig = `${scratch}/kd-kubeconfig`;
  await cluster.kubeconfig(kubeconfig, cluster.adminToken, K8S_NS);
  const results = {} as Record<Key, Result>;
  const one = async (t: Target) => {
    console.error(`kube discovery bench: ${t.label} ...`);
    const r = results[t.key] = await runTarget(cluster, kubeconfig, t, scratch, plan);
    console.error(
      r.unavailable
        ? `kube discovery bench:   ${t.key} not available: ${r.unavailable}`
        : `kube discovery bench:   ` +
          `${t.key} startup ${
            r.startupMs.map((x) => x.toFixed(0)).join("/")
          } ms; p50 ${r.phase?.p50_ms} p99 ${r.phase?.p99_ms}`,
    );
  };
  if (smoke) await Promise.all(TARGETS.map(one));
  else for (const t of TARGETS) await one(t);
  for (const k of ["peer", "echo"] as Key[]) {
    if (results[k].unavailable) {
      throw new Error(`kube discovery bench: ${k} did not start: ${results[k].unavailable}`);
    }
  }
  const markdown =
    `## Kubernetes discovery: found through the API server${
      smoke ? " (SMOKE: tiny counts, targets at once, figures meaningless)" : ""
    }\n\n` +
    `real etcd + kube-apiserver on loopback, DYN_DISCOVERY_BACKEND=kubernetes on both sides (DynamoWorkerMetadata ` +
    `CR + ready EndpointSlice by pod uid), TCP request plane; ${plan.starts} start(s) per target, then ` +
    `${plan.warmup} warm-up + ${plan.n} no-op requests, 1 caller; wall ${
      ((Date.now() - started) / 1000).toFixed(0)
    } s\n\n` +
    report(results);
  return { plan, results, markdown };
}

// ------------------------------------------------------------------------------ main

if (import.meta.main) {
  const { values: flags } = parseArgs({
    args: Deno.args,
    options: { smoke: { type: "boolean", default: false }, json: { type: "string" } },
  });
  const smoke = flags.smoke || Deno.env.get("BENCH_SMOKE") === "1";
  for (const path of [PYTHON, DRIVER, ECHO]) {
    try {
      await Deno.stat(path);
    } catch {
      console.error(`kube discovery bench: ${path} is missing (run scripts/setup_python_env.sh)`);
      Deno.exit(1);
    }
  }
  const scratch = await Deno.makeTempDir({ prefix: "gp-kd-bench-" });
  let cluster: KubeCluster | undefined;
  let phase: KubeDiscoveryPhase;
  try {
    console.error("kube discovery bench: starting etcd + kube-apiserver ...");
    cluster = await startKubeCluster({ dgdCrd: "none", dgdsaCrd: false });
    phase = await runKubeDiscoveryPhase(cluster, scratch, smoke);
  } finally {
    await cluster?.stop();
    if (!flags.json) await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
  console.log(phase.markdown);
  if (flags.json) {
    await Deno.writeTextFile(flags.json, JSON.stringify({ smoke, ...phase }, null, 2));
    console.error(`kube discovery bench: raw figures in ${flags.json}; logs in ${scratch}`);
  }
}
