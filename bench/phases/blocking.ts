/**
 * Blocking phase (issue 14, point 2): how soon after a DGD reports Ready for the written
 * generation the `blocking: true` answer arrives, and whether 16 planners blocking on 16 DGDs at
 * once finish as fast as the slowest single one; ours and upstream's Python Global Planner
 * (ai-dynamo 1.6.1, real Kubernetes path) one after the other on the same cluster and DGDs.
 *
 *   npx -y deno@2.9.6 run -P=test bench/phases/blocking.ts [--smoke] [--json FILE] [--rows FILE]
 *   (BENCH_BLOCKING_UPSTREAM=0 skips upstream; BENCH_BLOCKING_LOG=FILE keeps our service's log;
 *   BENCH_BLOCKING_DELAY_MS=N sets the operator's roll-out time, default 200)
 *
 * Real etcd + kube-apiserver; the bench is the stand-in operator (./_blocking_operator.ts): it
 * watches the DGDs and OPERATOR_DELAY_MS after a new generation shows it writes Ready for it,
 * each DGD on its own; it records when that write is acknowledged. The caller
 * (kube_scale_driver.py, real ai-dynamo-runtime 1.6.1) records the epoch instant each answer
 * arrives; ours logs (debug) the instant its watch showed the DGD Ready. Same machine, same clock.
 * Upstream sleeps 10 s between readiness reads and serializes scales under one lock, so its
 * round counts are small.
 */
import { parseArgs } from "node:util";
import { parseAllDocuments, stringify as yamlStringify } from "yaml";
import { applyManifest, createDgd, v1beta1Dgd } from "../../tests/support/dgd_fixtures.ts";
import { type KubeCluster, REDUCED_DGD_CRD, startKubeCluster } from "../../tests/support/kube_cluster.ts";
import { type ServiceProcess, startService } from "../../tests/support/service.ts";
import { UPSTREAM_RBAC, UPSTREAM_SA } from "../../tests/support/upstream_rbac.ts";
import { type Json, JsonLines as Lines } from "../_json_lines.ts";
import { writeRows } from "../_rows.ts";
import { PYTHON, type Started, startUpstream } from "../_upstream.ts";
import { ReadyOperator } from "./_blocking_operator.ts";
import { measurePatchLimit, type PatchLimit } from "./_blocking_limit.ts";
import { type ReadyWatcher, startReadyWatcher } from "./_ready_watcher.ts";
import { type Answer, blockingReport, type Measured, type Plan } from "./_blocking_report.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const DRIVER = `${ROOT}/tests/interop/py/kube_scale_driver.py`;
const K8S_NS = "bench-block";
const SA_NS = "dynamo-system";
const DGDS = 16;
/**
 * The stand-in operator's roll-out time. 200 ms is far shorter than a real roll-out (pods start in
 * seconds), so the 16-at-once ratio mostly shows the API server's own queueing on this machine;
 * BENCH_BLOCKING_DELAY_MS sets a longer one.
 */
const OPERATOR_DELAY_MS = Number(Deno.env.get("BENCH_BLOCKING_DELAY_MS") ?? 200);
/** What our watch logs (debug) when it shows the DGD Ready for what was written. */
const WATCH_PROBE = "DGD ready for the written replicas";
/** What we log as we answer. */
const ANSWER_PROBE = "scale request";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    smoke: { type: "boolean", default: false },
    json: { type: "string" },
    rows: { type: "string" },
  },
});
const SMOKE = flags.smoke || Deno.env.get("BENCH_SMOKE") === "1";

const PLAN: { ours: Plan; upstream: Plan; limit: { single: number; batches: number } } = SMOKE
  ? {
    ours: { warmup: true, single: 2, batches: 1, width: DGDS },
    upstream: { warmup: false, single: 1, batches: 1, width: 2 },
    limit: { single: 1, batches: 1 },
  }
  : {
    ours: { warmup: true, single: 16, batches: 5, width: DGDS },
    upstream: { warmup: false, single: 2, batches: 1, width: DGDS },
    limit: { single: 8, batches: 5 },
  };

const dgdName = (i: number): string => `block-${String(i).padStart(2, "0")}`;

/** One target: its caller driver, the warm-up, the single rounds, the rounds at once. */
async function measure(
  operator: ReadyOperator,
  endpointNamespace: string,
  kv: string,
  plan: Plan,
  decode: Map<string, number>,
  watcher: ReadyWatcher,
  service?: ServiceProcess,
): Promise<Measured> {
  const out: Measured = { plan, single: [], batches: [] };
  const driver = new Deno.Command(PYTHON, {
    args: [DRIVER, "--endpoint", `${endpointNamespace}.GlobalPlanner.scale_request`, "--caller", "bench"]
      .concat(["--dgd", dgdName(0), "--k8s-namespace", K8S_NS, "--request-timeout", "900"])
      .concat(["--startup-timeout", "120"]),
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
  try {
    await lines.next("ready", 150_000);
    // Per DGD, decode alternates 2/3, so every request writes (a no-op would answer at once).
    const round = async (names: string[]): Promise<Answer[]> => {
      for (const n of names) decode.set(n, decode.get(n) === 2 ? 3 : 2);
      // One planner per DGD, each with its own caller namespace.
      const batch = names.map((dgd) => ({
        dgd,
        caller: `bench-${dgd}`,
        prefill: 1,
        decode: decode.get(dgd),
      }));
      for (const n of names) operator.marks.delete(n);
      const logsFrom = service?.logs.length ?? 0;
      await writer.write(new TextEncoder().encode(JSON.stringify({ batch, blocking: true }) + "\n"));
      const got: Json[] = [];
      for (let i = 0; i < names.length; i++) got.push((await lines.next("result", 900_000)).result as Json);
      await lines.next("batch_done", 10_000);
      // The acknowledgement of a Ready write may reach this process after the answer line did.
      await operator.settle();
      const raw = new Map<string, number>();
      for (const n of names) {
        const generation = operator.marks.get(n)?.generation;
        raw.set(n, generation === undefined ? NaN : await watcher.seen(n, generation));
      }
      const probes = new Map<string, number>();
      const answered = new Map<string, number>();
      // Our log reaches this process through a pipe, possibly after the caller's answer line.
      for (const until = Date.now() + 2_000; service && Date.now() < until;) {
        for (const l of service.logs.slice(logsFrom)) {
          if (l.message === WATCH_PROBE) probes.set(String(l.dgd), Date.parse(String(l.time)));
          if (l.message === ANSWER_PROBE) answered.set(String(l.dgd), Date.parse(String(l.time)));
        }
        if (names.every((n) => answered.has(n))) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      return got.map((r) => {
        const dgd = String(r.dgd);
        const at = Number(r.answer_epoch_ms);
        const mark = operator.marks.get(dgd);
        const acked = mark?.acked ?? NaN;
        const probe = probes.get(dgd) ?? NaN;
        const answer = answered.get(dgd) ?? NaN;
        return {
          dgd,
          ms: Number(r.ms),
          afterReadyMs: at - acked,
          rawAfterReadyMs: (raw.get(dgd) ?? NaN) - acked,
          ...(service
            ? {
              leftAfterReadyMs: answer - acked,
              watchAfterReadyMs: probe - acked,
              answerAfterWatchMs: answer - probe,
              callerAfterAnswerMs: at - answer,
            }
            : {}),
          sentToSeenMs: (mark?.seen ?? NaN) - (at - Number(r.ms)),
          status: String(r.status ?? r.error),
        };
      });
    };
    // Every DGD touched once (the namespace's cache, the connection), so no round pays a first touch.
    if (plan.warmup) {
      await round(Array.from({ length: plan.width }, (_, i) => dgdName(i)));
      await round([dgdName(0)]);
    }
    for (let i = 0; i < plan.single; i++) out.single.push(...await round([dgdName(i % DGDS)]));
    for (let b = 0; b < plan.batches; b++) {
      out.batches.push(await round(Array.from({ length: plan.width }, (_, i) => dgdName(i))));
    }
    await writer.write(new TextEncoder().encode("\n"));
    await lines.next("done", 30_000).catch(() => {});
  } finally {
    await writer.close().catch(() => {});
    try {
      driver.kill("SIGKILL");
    } catch { /* exited */ }
    await driver.status;
  }
  return out;
}

async function main(): Promise<void> {
  const scratch = await Deno.makeTempDir({ prefix: "gp-block-bench-" });
  let cluster: KubeCluster | undefined;
  let service: ServiceProcess | undefined;
  let operator: ReadyOperator | undefined;
  let watcher: ReadyWatcher | undefined;
  let ours: Measured | undefined;
  let upstream: Measured | undefined;
  let limit: PatchLimit | undefined;
  let peer: Started | undefined;
  const started = Date.now();
  try {
    const crd = parseAllDocuments(await Deno.readTextFile(REDUCED_DGD_CRD))
      .map((d) => d.toJS({ maxAliasCount: -1 }))
      .find((o) => o?.kind === "CustomResourceDefinition");
    // v1beta1 stored, so its `status.components` (which upstream reads) is not pruned.
    for (const v of crd.spec.versions) v.storage = v.name === "v1beta1";
    await Deno.writeTextFile(`${scratch}/crd.yaml`, yamlStringify(crd, { aliasDuplicateObjects: false }));
    cluster = await startKubeCluster({ dgdCrd: "none", extraCrdFiles: [`${scratch}/crd.yaml`] });
    await cluster.createNamespace(K8S_NS);
    await cluster.createNamespace(SA_NS);
    await applyManifest(
      cluster,
      parseAllDocuments(await Deno.readTextFile(`${ROOT}/deploy/rbac.yaml`)).map((d) => d.toJSON()),
    );
    await applyManifest(cluster, UPSTREAM_RBAC);
    const token = await cluster.createServiceAccountToken(SA_NS, "global-planner");
    const upstreamToken = await cluster.createServiceAccountToken(SA_NS, UPSTREAM_SA);
    for (let i = 0; i < DGDS; i++) {
      await createDgd(
        cluster,
        v1beta1Dgd(dgdName(i), K8S_NS, {
          prefill: { type: "prefill", replicas: 1 },
          decode: { type: "decode", replicas: 1 },
        }),
      );
    }
    operator = new ReadyOperator(cluster, K8S_NS, OPERATOR_DELAY_MS);
    await operator.synced();
    await operator.settle();
    watcher = await startReadyWatcher(cluster, K8S_NS);
    const decode = new Map<string, number>();

    const spawnPeer = (): Promise<Started> =>
      Deno.env.get("BENCH_BLOCKING_UPSTREAM") === "0"
        ? Promise.reject(new Error("skipped (BENCH_BLOCKING_UPSTREAM=0)"))
        : startUpstream(cluster!, scratch, upstreamToken, {
          k8sNamespace: K8S_NS,
          namespace: "bench-block-peer",
        });
    // Smoke: its Python start-up overlaps ours (smoke figures are meaningless anyway).
    const early = SMOKE ? spawnPeer() : undefined;
    early?.then((p) => peer = p, () => {});

    console.error("blocking bench: ours ...");
    const saDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-block-sa-" });
    await cluster.writeServiceAccountDir(saDir, SA_NS, token);
    const kv = `${scratch}/kv-ours`;
    await Deno.mkdir(kv);
    service = await startService({
      args: ["--service-account-dir", saDir],
      env: {
        // debug: the instant our watch shows Ready (WATCH_PROBE) is read from our log.
        DYN_LOG: "debug",
        DYN_NAMESPACE: "bench-block-ours",
        POD_NAMESPACE: K8S_NS,
        DYN_DISCOVERY_BACKEND: "file",
        DYN_FILE_KV: kv,
        ...cluster.inClusterEnv(),
      },
      readyTimeoutMs: 60_000,
    });
    ours = await measure(operator, "bench-block-ours", kv, PLAN.ours, decode, watcher, service);
    const logTo = Deno.env.get("BENCH_BLOCKING_LOG");
    if (logTo) await Deno.writeTextFile(logTo, service.logs.map((l) => JSON.stringify(l) + "\n").join(""));
    await service.stop("SIGTERM");
    service = undefined;
    await Deno.remove(saDir, { recursive: true }).catch(() => {});

    console.error("blocking bench: the API server alone (raw PATCH) ...");
    const names = Array.from({ length: DGDS }, (_, i) => dgdName(i));
    limit = await measurePatchLimit(cluster, operator, token, K8S_NS, names, decode, PLAN.limit);

    console.error("blocking bench: upstream Python Global Planner ...");
    try {
      peer = await (early ?? spawnPeer());
      upstream = await measure(
        operator,
        peer.namespace,
        `${scratch}/kv-shared-bench-block-peer`,
        PLAN.upstream,
        decode,
        watcher,
      );
    } catch (e) {
      const tail = await Deno.readTextFile(`${scratch}/upstream.stderr`).catch(() => "");
      upstream = {
        plan: PLAN.upstream,
        single: [],
        batches: [],
        error: String(e instanceof Error ? e.message : e),
      };
      console.error(`blocking bench: upstream failed: ${upstream.error}\n${tail.slice(-3000)}`);
    } finally {
      await peer?.stop();
      peer = undefined;
    }
  } finally {
    await peer?.stop();
    await service?.stop("SIGTERM");
    await watcher?.stop().catch(() => {});
    await operator?.stop().catch(() => {});
    await cluster?.stop();
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
  const { markdown, rows } = blockingReport(ours!, upstream!, limit!, {
    smoke: SMOKE,
    dgds: DGDS,
    delayMs: OPERATOR_DELAY_MS,
    wallMs: Date.now() - started,
  });
  console.log(markdown);
  await writeRows(flags.rows, rows);
  if (flags.json) {
    await Deno.writeTextFile(
      flags.json,
      JSON.stringify(
        { plan: ours!.plan, single: ours!.single, batches: ours!.batches, upstream, limit },
        null,
        2,
      ),
    );
  }
}

await main();
