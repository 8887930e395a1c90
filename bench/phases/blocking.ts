/**
 * Blocking phase (issue 14, point 2): how soon after a DGD reports Ready for the written
 * generation the `blocking: true` answer arrives, and whether 16 planners blocking on 16 DGDs at
 * once finish as fast as the slowest single one. Ours only for now (see docs/benchmarks.md).
 *
 *   npx -y deno@2.9.6 run -P=test bench/phases/blocking.ts [--smoke] [--json FILE]
 *
 * Real etcd + kube-apiserver; the bench is the stand-in operator: it lists the namespace every
 * 10 ms, and once a DGD's `metadata.generation` is ahead of `status.observedGeneration` it waits
 * OPERATOR_DELAY_MS (a roll-out) and writes Ready for that generation. The instant that status
 * write is acknowledged is recorded; the caller (kube_scale_driver.py, real ai-dynamo-runtime
 * 1.6.1) records the epoch instant each answer arrives. Same machine, same clock.
 */
import { parseArgs } from "node:util";
import { parseAllDocuments, stringify as yamlStringify } from "yaml";
import { applyManifest, createDgd, DGD_PATH, v1beta1Dgd } from "../../tests/support/dgd_fixtures.ts";
import { type KubeCluster, REDUCED_DGD_CRD, startKubeCluster } from "../../tests/support/kube_cluster.ts";
import { type ServiceProcess, startService } from "../../tests/support/service.ts";
import { type Json, JsonLines as Lines } from "../_json_lines.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const PYTHON = `${ROOT}/.cache/venv/bin/python`;
const DRIVER = `${ROOT}/tests/interop/py/kube_scale_driver.py`;
const K8S_NS = "bench-block";
const SA_NS = "dynamo-system";
const DGDS = 16;
const OPERATOR_DELAY_MS = 200;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: { smoke: { type: "boolean", default: false }, json: { type: "string" } },
});
const SMOKE = flags.smoke || Deno.env.get("BENCH_SMOKE") === "1";
/** Rounds: single = one DGD blocking alone (each of the first `single` DGDs), batch = all 16 at once. */
const PLAN = SMOKE ? { single: 2, batches: 1 } : { single: 16, batches: 5 };

const dgdName = (i: number): string => `block-${String(i).padStart(2, "0")}`;

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.round((p / 100) * (s.length - 1)))] : NaN;
}

function fmt(x: number): string {
  return !Number.isFinite(x) ? "—" : x >= 100 ? x.toFixed(0) : x.toFixed(2);
}

function readyStatus(dgd: Json): Json {
  const components: Record<string, Json> = {};
  const spec = dgd.spec as { components: { name: string; replicas?: number }[] };
  for (const c of spec.components) {
    const n = c.replicas ?? 1;
    components[c.name] = {
      componentKind: "Deployment",
      componentName: `${(dgd.metadata as Json).name}-${c.name}`,
      replicas: n,
      updatedReplicas: n,
      readyReplicas: n,
      availableReplicas: n,
    };
  }
  return {
    status: {
      state: "successful",
      observedGeneration: (dgd.metadata as Json).generation,
      components,
      conditions: [{
        type: "Ready",
        status: "True",
        reason: "all_resources_are_ready",
        message: "ok",
        lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      }],
    },
  };
}

/** The stand-in operator: Ready for each written generation, OPERATOR_DELAY_MS after it sees it. */
class Operator {
  /** DGD name → epoch ms at which Ready for the latest generation was acknowledged. */
  readyAt = new Map<string, number>();
  /** DGD name → epoch ms at which the list first showed the new generation. */
  seenAt = new Map<string, number>();
  #pending = new Set<string>();
  #stop = false;
  #loop: Promise<void>;

  constructor(private cluster: KubeCluster) {
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stop) {
      const list = await this.cluster.request("GET", DGD_PATH("v1beta1", K8S_NS));
      for (const dgd of (list.json?.items ?? []) as Json[]) {
        const meta = dgd.metadata as Json;
        const name = String(meta.name);
        const observed = (dgd.status as Json | undefined)?.observedGeneration;
        if (observed === meta.generation || this.#pending.has(name)) continue;
        this.#pending.add(name);
        this.seenAt.set(name, epochMs());
        setTimeout(async () => {
          const r = await this.cluster.request(
            "PATCH",
            DGD_PATH("v1beta1", K8S_NS, name) + "/status",
            readyStatus(dgd),
          );
          if (r.ok) this.readyAt.set(name, epochMs());
          this.#pending.delete(name);
        }, OPERATOR_DELAY_MS);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async settle(): Promise<void> {
    while (this.#pending.size > 0) await new Promise((r) => setTimeout(r, 20));
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#loop;
    await this.settle();
  }
}

interface Answer {
  dgd: string;
  ms: number;
  afterReadyMs: number;
  /** From the caller sending the request to the operator's list showing the written generation. */
  sentToSeenMs?: number;
  status: string;
}

async function main(): Promise<void> {
  const scratch = await Deno.makeTempDir({ prefix: "gp-block-bench-" });
  let cluster: KubeCluster | undefined;
  let service: ServiceProcess | undefined;
  let operator: Operator | undefined;
  let driver: Deno.ChildProcess | undefined;
  const started = Date.now();
  const single: Answer[] = [];
  const batches: Answer[][] = [];
  try {
    const crd = parseAllDocuments(await Deno.readTextFile(REDUCED_DGD_CRD))
      .map((d) => d.toJS({ maxAliasCount: -1 }))
      .find((o) => o?.kind === "CustomResourceDefinition");
    for (const v of crd.spec.versions) v.storage = v.name === "v1beta1";
    await Deno.writeTextFile(`${scratch}/crd.yaml`, yamlStringify(crd, { aliasDuplicateObjects: false }));
    cluster = await startKubeCluster({ dgdCrd: "none", extraCrdFiles: [`${scratch}/crd.yaml`] });
    await cluster.createNamespace(K8S_NS);
    await cluster.createNamespace(SA_NS);
    await applyManifest(
      cluster,
      parseAllDocuments(await Deno.readTextFile(`${ROOT}/deploy/rbac.yaml`)).map((d) => d.toJSON()),
    );
    const token = await cluster.createServiceAccountToken(SA_NS, "global-planner");
    for (let i = 0; i < DGDS; i++) {
      await createDgd(
        cluster,
        v1beta1Dgd(dgdName(i), K8S_NS, {
          prefill: { type: "prefill", replicas: 1 },
          decode: { type: "decode", replicas: 1 },
        }),
      );
    }
    operator = new Operator(cluster);
    await new Promise((r) => setTimeout(r, 500));
    await operator.settle();

    const saDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-block-sa-" });
    await cluster.writeServiceAccountDir(saDir, SA_NS, token);
    const kv = `${scratch}/kv`;
    await Deno.mkdir(kv);
    service = await startService({
      args: ["--service-account-dir", saDir],
      env: {
        DYN_LOG: "info",
        DYN_NAMESPACE: "bench-block-ours",
        POD_NAMESPACE: K8S_NS,
        DYN_DISCOVERY_BACKEND: "file",
        DYN_FILE_KV: kv,
        ...cluster.inClusterEnv(),
      },
      readyTimeoutMs: 60_000,
    });
    driver = new Deno.Command(PYTHON, {
      args: [DRIVER, "--endpoint", "bench-block-ours.GlobalPlanner.scale_request", "--caller", "bench"]
        .concat(["--dgd", dgdName(0), "--k8s-namespace", K8S_NS, "--request-timeout", "120"]),
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
    await lines.next("ready", 120_000);
    // Per DGD, decode alternates 2/3, so every request writes (a no-op would answer at once).
    const decode = new Map<string, number>();
    const round = async (names: string[]): Promise<Answer[]> => {
      for (const n of names) decode.set(n, decode.get(n) === 2 ? 3 : 2);
      const batch = names.map((dgd) => ({ dgd, prefill: 1, decode: decode.get(dgd) }));
      operator!.readyAt.clear();
      operator!.seenAt.clear();
      await writer.write(new TextEncoder().encode(JSON.stringify({ batch, blocking: true }) + "\n"));
      const answers: (Answer & { at: number })[] = [];
      for (let i = 0; i < names.length; i++) {
        const r = (await lines.next("result", 180_000)).result as Json;
        const at = Number(r.answer_epoch_ms);
        answers.push({
          dgd: String(r.dgd),
          ms: Number(r.ms),
          at,
          afterReadyMs: NaN,
          status: String(r.status ?? r.error),
        });
      }
      await lines.next("batch_done", 10_000);
      // The acknowledgement of a Ready write may reach this process after the answer line did.
      await operator!.settle();
      for (const a of answers) {
        a.afterReadyMs = a.at - (operator!.readyAt.get(a.dgd) ?? NaN);
        a.sentToSeenMs = (operator!.seenAt.get(a.dgd) ?? NaN) - (a.at - a.ms);
      }
      return answers;
    };
    await round([dgdName(0)]); // warm-up: the namespace's cache and the connection
    for (let i = 0; i < PLAN.single; i++) single.push(...await round([dgdName(i % DGDS)]));
    for (let b = 0; b < PLAN.batches; b++) {
      batches.push(await round(Array.from({ length: DGDS }, (_, i) => dgdName(i))));
    }
    await writer.write(new TextEncoder().encode("\n"));
    await lines.next("done", 30_000).catch(() => {});
    await writer.close().catch(() => {});
  } finally {
    try {
      driver?.kill("SIGKILL");
    } catch { /* exited */ }
    await driver?.status;
    await service?.stop("SIGTERM");
    await operator?.stop().catch(() => {});
    await cluster?.stop();
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }

  const all = [...single, ...batches.flat()];
  const after = all.map((a) => a.afterReadyMs).filter(Number.isFinite);
  const unmatched = all.length - after.length;
  const slowestSingle = Math.max(...single.map((a) => a.ms));
  const batchWall = batches.map((b) => Math.max(...b.map((a) => a.ms)));
  const ok = all.filter((a) => a.status === "success").length;
  console.log(`## Kubernetes: blocking scale${SMOKE ? " (SMOKE: tiny counts, figures meaningless)" : ""}\n`);
  console.log(
    `ours only; ${DGDS} v1beta1 DGDs; the bench's operator writes Ready ${OPERATOR_DELAY_MS} ms after it sees ` +
      `a new generation; ${PLAN.single} single rounds, ${PLAN.batches} rounds of ${DGDS} at once; wall ${
        ((Date.now() - started) / 1000).toFixed(0)
      } s\n`,
  );
  console.log(
    `| metric | ours |\n|---|---:|\n` +
      `| answer after Ready for the written generation, p50 (ms) | ${fmt(pct(after, 50))} |\n` +
      `| answer after Ready for the written generation, p99 (ms) | ${fmt(pct(after, 99))} |\n` +
      `| answer after Ready, max (ms) | ${fmt(Math.max(...after))} |\n` +
      `| single blocking scale end to end, p50 / slowest (ms) | ${fmt(pct(single.map((a) => a.ms), 50))} / ${
        fmt(slowestSingle)
      } |\n` +
      `| request sent → the operator's list shows the write, p50 single / p50 ${DGDS} at once (ms) | ${
        fmt(pct(single.map((a) => a.sentToSeenMs!), 50))
      } / ${fmt(pct(batches.flat().map((a) => a.sentToSeenMs!), 50))} |\n` +
      `| ${DGDS} at once: slowest of the ${DGDS}, median over rounds (ms) | ${fmt(pct(batchWall, 50))} |\n` +
      `| ${DGDS} at once / slowest single | ${fmt(pct(batchWall, 50) / slowestSingle)}× |\n` +
      `| answered \`success\` | ${ok} of ${all.length} |\n` +
      `| answers without a recorded Ready (not in the after-Ready rows) | ${unmatched} |\n`,
  );
  if (flags.json) {
    await Deno.writeTextFile(flags.json, JSON.stringify({ plan: PLAN, single, batches }, null, 2));
  }
}

await main();
