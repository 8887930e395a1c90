/**
 * Our opt-in policies WITH a GPU budget, on a real kube-apiserver (RBAC on, deploy/rbac.yaml's
 * ServiceAccount): a paused requester, a paused partner left alone, a request clamped into its
 * band before arbitration, the stale guard, identical retries, a dry run with partners that
 * persists nothing, and the Events (budget verdict included) read back from the API server.
 * The second test runs the service as a process with upstream's planner connector
 * (ai-dynamo 1.6.1 `GlobalPlannerConnector`) as the caller.
 *
 * Fleet (namespace "bpool", the budget's POD_NAMESPACE): alpha (v1alpha1) prefill 2×2 GPUs +
 * decode 2×1 = 6; beta (v1beta1) prefill 1×1 + decode 2×2 = 5; total 11; ceiling 12.
 */
import assert from "node:assert/strict";
import type { KubeConnector, PolicyWiring } from "../../src/kube/mod.ts";
import type { DgdView } from "../../src/kube/dgd.ts";
import { createLogger } from "../../src/ops/log.ts";
import { BudgetPlanner } from "../../src/service/budget_planner.ts";
import type { ScaleResponse } from "../../src/service/contract.ts";
import { startBudgetService } from "../support/budget_service.ts";
import { createAlphaBetaFleet, DGD_PATH, readDgd, replicasOf } from "../support/dgd_fixtures.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { waitFor } from "../support/ports.ts";
import { decode, eventsOn, policyConnector, prefill, scaleThrough } from "../support/policy_harness.ts";
import { installRbac } from "../support/rbac.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const POOL = "bpool";
const P = "globalplanner.dynamo.example/";
const MAX = 12;
const logger = createLogger({ level: "error", sink: () => {} });
const VERSION = { alpha: "v1alpha1", beta: "v1beta1" } as const;
type Name = keyof typeof VERSION;

/** The planner as src/app.ts wires it over the connector. */
function planner(
  kube: KubeConnector,
  policy: { rejectStale: boolean; dryRun: boolean },
): BudgetPlanner<DgdView> {
  return new BudgetPlanner({
    port: kube.budgetPort!,
    bounds: { max: MAX, min: -1 },
    intentTtlSeconds: 300,
    logger,
    rejectStale: policy.rejectStale,
    dryRun: policy.dryRun,
    events: kube.events,
  });
}

const connector = (cluster: KubeCluster, token: string, policy: PolicyWiring): Promise<KubeConnector> =>
  policyConnector(cluster, token, policy, { podNamespace: POOL, managedNamespaces: null });
const scale = (
  gp: BudgetPlanner<DgdView>,
  request: Record<string, unknown>,
  dryRun = false,
): Promise<ScaleResponse> => scaleThrough(gp, POOL, request, dryRun);

/** Sets annotations (null removes one) and waits until every watch cache in `kubes` shows them. */
async function annotate(
  cluster: KubeCluster,
  kubes: KubeConnector[],
  name: Name,
  annotations: Record<string, string | null>,
) {
  const r = await cluster.request("PATCH", DGD_PATH(VERSION[name], POOL, name), {
    metadata: { annotations },
  });
  assert.ok(r.ok, r.text);
  const rv = r.json.metadata.resourceVersion;
  for (const kube of kubes) {
    await waitFor(
      () => kube.cache!.get(POOL, name)?.resourceVersion === rv,
      `the budget's DGD cache sees ${name} at resourceVersion ${rv}`,
    );
  }
}

// deno-lint-ignore no-explicit-any -- API objects
const eventsOf = (cluster: KubeCluster, name: string, instance?: string): Promise<any[]> =>
  eventsOn(cluster, POOL, name, instance);

/** Waits until `kube`'s watch cache shows the DGD as the API server has it now. */
async function caughtUp(cluster: KubeCluster, kube: KubeConnector, name: Name) {
  const now = await rv(cluster, name);
  await waitFor(
    () => kube.cache!.get(POOL, name)?.resourceVersion === now,
    `the cache catching up on ${name}`,
  );
}

const rv = async (cluster: KubeCluster, name: Name): Promise<string> =>
  (await readDgd(cluster, VERSION[name], POOL, name)).metadata.resourceVersion;

Deno.test({
  name: "policies with a GPU budget on a real API server: pause, clamp, partners, stale, dry run, Events",
  async fn(t) {
    const cluster = await startKubeCluster();
    const opened: KubeConnector[] = [];
    try {
      await cluster.createNamespace(POOL);
      const token = await installRbac(cluster);
      await createAlphaBetaFleet(cluster, POOL);
      const kube = await connector(cluster, token, {
        rejectStale: true,
        dryRun: false,
        eventsInstance: "gp-0",
      });
      opened.push(kube);
      const dryKube = await connector(cluster, token, {
        rejectStale: true,
        dryRun: true,
        eventsInstance: "gp-dry",
      });
      opened.push(dryKube);
      const gp = planner(kube, { rejectStale: true, dryRun: false });
      const kubes = [kube, dryKube];

      await t.step("a paused requester → rejected (says paused), its replicas, nothing written", async () => {
        await annotate(cluster, kubes, "alpha", { [`${P}paused`]: "true" });
        const before = await rv(cluster, "alpha");
        const response = await scale(gp, { graph_deployment_name: "alpha", target_replicas: decode(3) });
        assert.deepEqual(response, {
          status: "rejected",
          message:
            `Scaling of DynamoGraphDeployment '${POOL}/alpha' is paused (annotation ${P}paused: "true"); ` +
            "nothing was changed",
          current_replicas: { prefill: 2, decode: 2 },
        });
        assert.equal(await rv(cluster, "alpha"), before);
        assert.equal(gp.intents.size, 0, "a paused request records no intent");
        await annotate(cluster, kubes, "alpha", { [`${P}paused`]: null });
      });

      await t.step(
        "clamped into its max before arbitration: decode 5 (14 > 12) clamped to 3 (12) is approved",
        async () => {
          await annotate(cluster, kubes, "alpha", { [`${P}decode-max-replicas`]: "3" });
          const response = await scale(gp, { graph_deployment_name: "alpha", target_replicas: decode(5) });
          assert.deepEqual(response, {
            status: "success",
            message:
              `Scaled alpha successfully; adjusted by policy: decode 5 → 3 (${P}decode-max-replicas 3)`,
            current_replicas: { prefill: 2, decode: 3 },
          });
          assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", POOL, "alpha")).D, 3);
          await annotate(cluster, kubes, "alpha", { [`${P}decode-max-replicas`]: null });
        },
      );

      await t.step("over the ceiling → upstream's breach answer, nothing written (intent kept)", async () => {
        const before = await rv(cluster, "alpha");
        const response = await scale(gp, { graph_deployment_name: "alpha", target_replicas: prefill(3) });
        assert.deepEqual(response, {
          status: "rejected",
          message: "GPU budget breach: total 14 exceeds ceiling (12); no feasible pair packing",
          current_replicas: {},
        });
        assert.equal(await rv(cluster, "alpha"), before);
        assert.equal(gp.intents.get(`${POOL}/alpha/prefill`)?.lastDesired, 3);
      });

      await t.step("a paused partner is not moved by a request that would pair with it", async () => {
        await annotate(cluster, kubes, "alpha", { [`${P}paused`]: "true" });
        const before = await rv(cluster, "alpha");
        // beta decode 2 → 1: −2 → 10; alpha's fresh intent (prefill 3, +2) would land on 12.
        const response = await scale(gp, { graph_deployment_name: "beta", target_replicas: decode(1) });
        assert.deepEqual(response, {
          status: "success",
          message: "Scaled beta successfully",
          current_replicas: { prefill: 1, decode: 1 },
        });
        assert.equal(await rv(cluster, "alpha"), before);
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", POOL, "alpha")).P, 2);
        await annotate(cluster, kubes, "alpha", { [`${P}paused`]: null });
      });

      await t.step(
        "--dry-run: arbitration with a partner, every write dryRun=All, no resourceVersion moves, no intent",
        async () => {
          // The dry connector's cache decides: it must have seen the live planner's writes.
          await caughtUp(cluster, dryKube, "alpha");
          await caughtUp(cluster, dryKube, "beta");
          const dry = planner(dryKube, { rejectStale: true, dryRun: true });
          // The live planner's fresh intents, as a successor inherits them.
          dry.intents.restore(gp.intents.exportFresh(Date.now() / 1000, 300));
          const intents = JSON.stringify([...dry.intents.entries()]);
          const before = { alpha: await rv(cluster, "alpha"), beta: await rv(cluster, "beta") };
          // beta decode 1 → 0: −2 → 8; alpha prefill 2 → 3 (+2) pairs: 10.
          const response = await scale(dry, {
            graph_deployment_name: "beta",
            timestamp: 50,
            target_replicas: decode(0),
          }, true);
          assert.deepEqual(response, {
            status: "success",
            message:
              "[dry-run] Would scale beta: prefill 1 → 1, decode 1 → 0; budget: approved, total 10 → 10 " +
              `GPUs (max 12); would also move ${POOL}/alpha: prefill 2 → 3, decode 3 → 3 (nothing persisted)`,
            current_replicas: { prefill: 1, decode: 0 },
          });
          assert.deepEqual({ alpha: await rv(cluster, "alpha"), beta: await rv(cluster, "beta") }, before);
          const beta = await readDgd(cluster, "v1beta1", POOL, "beta");
          assert.equal(replicasOf(beta).d, 1);
          assert.equal(beta.metadata.annotations?.[`${P}last-request`], undefined);
          assert.equal(JSON.stringify([...dry.intents.entries()]), intents, "a dry run records no intent");
          // Nor does the budget's picture take in what was only a dry run.
          assert.deepEqual(dryKube.budgetPort!.state(`${POOL}/beta`)?.replicas, { prefill: 1, decode: 1 });
          assert.deepEqual(dryKube.budgetPort!.state(`${POOL}/alpha`)?.replicas, { prefill: 2, decode: 3 });
          // A rejected dry run leaves no intent either.
          const over = await scale(dry, { graph_deployment_name: "beta", target_replicas: prefill(4) }, true);
          assert.equal(over.status, "rejected");
          assert.equal(
            over.message,
            "[dry-run] GPU budget breach: total 13 exceeds ceiling (12); no feasible pair packing",
          );
          assert.equal(dry.intents.get(`${POOL}/beta/prefill`), undefined);
          await dryKube.events!.flush();
          assert.deepEqual(await eventsOf(cluster, "beta", "gp-dry"), []);
          assert.deepEqual(await eventsOf(cluster, "alpha", "gp-dry"), []);
        },
      );

      await t.step("for real: the partner is moved, scale-down first", async () => {
        const response = await scale(gp, { graph_deployment_name: "beta", target_replicas: decode(0) });
        assert.deepEqual(response, {
          status: "success",
          message: "Scaled beta successfully",
          current_replicas: { prefill: 1, decode: 0 },
        });
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", POOL, "alpha")).P, 3);
      });

      await t.step(
        "--reject-stale with a budget: stale rejected, an identical retry not written twice",
        async () => {
          // Total 10: beta prefill 1 → 2 is +1 → 11.
          const first = await scale(gp, {
            graph_deployment_name: "beta",
            timestamp: 100.5,
            target_replicas: prefill(2),
          });
          assert.deepEqual(first, {
            status: "success",
            message: "Scaled beta successfully",
            current_replicas: { prefill: 2, decode: 0 },
          });
          const written = await readDgd(cluster, "v1beta1", POOL, "beta");
          assert.deepEqual(JSON.parse(written.metadata.annotations[`${P}last-request`]), {
            timestamp: 100.5,
            caller: "c",
            targets: { prefill: 2 },
          });
          const stale = await scale(gp, {
            graph_deployment_name: "beta",
            timestamp: 100.4,
            target_replicas: prefill(1),
          });
          assert.deepEqual(stale, {
            status: "rejected",
            message:
              `Stale scale request for DynamoGraphDeployment '${POOL}/beta': its timestamp 100.4 is not ` +
              "newer than 100.5, the last request applied (from caller 'c'); nothing was changed",
            current_replicas: { prefill: 2, decode: 0 },
          });
          const calls = kube.client.calls;
          assert.deepEqual(
            await scale(gp, { graph_deployment_name: "beta", timestamp: 100.5, target_replicas: prefill(2) }),
            first,
          );
          assert.equal(kube.client.calls, calls, "the retry is answered from memory");
          // A restarted planner finds the state on the DGD: still not written twice.
          const restarted = planner(kube, { rejectStale: true, dryRun: false });
          const retry = await scale(restarted, {
            graph_deployment_name: "beta",
            timestamp: 100.5,
            target_replicas: prefill(2),
          });
          assert.deepEqual(retry, {
            status: "success",
            message:
              "Scaled beta successfully (a retry of the request applied at timestamp 100.5; nothing written again)",
            current_replicas: { prefill: 2, decode: 0 },
          });
          assert.equal(await rv(cluster, "beta"), written.metadata.resourceVersion);
        },
      );

      await t.step("Events read back from the API server carry the budget verdict", async () => {
        await kube.events!.flush();
        const alpha = await eventsOf(cluster, "alpha", "gp-0");
        const beta = await eventsOf(cluster, "beta", "gp-0");
        const notes = (items: typeof alpha, reason: string) =>
          items.filter((e) => e.reason === reason).map((e) => e.note);
        assert.deepEqual(notes(alpha, "Paused"), [
          `caller c: decode → 3 refused: Scaling of DynamoGraphDeployment '${POOL}/alpha' is paused ` +
          `(annotation ${P}paused: "true"); nothing was changed; budget: not consulted`,
        ]);
        assert.deepEqual(notes(alpha, "Clamped"), [
          `caller c: prefill 2 → 2, decode 2 → 3; adjusted by policy: decode 5 → 3 (${P}decode-max-replicas 3); ` +
          "budget: approved, total 11 → 12 GPUs (max 12)",
        ]);
        assert.deepEqual(notes(alpha, "ScaleRejected"), [
          "caller c: prefill → 3 refused; budget: rejected: GPU budget breach: total 14 exceeds ceiling (12); " +
          "no feasible pair packing",
        ]);
        assert.equal(alpha.find((e) => e.reason === "ScaleRejected").type, "Warning");
        assert.deepEqual(notes(alpha, "Scaled"), [
          `moved by the GPU budget for the request of caller c on ${POOL}/beta: prefill 2 → 3, decode 3 → 3; ` +
          "budget: approved, total 10 → 10 GPUs (max 12)",
        ]);
        assert.deepEqual(notes(beta, "Scaled"), [
          "caller c: prefill 1 → 1, decode 2 → 1; budget: approved, total 12 → 10 GPUs (max 12)",
          "caller c: prefill 1 → 1, decode 1 → 0; budget: approved, total 10 → 10 GPUs (max 12)",
          "caller c: prefill 1 → 2, decode 0 → 0; budget: approved, total 10 → 11 GPUs (max 12)",
        ]);
        assert.match(
          notes(beta, "Stale")[0],
          /^caller c: prefill → 1 refused: Stale scale request .*; budget: not consulted$/,
        );
        const dgd = await readDgd(cluster, "v1alpha1", POOL, "alpha");
        assert.equal(alpha[0].regarding.uid, dgd.metadata.uid);
      });
    } finally {
      for (const kube of opened) await kube.close();
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "upstream GlobalPlannerConnector with a GPU budget, --reject-stale and --record-events",
  async fn(t) {
    await using budget = await startBudgetService({
      pool: POOL,
      gpNamespace: "gp-policy-budget",
      args: ["--max-total-gpus", String(MAX), "--reject-stale", "--record-events"],
      seed: async (cluster) => {
        await createAlphaBetaFleet(cluster, POOL);
        const r = await cluster.request("PATCH", DGD_PATH("v1alpha1", POOL, "alpha"), {
          metadata: { annotations: { [`${P}decode-max-replicas`]: "3" } },
        });
        assert.ok(r.ok, r.text);
      },
    });
    const { cluster, service, plan } = budget;
    await t.step(
      "a request clamped into the band is approved; the connector's timestamp is kept",
      async () => {
        const outcome = await plan("alpha", { decode: 5 });
        assert.equal(outcome.raised, null, JSON.stringify(outcome));
        assert.deepEqual(outcome.response, {
          status: "success",
          message: `Scaled alpha successfully; adjusted by policy: decode 5 → 3 (${P}decode-max-replicas 3)`,
          current_replicas: { prefill: 2, decode: 3 },
        });
        const dgd = await readDgd(cluster, "v1alpha1", POOL, "alpha");
        assert.equal(replicasOf(dgd).D, 3);
        const last = JSON.parse(dgd.metadata.annotations[`${P}last-request`]);
        assert.equal(last.timestamp, outcome.request?.timestamp);
        assert.equal(last.caller, `${POOL}-alpha`);
      },
    );

    await t.step("a breach is rejected without raising, and leaves a ScaleRejected Event", async () => {
      const outcome = await plan("beta", { prefill: 3 });
      assert.equal(outcome.raised, null, "a rejection must not raise in the planner");
      assert.deepEqual(outcome.response, {
        status: "rejected",
        message: "GPU budget breach: total 14 exceeds ceiling (12); no feasible pair packing",
        current_replicas: {},
      });
    });

    await t.step("Events with the budget verdict, read back from the API server", async () => {
      // Events are written after the answer, off the request path: wait until the service says so.
      const recorded = (dgd: string) =>
        service.waitForLog((l) => l.message === "Kubernetes Event recorded" && l.dgd === dgd);
      await recorded("alpha");
      await recorded("beta");
      const alpha = await eventsOf(cluster, "alpha");
      const beta = await eventsOf(cluster, "beta");
      assert.deepEqual(alpha.map((e) => [e.reason, e.note]), [[
        "Clamped",
        `caller ${POOL}-alpha: prefill 2 → 2, decode 2 → 3; adjusted by policy: decode 5 → 3 ` +
        `(${P}decode-max-replicas 3); budget: approved, total 11 → 12 GPUs (max 12)`,
      ]]);
      assert.deepEqual(beta.map((e) => [e.reason, e.type, e.note]), [[
        "ScaleRejected",
        "Warning",
        `caller ${POOL}-beta: prefill → 3 refused; budget: rejected: GPU budget breach: total 14 exceeds ` +
        "ceiling (12); no feasible pair packing",
      ]]);
    });
  },
});
