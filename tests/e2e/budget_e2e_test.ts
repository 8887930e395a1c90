/**
 * The GPU budget end to end: several DGDs of both API versions on a real kube-apiserver, our
 * service as a process with --max/--min-total-gpus, and upstream's planner client
 * (GlobalPlannerConnector, ai-dynamo 1.6.1) sending real requests.
 *
 * Fleet (POD_NAMESPACE "pool"): alpha (v1alpha1) prefill 2×2 GPUs + decode 2×1 = 6;
 * beta (v1beta1) prefill 1×1 + decode 2×2 = 5; total 11; band [8, 12].
 */
import assert from "node:assert/strict";
import {
  createDgd,
  DGD_PATH,
  readDgd,
  replicasOf,
  v1alpha1Dgd,
  v1beta1Dgd,
} from "../support/dgd_fixtures.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { installRbac } from "../support/rbac.ts";
import { assertVenv, callConnector, runDriver } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const POOL = "pool";
const GP_NS = "gp-budget";
const SA_NS = "dynamo-system";

const plan = (env: Record<string, string>, dgd: string, targets: { prefill?: number; decode?: number }) =>
  callConnector(env, { gpNamespace: GP_NS, caller: `${POOL}-${dgd}`, dgd, k8sNamespace: POOL, ...targets });

/** Waits until the service's DGD cache (as its health endpoint reports it) holds `count` DGDs. */
async function watchedDgds(env: Record<string, string>, count: number) {
  let seen: unknown;
  for (let i = 0; i < 30; i++) {
    const result = await runDriver("call_endpoint.py", [
      "--endpoint",
      `${GP_NS}.GlobalPlanner.health`,
      "--payload",
      "{}",
    ], env);
    const item = result.lines.find((l) => "item" in l)?.item as { dgd_watch?: { dgds?: number } } | undefined;
    seen = item?.dgd_watch?.dgds;
    if (seen === count) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the DGD cache never held ${count} DGDs (last seen: ${seen})`);
}

Deno.test({
  name: "GPU budget end to end: ceiling, pairing with a fresh intent, floor, fail closed",
  async fn(t) {
    await assertVenv();
    let cluster: KubeCluster | undefined;
    let service: ServiceProcess | undefined;
    const temp: string[] = [];
    try {
      cluster = await startKubeCluster();
      await cluster.createNamespace(POOL);
      const token = await installRbac(cluster);
      const saDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-budget-sa-" });
      const kvDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-budget-kv-" });
      temp.push(saDir, kvDir);
      await cluster.writeServiceAccountDir(
        saDir,
        SA_NS,
        token,
      );
      await createDgd(
        cluster,
        v1alpha1Dgd("alpha", POOL, {
          P: { role: "prefill", replicas: 2, gpu: 2 },
          D: { role: "decode", replicas: 2, gpu: 1 },
        }),
      );
      await createDgd(
        cluster,
        v1beta1Dgd("beta", POOL, {
          p: { role: "prefill", replicas: 1, gpu: 1 },
          d: { role: "decode", replicas: 2, gpu: 2 },
        }),
      );

      const discovery = { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: kvDir };
      service = await startService({
        args: [
          "--service-account-dir",
          saDir,
          "--max-total-gpus",
          "12",
          "--min-total-gpus",
          "8",
          "--intent-cache-ttl-seconds",
          "300",
        ],
        env: { ...discovery, ...cluster.inClusterEnv(), DYN_NAMESPACE: GP_NS, POD_NAMESPACE: POOL },
      });
      await service.waitForLog((l) => l.message === "DGD cache synced");

      await t.step("within the ceiling (11 → 12): success", async () => {
        const outcome = await plan(discovery, "alpha", { decode: 3 });
        assert.equal(outcome.response?.status, "success", JSON.stringify(outcome));
        assert.deepEqual(outcome.response?.current_replicas, { prefill: 2, decode: 3 });
        assert.equal(replicasOf(await readDgd(cluster!, "v1alpha1", POOL, "alpha")).D, 3);
      });

      await t.step(
        "over the ceiling (12 → 14): rejected with upstream's wording, nothing written, planner continues",
        async () => {
          const outcome = await plan(discovery, "alpha", { prefill: 3 });
          assert.equal(outcome.raised, null, "a rejection must not raise in the planner");
          assert.deepEqual(outcome.response, {
            status: "rejected",
            message: "GPU budget breach: total 14 exceeds ceiling (12); no feasible pair packing",
            current_replicas: {},
          });
          assert.equal(replicasOf(await readDgd(cluster!, "v1alpha1", POOL, "alpha")).P, 2);
        },
      );

      await t.step(
        "a scale-down pairs with the fresh rejected intent: both applied, scale-down first",
        async () => {
          // beta decode 2 → 1 frees 2 GPUs; alpha's intent (prefill 3, +2) is fresh and opposite.
          const outcome = await plan(discovery, "beta", { decode: 1 });
          assert.equal(outcome.response?.status, "success", JSON.stringify(outcome));
          assert.equal(replicasOf(await readDgd(cluster!, "v1beta1", POOL, "beta")).d, 1);
          assert.equal(
            replicasOf(await readDgd(cluster!, "v1alpha1", POOL, "alpha")).P,
            3,
            "partner not applied",
          );
          const decision = await service!.waitForLog((l) =>
            l.message === "budget decision" && l.participant === `${POOL}/beta`
          );
          const writes = decision.writes as { participant: string; gpu_delta: number }[];
          assert.deepEqual(writes.map((w) => w.participant), [`${POOL}/beta`, `${POOL}/alpha`]);
          assert.deepEqual(writes.map((w) => w.gpu_delta), [-2, 2]);
        },
      );

      await t.step("below the floor: rejected", async () => {
        // total is 12 (alpha 6+3, beta 1+2): alpha decode 3 → 0 would leave 9 ≥ 8 → ok; then beta decode 1 → 0 → 7 < 8.
        assert.equal((await plan(discovery, "alpha", { decode: 0 })).response?.status, "success");
        const outcome = await plan(discovery, "beta", { decode: 0 });
        assert.deepEqual(outcome.response, {
          status: "rejected",
          message: "GPU budget breach: total 7 below floor (8); no feasible pair packing",
          current_replicas: {},
        });
      });

      await t.step("a pool whose GPU count cannot be read fails the decision closed, naming it", async () => {
        const broken = v1beta1Dgd("gamma", POOL, { g: { role: "prefill", replicas: 1 } });
        delete (broken.spec.components[0].podTemplate.spec.containers[0] as { resources?: unknown })
          .resources;
        await createDgd(cluster!, broken);
        await watchedDgds(discovery, 3); // the watch has delivered it
        const outcome = await plan(discovery, "alpha", { decode: 1 });
        assert.equal(outcome.response?.status, "error");
        assert.match(
          outcome.response!.message,
          /^GPU budget cannot be checked: DynamoGraphDeployment 'pool\/gamma' component 'g': /,
        );
        assert.equal(replicasOf(await readDgd(cluster!, "v1alpha1", POOL, "alpha")).D, 0, "nothing written");
        await cluster!.request("DELETE", DGD_PATH("v1beta1", POOL, "gamma"));
        await watchedDgds(discovery, 2);
        assert.equal((await plan(discovery, "alpha", { decode: 1 })).response?.status, "success");
      });

      await t.step("health reports the DGD watch cache", async () => {
        const result = await runDriver("call_endpoint.py", [
          "--endpoint",
          `${GP_NS}.GlobalPlanner.health`,
          "--payload",
          "{}",
        ], discovery);
        const item = result.lines.find((l) => "item" in l)?.item as Record<string, unknown>;
        assert.equal(item.status, "healthy");
        const watch = item.dgd_watch as Record<string, unknown>;
        assert.equal(watch.synced, true);
        assert.equal(watch.watching, true);
        assert.equal(watch.dgds, 2);
      });
    } finally {
      await service?.stop("SIGTERM");
      await cluster?.stop();
      for (const dir of temp) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
