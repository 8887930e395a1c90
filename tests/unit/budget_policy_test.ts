/**
 * Our per-DGD policy under a GPU budget, over the in-memory port: pause, stale guard and
 * annotations before arbitration; partners bounded by their own policy; dry run; Events.
 *
 * Fleet (tests/support/fake_budget_port.ts): ns/a prefill 2×2 + decode 2×1 = 6,
 * ns/b prefill 1×1 + decode 2×2 = 5; total 11.
 */
import assert from "node:assert/strict";
import { BudgetBreach, Paused, PolicyAnnotationError, StaleRequest } from "../../src/errors.ts";
import { createLogger } from "../../src/ops/log.ts";
import { boundedDesired, type Pool } from "../../src/service/budget/mod.ts";
import { BudgetPlanner } from "../../src/service/budget_planner.ts";
import { approvedVerdict, partnerBound, partnerBounds } from "../../src/service/budget_policy.ts";
import { parseScaleRequest } from "../../src/service/contract.ts";
import { readPolicy } from "../../src/service/dgd_policy.ts";
import type { DecisionEvent } from "../../src/service/scale_use_case.ts";
import { type FakePort, fleet, request } from "../support/fake_budget_port.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const logger = createLogger({ level: "error", sink: () => {} });
const P = "globalplanner.dynamo.example/";
const signal = new AbortController().signal;

function planner(
  port: FakePort,
  options: { max?: number; min?: number; rejectStale?: boolean; dryRun?: boolean } = {},
) {
  const events: DecisionEvent<string>[] = [];
  const gp = new BudgetPlanner({
    port,
    bounds: { max: options.max ?? 12, min: options.min ?? -1 },
    intentTtlSeconds: 300,
    logger,
    clock: () => 1000,
    rejectStale: options.rejectStale,
    dryRun: options.dryRun,
    events: { emit: (e) => events.push(e) },
  });
  return { gp, events };
}

const timed = (dgd: string, targets: Record<string, number>, timestamp: number) =>
  parseScaleRequest({
    caller_namespace: "c",
    graph_deployment_name: dgd,
    k8s_namespace: "ns",
    timestamp,
    target_replicas: Object.entries(targets).map(([sub_component_type, desired_replicas]) => ({
      sub_component_type,
      desired_replicas,
    })),
  });

Deno.test("boundedDesired: a partner moves toward its intent, never past its min/max, never away", () => {
  const pool = (replicas: number): Pool => ({
    participant: "ns/p",
    role: "decode",
    replicas,
    gpuPerReplica: 1,
  });
  assert.equal(boundedDesired(pool(2), 7, undefined), 7);
  assert.equal(boundedDesired(pool(2), 7, {}), 7);
  assert.equal(boundedDesired(pool(2), 7, { fixed: true }), null);
  assert.equal(boundedDesired(pool(2), 7, { max: 7 }), 7);
  assert.equal(boundedDesired(pool(2), 7, { max: 6 }), 6);
  assert.equal(boundedDesired(pool(2), 7, { max: 3 }), 3);
  assert.equal(boundedDesired(pool(2), 7, { max: 2 }), null, "clamped to its current count: no move");
  assert.equal(boundedDesired(pool(2), 7, { max: 1 }), null, "the bound would move it down: no move");
  assert.equal(boundedDesired(pool(4), 1, { min: 1 }), 1);
  assert.equal(boundedDesired(pool(4), 1, { min: 2 }), 2);
  assert.equal(boundedDesired(pool(4), 1, { min: 3 }), 3);
  assert.equal(boundedDesired(pool(4), 1, { min: 4 }), null);
  assert.equal(boundedDesired(pool(4), 1, { min: 5 }), null);
  // A min bound does not hold back a scale-up, a max bound not a scale-down.
  // Bounds only shorten a move: a min does not push a move up past the intent, nor a max a move down.
  assert.equal(boundedDesired(pool(2), 7, { min: 9 }), 7);
  assert.equal(boundedDesired(pool(4), 1, { max: 0 }), 1);
  assert.equal(boundedDesired(pool(4), 4, {}), null);
});

Deno.test("partner bounds come from the partner's annotations: paused or unreadable = fixed", () => {
  assert.deepEqual(partnerBound(null, "decode"), { fixed: true });
  assert.deepEqual(partnerBound(readPolicy({ [`${P}paused`]: "true" }, "x"), "decode"), { fixed: true });
  assert.deepEqual(partnerBound(readPolicy({ [`${P}paused`]: "false" }, "x"), "decode"), {
    min: undefined,
    max: undefined,
  });
  assert.deepEqual(
    partnerBound(
      readPolicy({ [`${P}decode-min-replicas`]: "1", [`${P}prefill-max-replicas`]: "3" }, "x"),
      "decode",
    ),
    { min: 1, max: undefined },
  );
  const annotations: Record<string, Record<string, string>> = {
    "ns/bad": { [`${P}decode-max-replicas`]: "many" },
    "ns/ok": { [`${P}decode-max-replicas`]: "4" },
  };
  let reads = 0;
  const bounds = partnerBounds((id) => (reads++, annotations[id]));
  const pool = (participant: string): Pool => ({
    participant,
    role: "decode",
    replicas: 1,
    gpuPerReplica: 1,
  });
  assert.deepEqual(bounds(pool("ns/bad")), { fixed: true });
  assert.deepEqual(bounds(pool("ns/ok")), { min: undefined, max: 4 });
  assert.deepEqual(bounds(pool("ns/unknown")), { fixed: true });
  assert.deepEqual(bounds(pool("ns/ok")), { min: undefined, max: 4 });
  assert.equal(reads, 3, "each participant's policy is read once per decision");
});

Deno.test("budget verdict text names the totals and the bounds that are on", () => {
  assert.equal(
    approvedVerdict(12, 14, { max: 16, min: -1 }),
    "budget: approved, total 12 → 14 GPUs (max 16)",
  );
  assert.equal(
    approvedVerdict(9, 8, { max: 16, min: 4 }),
    "budget: approved, total 9 → 8 GPUs (max 16, min 4)",
  );
  assert.equal(approvedVerdict(9, 8, { max: -1, min: 4 }), "budget: approved, total 9 → 8 GPUs (min 4)");
});

Deno.test("a paused requester is rejected before arbitration: nothing written, no intent, an Event", async () => {
  const port = fleet();
  port.annotations.set("ns/a", { [`${P}paused`]: "true" });
  const { gp, events } = planner(port);
  const error = await gp.scale(request("a", { decode: 3 }), signal).catch((e) => e);
  assert.ok(error instanceof Paused);
  assert.equal(
    error.message,
    `Scaling of DynamoGraphDeployment 'ns/a' is paused (annotation ${P}paused: "true"); nothing was changed`,
  );
  assert.deepEqual(error.currentReplicas, { prefill: 2, decode: 2 });
  assert.deepEqual(port.applied, []);
  assert.equal(gp.intents.size, 0);
  assert.deepEqual(events.map((e) => [e.ref.name, e.reason, e.warning]), [["a", "Paused", false]]);
  assert.match(
    events[0].note,
    /^caller c: decode → 3 refused: Scaling of .* is paused .*; budget: not consulted$/,
  );
  // "false" is not paused.
  port.annotations.set("ns/a", { [`${P}paused`]: "false" });
  assert.equal((await gp.scale(request("a", { decode: 3 }), signal)).status, "success");
});

Deno.test("the requester is clamped into its min/max BEFORE arbitration: the budget arbitrates what is written", async () => {
  // a decode 2 → 5 would be +3 → 14 > 12; clamped to 3 it is +1 → 12 (the ceiling, allowed).
  const port = fleet();
  port.annotations.set("ns/a", { [`${P}decode-max-replicas`]: "3" });
  const { gp, events } = planner(port);
  const response = await gp.scale(request("a", { decode: 5 }), signal);
  assert.deepEqual(response, {
    status: "success",
    message: `Scaled a successfully; adjusted by policy: decode 5 → 3 (${P}decode-max-replicas 3)`,
    current_replicas: { prefill: 2, decode: 3 },
  });
  assert.deepEqual(port.applied, ["ns/a:decode=3"]);
  assert.equal(gp.intents.get("ns/a/decode")?.lastDesired, 3, "the intent is the adjusted target");
  assert.deepEqual(events.map((e) => e.reason), ["Clamped"]);
  assert.equal(
    events[0].note,
    `caller c: prefill 2 → 2, decode 2 → 3; adjusted by policy: decode 5 → 3 (${P}decode-max-replicas 3); ` +
      "budget: approved, total 11 → 12 GPUs (max 12)",
  );
  // One more allowed replica and the same request breaches: the clamp, not luck, let it in.
  const over = fleet();
  over.annotations.set("ns/a", { [`${P}decode-max-replicas`]: "4" });
  const second = planner(over);
  const error = await second.gp.scale(request("a", { decode: 5 }), signal).catch((e) => e);
  assert.ok(error instanceof BudgetBreach);
  assert.equal(
    error.message,
    "GPU budget breach: total 13 exceeds ceiling (12); no feasible pair packing; " +
      `adjusted by policy: decode 5 → 4 (${P}decode-max-replicas 4)`,
  );
  assert.deepEqual(over.applied, []);
  assert.deepEqual(second.events.map((e) => [e.reason, e.warning]), [["ScaleRejected", true]]);
  assert.equal(
    second.events[0].note,
    "caller c: decode → 5 refused; budget: rejected: GPU budget breach: total 13 exceeds ceiling (12); " +
      "no feasible pair packing",
  );
});

Deno.test("a min bound raises the requester's target before arbitration", async () => {
  // b decode 2 → 0 (−4 → 7 < floor 8) raised to its min 1 (−2 → 9): approved.
  const port = fleet();
  port.annotations.set("ns/b", { [`${P}decode-min-replicas`]: "1" });
  const { gp } = planner(port, { max: 12, min: 8 });
  const response = await gp.scale(request("b", { decode: 0 }), signal);
  assert.equal(
    response.message,
    `Scaled b successfully; adjusted by policy: decode 0 → 1 (${P}decode-min-replicas 1)`,
  );
  assert.deepEqual(port.applied, ["ns/b:decode=1"]);
});

Deno.test("a paused partner is never moved; an unpaused one is", async () => {
  for (const paused of [true, false]) {
    const port = fleet();
    const { gp, events } = planner(port);
    await assert.rejects(gp.scale(request("a", { prefill: 3 }), signal), BudgetBreach); // 13 > 12: intent +2
    if (paused) port.annotations.set("ns/a", { [`${P}paused`]: "true" });
    const response = await gp.scale(request("b", { decode: 1 }), signal); // −2 → 9
    assert.equal(response.status, "success");
    assert.deepEqual(port.applied, paused ? ["ns/b:decode=1"] : ["ns/b:decode=1", "ns/a:prefill=3"]);
    const scaled = events.filter((e) => e.reason === "Scaled");
    assert.deepEqual(scaled.map((e) => e.ref.name), paused ? ["b"] : ["b", "a"]);
    assert.equal(
      scaled[0].note,
      `caller c: prefill 1 → 1, decode 2 → 1; budget: approved, total 11 → ${paused ? 9 : 11} GPUs (max 12)`,
    );
    if (!paused) {
      assert.equal(
        scaled[1].note,
        "moved by the GPU budget for the request of caller c on ns/b: prefill 2 → 3, decode 2 → 2; " +
          "budget: approved, total 11 → 11 GPUs (max 12)",
      );
    }
  }
});

Deno.test("a partner is moved at most to its own max (and not at all when that is its count)", async () => {
  // a prefill 2 → 7 (+10 → 21 > 20) is rejected; b decode 2 → 1 (−2 → 9) then pairs with it.
  for (const [max, expected] of [[undefined, 7], [3, 3], [2, undefined]] as const) {
    const port = fleet();
    const { gp } = planner(port, { max: 20 });
    await assert.rejects(gp.scale(request("a", { prefill: 7 }), signal), BudgetBreach);
    if (max !== undefined) port.annotations.set("ns/a", { [`${P}prefill-max-replicas`]: String(max) });
    await gp.scale(request("b", { decode: 1 }), signal);
    assert.deepEqual(
      port.applied,
      expected === undefined ? ["ns/b:decode=1"] : ["ns/b:decode=1", `ns/a:prefill=${expected}`],
      `max ${max}`,
    );
  }
});

Deno.test("a partner with a malformed annotation is not moved, and does not fail the request", async () => {
  const port = fleet();
  const { gp } = planner(port);
  await assert.rejects(gp.scale(request("a", { prefill: 3 }), signal), BudgetBreach);
  port.annotations.set("ns/a", { [`${P}prefill-max-replicas`]: "x" });
  assert.equal((await gp.scale(request("b", { decode: 1 }), signal)).status, "success");
  assert.deepEqual(port.applied, ["ns/b:decode=1"]);
  // The requester's own malformed annotation fails its request, as without a budget.
  await assert.rejects(gp.scale(request("a", { prefill: 2 }), signal), PolicyAnnotationError);
});

Deno.test("--reject-stale with a budget: last-request written with the scale, stale rejected, retries not written twice", async () => {
  const port = fleet();
  const { gp, events } = planner(port, { rejectStale: true });
  const first = await gp.scale(timed("a", { decode: 3 }, 10.5), signal);
  assert.equal(first.message, "Scaled a successfully");
  assert.deepEqual(port.options.map((o) => o.annotations), [{
    [`${P}last-request`]: JSON.stringify({ timestamp: 10.5, caller: "c", targets: { decode: 3 } }),
  }]);
  const stale = await gp.scale(timed("a", { decode: 1 }, 10.4), signal).catch((e) => e);
  assert.ok(stale instanceof StaleRequest);
  assert.equal(
    stale.message,
    "Stale scale request for DynamoGraphDeployment 'ns/a': its timestamp 10.4 is not newer than 10.5, " +
      "the last request applied (from caller 'c'); nothing was changed",
  );
  assert.deepEqual(stale.currentReplicas, { prefill: 2, decode: 3 });
  assert.equal(gp.intents.get("ns/a/decode")?.lastDesired, 3, "a stale request records no intent");
  // The same timestamp with other targets is stale too (not a retry).
  await assert.rejects(gp.scale(timed("a", { decode: 2 }, 10.5), signal), StaleRequest);
  const retry = await gp.scale(timed("a", { decode: 3 }, 10.5), signal);
  assert.deepEqual(retry, first);
  assert.equal(port.applied.length, 1);
  // Another planner (a restart) finds the state on the DGD.
  const restarted = planner(port, { rejectStale: true }).gp;
  const again = await restarted.scale(timed("a", { decode: 3 }, 10.5), signal);
  assert.deepEqual(again, {
    status: "success",
    message:
      "Scaled a successfully (a retry of the request applied at timestamp 10.5; nothing written again)",
    current_replicas: { prefill: 2, decode: 3 },
  });
  assert.equal(port.applied.length, 1);
  assert.equal((await restarted.scale(timed("a", { decode: 2 }, 11), signal)).status, "success");
  assert.deepEqual(events.map((e) => e.reason), ["Scaled", "Stale", "Stale"]);
  assert.match(events[1].note, /refused: Stale scale request .*; budget: not consulted$/);
});

Deno.test("--dry-run with a budget: every write is a dry run, intents are not recorded, the answer tells all", async () => {
  const port = fleet();
  const real = planner(port);
  await assert.rejects(real.gp.scale(request("a", { prefill: 3 }), signal), BudgetBreach); // intent prefill 3
  const dry = planner(port, { dryRun: true, rejectStale: true });
  // Dry runs see the same intents: copy them in as a restart would.
  dry.gp.intents.restore(real.gp.intents.exportFresh(1000, 300));
  const before = [...dry.gp.intents.entries()];
  const response = await dry.gp.scale(timed("b", { decode: 1 }, 5), signal);
  assert.deepEqual(response, {
    status: "success",
    message: "Would scale b: prefill 1 → 1, decode 2 → 1; budget: approved, total 11 → 11 GPUs (max 12); " +
      "would also move ns/a: prefill 2 → 3, decode 2 → 2 (nothing persisted)",
    current_replicas: { prefill: 1, decode: 1 },
  });
  assert.deepEqual(port.applied, ["ns/b:decode=1", "ns/a:prefill=3"]);
  assert.deepEqual(port.options.map((o) => o.dryRun), [true, true]);
  assert.equal(port.options[1].annotations, undefined, "a partner's write carries no request state");
  assert.deepEqual([...dry.gp.intents.entries()], before, "no intent recorded by a dry run");
  assert.equal(port.pools.get("ns/b/decode")?.replicas, 2, "nothing persisted");
  assert.deepEqual(dry.events, [], "no Event for a dry run");
  // A rejected dry run leaves no intent either.
  const fresh = planner(fleet(), { dryRun: true });
  await assert.rejects(fresh.gp.scale(request("a", { prefill: 3 }), signal), BudgetBreach);
  assert.equal(fresh.gp.intents.size, 0);
  // A blocking dry run waits for nothing (nothing was written).
  const blocking = parseScaleRequest({ ...request("b", { decode: 1 }, true) });
  assert.equal((await dry.gp.scale(blocking, signal)).status, "success");
  assert.deepEqual(port.waited, []);
  // Not a retry: nothing was applied, so the same request is decided again.
  assert.equal((await dry.gp.scale(timed("b", { decode: 1 }, 5), signal)).message, response.message);
  assert.equal(port.applied.length, 6);
});

Deno.test("Events: a request that changes nothing records none; a blocking one waits for its writes", async () => {
  const port = fleet();
  const { gp, events } = planner(port);
  assert.equal((await gp.scale(request("a", { decode: 2 }), signal)).status, "success");
  assert.equal(events.length, 0);
  assert.equal((await gp.scale(request("a", { decode: 3 }, true), signal)).status, "success");
  assert.deepEqual(events.map((e) => e.reason), ["Scaled"]);
  assert.deepEqual(port.waited, ["ns/a"]);
});

Deno.test("without annotations or flags the budget's answers are upstream's", async () => {
  const port = fleet();
  const { gp } = planner(port);
  assert.deepEqual(await gp.scale(request("a", { decode: 3 }), signal), {
    status: "success",
    message: "Scaled a successfully",
    current_replicas: { prefill: 2, decode: 3 },
  });
  assert.deepEqual(port.options, [{ dryRun: undefined, annotations: undefined }]);
  const error = await gp.scale(request("a", { prefill: 3 }), signal).catch((e) => e);
  assert.equal(error.message, "GPU budget breach: total 14 exceeds ceiling (12); no feasible pair packing");
});
