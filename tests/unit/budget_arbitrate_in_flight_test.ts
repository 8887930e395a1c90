/**
 * Arbitration while writes are in flight: a decision stands only when no outcome of them could
 * change it. Every number is worked out in the comment above its assertion. Fleet:
 *
 *   ns/a prefill 2 × 2 = 4,  ns/a decode 2 × 2 = 4,  ns/b decode 2 × 4 = 8   → total 16
 */
import assert from "node:assert/strict";
import {
  arbitrate,
  type BudgetBounds,
  type InFlightDecision,
  type InFlightSpread,
  IntentCache,
  makeSnapshot,
  poolKey,
} from "../../src/service/budget/mod.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const A = "ns/a";
const B = "ns/b";
const OFF = -1;

const fleet = () =>
  makeSnapshot([
    { participant: A, role: "prefill", replicas: 2, gpuPerReplica: 2 },
    { participant: A, role: "decode", replicas: 2, gpuPerReplica: 2 },
    { participant: B, role: "decode", replicas: 2, gpuPerReplica: 4 },
  ]);

/** ns/a prefill → `desired`, with `inFlight` (absent: nothing in flight). */
function decide(
  desired: number,
  bounds: BudgetBounds,
  inFlight?: InFlightSpread,
  intents = new IntentCache(),
): InFlightDecision {
  return arbitrate({
    snapshot: fleet(),
    request: { participant: A, targets: [{ role: "prefill", desired }] },
    intents,
    bounds,
    ttl: 30,
    now: 100,
    inFlight,
  });
}

const kind = (d: InFlightDecision) => d.kind;

Deno.test("ceiling: a standalone approval needs the ceiling to hold if every scale-down in flight fails", () => {
  // 16 + 2 = 18.
  assert.equal(kind(decide(3, { max: 18, min: OFF }, { raise: 0, lower: 5 })), "approve");
  // 18 + 1 = 19 > 18 if the scale-down in flight fails.
  assert.equal(kind(decide(3, { max: 18, min: OFF }, { raise: 1, lower: 0 })), "settle");
  // 19 ≤ 19.
  assert.equal(kind(decide(3, { max: 19, min: OFF }, { raise: 1, lower: 0 })), "approve");
});

Deno.test("floor: a standalone approval needs the floor to hold if every scale-up in flight fails", () => {
  // 16 − 2 = 14.
  assert.equal(kind(decide(1, { max: OFF, min: 14 }, { raise: 3, lower: 0 })), "approve");
  // 14 − 1 = 13 < 14.
  assert.equal(kind(decide(1, { max: OFF, min: 14 }, { raise: 0, lower: 1 })), "settle");
  // 13 ≥ 13.
  assert.equal(kind(decide(1, { max: OFF, min: 13 }, { raise: 0, lower: 1 })), "approve");
});

Deno.test("a rejection is judged on the fleet with the writes in flight landed", () => {
  // 16 + 4 = 20 > 18, even though a failing scale-up of 2 would leave 18.
  const over = decide(4, { max: 18, min: OFF }, { raise: 0, lower: 2 });
  assert.equal(over.kind, "reject");
  assert.equal(
    over.kind === "reject" && over.message,
    "GPU budget breach: total 20 exceeds ceiling (18); no feasible pair packing",
  );
  // 16 − 4 = 12 < 14, even though a failing scale-down of 2 would leave 14.
  const under = decide(0, { max: OFF, min: 14 }, { raise: 2, lower: 0 });
  assert.equal(under.kind, "reject");
  assert.equal(
    under.kind === "reject" && under.message,
    "GPU budget breach: total 12 below floor (14); no feasible pair packing",
  );
});

Deno.test("a packing with partners stands only when its total holds at both ends of the spread", () => {
  const intents = () => {
    const cache = new IntentCache();
    cache.record(poolKey(B, "decode"), 1, 100); // −4
    return cache;
  };
  // 16 + 4 = 20 > 18; with ns/b decode 2 → 1: 16.
  const packed = decide(4, { max: 18, min: OFF }, { raise: 2, lower: 9 }, intents());
  assert.equal(packed.kind, "approve");
  assert.equal(packed.kind === "approve" && packed.standalone, false);
  assert.equal(packed.kind === "approve" && packed.totalGpus, 16);
  // 16 + 3 = 19 > 18 if the scale-downs in flight fail.
  assert.equal(kind(decide(4, { max: 18, min: OFF }, { raise: 3, lower: 0 }, intents())), "settle");
  // Floor 14 with the packing's tolerance (the largest GPUs per replica moving: 4): 16 − 6 = 10
  // holds, 16 − 7 = 9 does not.
  assert.equal(kind(decide(4, { max: 18, min: 14 }, { raise: 0, lower: 6 }, intents())), "approve");
  assert.equal(kind(decide(4, { max: 18, min: 14 }, { raise: 0, lower: 7 }, intents())), "settle");
});

Deno.test("no spread decides as with nothing in flight; a budget that is off ignores the spread", () => {
  assert.equal(kind(decide(4, { max: 18, min: OFF }, { raise: 0, lower: 0 })), "reject");
  assert.equal(kind(decide(3, { max: 18, min: OFF }, { raise: 0, lower: 0 })), "approve");
  assert.equal(kind(decide(9, { max: OFF, min: OFF }, { raise: 50, lower: 50 })), "approve");
});
