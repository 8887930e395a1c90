/** The role a leader-elected replica reports: health answer and metrics; unchanged without --leader-elect. */
import assert from "node:assert/strict";
import { createGlobalPlannerMetrics } from "../../src/ops/gp_metrics.ts";
import { createHealthHandler } from "../../src/service/handlers.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

async function answer(role?: () => string | undefined) {
  const handler = createHealthHandler({ namespace: "ns", managedNamespaces: null, role });
  const context = { id: "h", headers: {}, signal: new AbortController().signal };
  for await (const item of handler({}, context)) return item;
  throw new Error("no answer");
}

Deno.test("the health answer carries the role only with leader election", async () => {
  assert.deepEqual(await answer(), {
    status: "healthy",
    component: "GlobalPlanner",
    namespace: "ns",
    managed_namespaces: "all",
  });
  assert.deepEqual(await answer(() => "leader"), {
    status: "healthy",
    component: "GlobalPlanner",
    namespace: "ns",
    managed_namespaces: "all",
    role: "leader",
  });
});

Deno.test("leader gauge and transitions counter exist only with leader election", () => {
  const off = createGlobalPlannerMetrics({ version: "t", denoVersion: "d" });
  assert.doesNotMatch(off.render(), /dynamo_global_planner_leader/);
  const on = createGlobalPlannerMetrics({ version: "t", denoVersion: "d", leaderElection: true });
  assert.match(on.render(), /^dynamo_global_planner_leader 0$/m);
  assert.match(on.render(), /^dynamo_global_planner_leader_transitions_total 0$/m);
  on.setLeader(true);
  on.countLeaderTransition();
  assert.match(on.render(), /^dynamo_global_planner_leader 1$/m);
  assert.match(on.render(), /^dynamo_global_planner_leader_transitions_total 1$/m);
  on.setLeader(false);
  on.countLeaderTransition();
  assert.match(on.render(), /^dynamo_global_planner_leader 0$/m);
  assert.match(on.render(), /^dynamo_global_planner_leader_transitions_total 2$/m);
});
