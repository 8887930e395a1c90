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
  createAlphaBetaFleet,
  createDgd,
  DGD_PATH,
  readDgd,
  replicasOf,
  v1beta1Dgd,
} from "../support/dgd_fixtures.ts";
import { startBudgetService } from "../support/budget_service.ts";
import { runDriver } from "../support/python.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const POOL = "pool";
const GP_NS = "gp-budget";

Deno.test({
  name: "GPU budget end to end: ceiling, pairing with a fresh intent, floor, fail closed",
  async fn(t) {
    await using budget = await startBudgetService({
      pool: POOL,
      gpNamespace: GP_NS,
      args: ["--max-total-gpus", "12", "--min-total-gpus", "8", "--intent-cache-ttl-seconds", "300"],
      seed: (cluster) => createAlphaBetaFleet(cluster, POOL),
    });
    const { cluster, service, discovery, plan } = budget;
    /** Resolves once the service's DGD cache has taken in the watch event of `change` to `name`. */
    const cacheSaw = (change: "added" | "removed", name: string) =>
      service.waitForLog((l) =>
        l.message === `DGD cache: DynamoGraphDeployment ${change}` && l.dgd === `${POOL}/${name}`
      );
    await t.step("within the ceiling (11 → 12): success", async () => {
      const outcome = await plan("alpha", { decode: 3 });
      assert.equal(outcome.response?.status, "success", JSON.stringify(outcome));
      assert.deepEqual(outcome.response?.current_replicas, { prefill: 2, decode: 3 });
      assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", POOL, "alpha")).D, 3);
    });

    await t.step(
      "over the ceiling (12 → 14): rejected with upstream's wording, nothing written, planner continues",
      async () => {
        const outcome = await plan("alpha", { prefill: 3 });
        assert.equal(outcome.raised, null, "a rejection must not raise in the planner");
        assert.deepEqual(outcome.response, {
          status: "rejected",
          message: "GPU budget breach: total 14 exceeds ceiling (12); no feasible pair packing",
          current_replicas: {},
        });
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", POOL, "alpha")).P, 2);
      },
    );

    await t.step(
      "a scale-down pairs with the fresh rejected intent: both applied, scale-down first",
      async () => {
        // beta decode 2 → 1 frees 2 GPUs; alpha's intent (prefill 3, +2) is fresh and opposite.
        const outcome = await plan("beta", { decode: 1 });
        assert.equal(outcome.response?.status, "success", JSON.stringify(outcome));
        assert.equal(replicasOf(await readDgd(cluster, "v1beta1", POOL, "beta")).d, 1);
        assert.equal(
          replicasOf(await readDgd(cluster, "v1alpha1", POOL, "alpha")).P,
          3,
          "partner not applied",
        );
        const decision = await service.waitForLog((l) =>
          l.message === "budget decision" && l.participant === `${POOL}/beta`
        );
        const writes = decision.writes as { participant: string; gpu_delta: number }[];
        assert.deepEqual(writes.map((w) => w.participant), [`${POOL}/beta`, `${POOL}/alpha`]);
        assert.deepEqual(writes.map((w) => w.gpu_delta), [-2, 2]);
      },
    );

    await t.step("below the floor: rejected", async () => {
      // total is 12 (alpha 6+3, beta 1+2): alpha decode 3 → 0 would leave 9 ≥ 8 → ok; then beta decode 1 → 0 → 7 < 8.
      assert.equal((await plan("alpha", { decode: 0 })).response?.status, "success");
      const outcome = await plan("beta", { decode: 0 });
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
      await createDgd(cluster, broken);
      await cacheSaw("added", "gamma");
      const outcome = await plan("alpha", { decode: 1 });
      assert.equal(outcome.response?.status, "error");
      assert.match(
        outcome.response!.message,
        /^GPU budget cannot be checked: DynamoGraphDeployment 'pool\/gamma' component 'g': /,
      );
      assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", POOL, "alpha")).D, 0, "nothing written");
      await cluster.request("DELETE", DGD_PATH("v1beta1", POOL, "gamma"));
      await cacheSaw("removed", "gamma");
      assert.equal((await plan("alpha", { decode: 1 })).response?.status, "success");
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
  },
});
