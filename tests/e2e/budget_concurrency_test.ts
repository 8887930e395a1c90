/**
 * Budgeted requests at once, on a real kube-apiserver: decisions overlap the writes in flight
 * (src/service/budget/in_flight.ts), yet the ceiling holds exactly. Eight DGDs (POD_NAMESPACE
 * "pool"), each prefill 1×1 + decode 1×1 GPU → 16; ceiling 19. One real 1.6.1 planner process
 * sends all eight "decode 1 → 2" requests at once: whatever the interleaving, exactly three fit.
 */
import assert from "node:assert/strict";
import { startBudgetService } from "../support/budget_service.ts";
import { createDgd, readDgd, replicasOf, v1beta1Dgd } from "../support/dgd_fixtures.ts";
import { runDriver } from "../support/python.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const POOL = "pool";
const GP_NS = "gp-budget-at-once";
const DGDS = Array.from({ length: 8 }, (_, i) => `dgd-${i}`);
const CEILING = 19;

Deno.test({
  name: "GPU budget: eight requests at once, room for three: exactly three land, the ceiling is met exactly",
  async fn() {
    await using budget = await startBudgetService({
      pool: POOL,
      gpNamespace: GP_NS,
      args: ["--max-total-gpus", String(CEILING)],
      env: { DYN_SYSTEM_PORT: "0", DYN_SYSTEM_HOST: "127.0.0.1" },
      seed: async (cluster) => {
        for (const name of DGDS) {
          await createDgd(
            cluster,
            v1beta1Dgd(name, POOL, {
              p: { role: "prefill", replicas: 1, gpu: 1 },
              d: { role: "decode", replicas: 1, gpu: 1 },
            }),
          );
        }
      },
    });
    const { cluster, discovery } = budget;
    const batch = DGDS.map((dgd) => ({ dgd, decode: 2, caller: `${POOL}-${dgd}` }));
    const result = await runDriver(
      "kube_scale_driver.py",
      [
        "--endpoint",
        `${GP_NS}.GlobalPlanner.scale_request`,
        "--caller",
        `${POOL}-${DGDS[0]}`,
        "--dgd",
        DGDS[0],
        "--k8s-namespace",
        POOL,
      ],
      discovery,
      90_000,
      JSON.stringify({ batch }) + "\n",
    );
    assert.equal(result.code, 0, result.stdout + result.stderr.slice(-2000));
    const answers = result.lines.filter((l) => "result" in l).map((l) =>
      l.result as { dgd: string; status?: string; message?: string; error?: string }
    );
    assert.equal(answers.length, DGDS.length, result.stdout);
    const landed = answers.filter((a) => a.status === "success").map((a) => a.dgd).sort();
    const refused = answers.filter((a) => a.status !== "success");
    assert.equal(landed.length, 3, JSON.stringify(answers));
    for (const answer of refused) {
      assert.equal(answer.status, "rejected", JSON.stringify(answer));
      // Judged on the fleet with the three landed: 19 + 1.
      assert.match(answer.message ?? "", /total 20 exceeds ceiling \(19\)/);
    }
    // The API server holds exactly what the answers say.
    let total = 0;
    const written: string[] = [];
    for (const name of DGDS) {
      const replicas = replicasOf(await readDgd(cluster, "v1beta1", POOL, name));
      total += replicas.p + replicas.d;
      if (replicas.d === 2) written.push(name);
    }
    assert.deepEqual(written.sort(), landed);
    assert.equal(total, CEILING);
    // The metrics tell the same: three approvals, five rejections, nothing left in flight.
    const status = await budget.service.waitForLog((l) => l.message === "system status server listening");
    const metrics = await (await fetch(`http://127.0.0.1:${status.port}/metrics`)).text();
    const sample = (series: string) =>
      Number(metrics.match(new RegExp(`^dynamo_global_planner_${series} (\\S+)$`, "m"))?.[1] ?? NaN);
    assert.equal(sample('budget_decisions_total{decision="approve"}'), 3, metrics);
    assert.equal(sample('budget_decisions_total{decision="reject"}'), 5, metrics);
    assert.equal(sample("budget_writes_in_flight"), 0, metrics);
  },
});
