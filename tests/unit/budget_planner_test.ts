/**
 * The budget planner over a fake port: apply order, failure reporting. Concurrent decisions:
 * tests/unit/budget_planner_in_flight_test.ts.
 */
import assert from "node:assert/strict";
import { BudgetBreach, NotReady } from "../../src/errors.ts";
import { createLogger } from "../../src/ops/log.ts";
import { BudgetPlanner } from "../../src/service/budget_planner.ts";
import { type FakePort, fleet, request } from "../support/fake_budget_port.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const logger = createLogger({ level: "error", sink: () => {} });

const planner = (port: FakePort, max = 12, min = -1) =>
  new BudgetPlanner({ port, bounds: { max, min }, intentTtlSeconds: 300, logger, clock: () => 1000 });

Deno.test("an approved pairing is applied scale-down first, and the requester's replicas come back", async () => {
  const port = fleet();
  const gp = planner(port);
  await assert.rejects(gp.scale(request("a", { prefill: 3 }), new AbortController().signal), BudgetBreach); // 13 > 12: intent stays
  const response = await gp.scale(request("b", { decode: 1 }), new AbortController().signal); // frees 2
  assert.deepEqual(port.applied, ["ns/b:decode=1", "ns/a:prefill=3"]);
  assert.deepEqual(response, {
    status: "success",
    message: "Scaled b successfully",
    current_replicas: { prefill: 1, decode: 1 },
  });
});

Deno.test("a failing later partner is named in the success message, never hidden", async () => {
  const port = fleet();
  const gp = planner(port);
  await assert.rejects(gp.scale(request("a", { prefill: 3 }), new AbortController().signal), BudgetBreach);
  port.failFor.set("ns/a", new NotReady("DynamoGraphDeployment is not ready (name: 'a' in namespace 'ns')"));
  const response = await gp.scale(request("b", { decode: 1 }), new AbortController().signal);
  assert.equal(response.status, "success");
  assert.equal(
    response.message,
    "Scaled b successfully; partner scaling failed (it will be retried by the partner's next request): " +
      "ns/a: DynamoGraphDeployment is not ready (name: 'a' in namespace 'ns')",
  );
});

Deno.test("the first write failing answers for the request and nothing else is attempted", async () => {
  const port = fleet();
  const gp = planner(port);
  await assert.rejects(gp.scale(request("a", { prefill: 3 }), new AbortController().signal), BudgetBreach);
  port.failFor.set("ns/b", new NotReady("DynamoGraphDeployment is not ready (name: 'b' in namespace 'ns')"));
  await assert.rejects(gp.scale(request("b", { decode: 1 }), new AbortController().signal), NotReady);
  assert.deepEqual(port.applied, []);
});

Deno.test("a blocking wait does not hold the budget lock: a request for another DGD completes meanwhile", async () => {
  const port = fleet();
  const waiting = Promise.withResolvers<void>();
  const ready = Promise.withResolvers<void>();
  port.beforeWaitReturns = (participant) => {
    if (participant !== "ns/a") return Promise.resolve();
    waiting.resolve();
    return ready.promise; // DGD a never becomes Ready until the other request is answered
  };
  const gp = planner(port, 20);
  let slowDone = false;
  const slow = gp.scale(request("a", { decode: 3 }, true), new AbortController().signal)
    .finally(() => (slowDone = true));
  await waiting.promise;
  const fast = await gp.scale(request("b", { decode: 3 }), new AbortController().signal);
  assert.equal(fast.status, "success");
  assert.equal(slowDone, false, "the blocking request is still waiting");
  ready.resolve();
  assert.equal((await slow).status, "success");
});

Deno.test("empty target_replicas is an error before any decision", async () => {
  const gp = planner(fleet());
  await assert.rejects(
    gp.scale(request("a", {}), new AbortController().signal),
    /target_replicas cannot be empty/,
  );
  assert.equal(gp.intents.size, 0);
});
