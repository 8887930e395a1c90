/**
 * Budget arbitration. Every expected number is worked out by hand in the
 * comment above its assertion. Fleet used by most tests (gpu = GPUs per replica):
 *
 *   ns/a prefill 2 × 2 = 4,  ns/a decode 2 × 2 = 4,  ns/b decode 2 × 4 = 8   → total 16
 */
import assert from "node:assert/strict";
import {
  arbitrate,
  type BudgetBounds,
  type Decision,
  IntentCache,
  makeSnapshot,
  type Pool,
  poolKey,
  type Role,
  type Snapshot,
  type WriteTarget,
} from "../../src/service/budget/mod.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const A = "ns/a";
const B = "ns/b";
const C = "ns/c";
const TTL = 30;
const OFF = -1;

function pool(participant: string, role: Role, replicas: number, gpuPerReplica: number): Pool {
  return { participant, role, replicas, gpuPerReplica };
}

function fleet(): Snapshot {
  return makeSnapshot([pool(A, "prefill", 2, 2), pool(A, "decode", 2, 2), pool(B, "decode", 2, 4)]);
}

function decide(
  snapshot: Snapshot,
  participant: string,
  targets: WriteTarget[],
  bounds: BudgetBounds,
  options: { intents?: IntentCache; now?: number } = {},
): Decision {
  return arbitrate({
    snapshot,
    request: { participant, targets },
    intents: options.intents ?? new IntentCache(),
    bounds,
    ttl: TTL,
    now: options.now ?? 100,
  });
}

/** Writes as `participant: role=desired,... (delta)` strings, in apply order. */
function writesOf(decision: Decision): string[] {
  assert.equal(decision.kind, "approve", decision.kind === "reject" ? decision.message : "");
  if (decision.kind !== "approve") return [];
  return decision.writes.map((w) =>
    `${w.participant}: ${w.targets.map((t) => `${t.role}=${t.desired}`).join(",")} (${w.gpuDelta})`
  );
}

function rejection(decision: Decision): string {
  assert.equal(decision.kind, "reject");
  return decision.kind === "reject" ? decision.message : "";
}

Deno.test("ceiling: equality allowed, one GPU over rejected", () => {
  // a decode 2→3: +2 → 18 = max.
  const fits = decide(fleet(), A, [{ role: "decode", desired: 3 }], { max: 18, min: OFF });
  assert.deepEqual(writesOf(fits), ["ns/a: decode=3 (2)"]);
  assert.equal(fits.totalGpus, 18);
  assert.equal(fits.kind === "approve" && fits.standalone, true);
  // a decode 2→4: +4 → 20 > 18.
  const over = decide(fleet(), A, [{ role: "decode", desired: 4 }], { max: 18, min: OFF });
  assert.equal(rejection(over), "GPU budget breach: total 20 exceeds ceiling (18); no feasible pair packing");
  assert.equal(over.totalGpus, 20);
});

Deno.test("floor: equality allowed, below rejected without tolerance", () => {
  // a decode 2→1: −2 → 14 = min.
  assert.deepEqual(writesOf(decide(fleet(), A, [{ role: "decode", desired: 1 }], { max: OFF, min: 14 })), [
    "ns/a: decode=1 (-2)",
  ]);
  // a decode 2→0: −4 → 12 < 14.
  assert.equal(
    rejection(decide(fleet(), A, [{ role: "decode", desired: 0 }], { max: OFF, min: 14 })),
    "GPU budget breach: total 12 below floor (14); no feasible pair packing",
  );
});

Deno.test("tolerance: an internally paired request may land up to tol(changing) below the floor", () => {
  // prefill 2→3 (+2), decode 2→0 (−4): net −2 → 14; tol(changing) = max(2, 2) = 2.
  const paired: WriteTarget[] = [{ role: "prefill", desired: 3 }, { role: "decode", desired: 0 }];
  // min 15: 14 ≥ 15 − 2 → approved.
  assert.deepEqual(writesOf(decide(fleet(), A, paired, { max: OFF, min: 15 })), [
    "ns/a: prefill=3,decode=0 (-2)",
  ]);
  // min 17: 14 < 17 − 2 → rejected, the message names the tolerance.
  assert.equal(
    rejection(decide(fleet(), A, paired, { max: OFF, min: 17 })),
    "GPU budget breach: total 14 below floor (17 - tol 2); no feasible pair packing",
  );
  // Same total from a one-sided request (decode 2→1): no tolerance, 14 < 15.
  assert.equal(
    rejection(decide(fleet(), A, [{ role: "decode", desired: 1 }], { max: OFF, min: 15 })),
    "GPU budget breach: total 14 below floor (15); no feasible pair packing",
  );
  // The ceiling is never relaxed by tolerance: prefill 2→5 (+6), decode 2→1 (−2): 20 > 19.
  assert.equal(
    rejection(
      decide(fleet(), A, [{ role: "prefill", desired: 5 }, { role: "decode", desired: 1 }], {
        max: 19,
        min: OFF,
      }),
    ),
    "GPU budget breach: total 20 exceeds ceiling (19); no feasible pair packing",
  );
});

Deno.test("TTL: an intent is a partner up to ttl seconds old (inclusive), not after", () => {
  // b wants decode 2→1 (−4), recorded at t = 0. a asks decode 2→4 (+4) → 20 > max 18.
  const request: WriteTarget[] = [{ role: "decode", desired: 4 }];
  const bounds = { max: 18, min: OFF };
  const stale = new IntentCache();
  stale.record(poolKey(B, "decode"), 1, 0);
  assert.equal(
    rejection(decide(fleet(), A, request, bounds, { intents: stale, now: 31 })),
    "GPU budget breach: total 20 exceeds ceiling (18); no feasible pair packing",
  );
  const fresh = new IntentCache();
  fresh.record(poolKey(B, "decode"), 1, 0);
  // now − seen = 30 ≤ 30: candidate b (−4), T = 4; 20 − 4 = 16 ≤ 18 → full. b frees first.
  const paired = decide(fleet(), A, request, bounds, { intents: fresh, now: 30 });
  assert.deepEqual(writesOf(paired), ["ns/b: decode=1 (-4)", "ns/a: decode=4 (4)"]);
  assert.equal(paired.totalGpus, 16);
  assert.equal(paired.kind === "approve" && paired.standalone, false);
});

Deno.test("same-DGD pairing: the other role of the requesting DGD joins its single write", () => {
  // a wants prefill 2→1 (−2). a asks decode 2→3 (+2) → 18 > 17; 18 − 2 = 16 ≤ 17 → full.
  const intents = new IntentCache();
  intents.record(poolKey(A, "prefill"), 1, 99);
  const decision = decide(fleet(), A, [{ role: "decode", desired: 3 }], { max: 17, min: OFF }, { intents });
  assert.deepEqual(writesOf(decision), ["ns/a: decode=3,prefill=1 (0)"]);
  assert.equal(decision.totalGpus, 16);
  // Partners are written without a component name; the request's own targets pass through.
  assert.equal(decision.kind === "approve" && decision.writes[0].targets[1].componentName, null);
});

Deno.test("cross-DGD pairing: a rejected request leaves its intent, a later opposite one pairs it", () => {
  const intents = new IntentCache();
  const bounds = { max: 16, min: OFF };
  // t=0: a decode 2→3 (+2) → 18 > 16, no candidates → rejected, intent a/decode=3 kept.
  assert.equal(
    rejection(decide(fleet(), A, [{ role: "decode", desired: 3 }], bounds, { intents, now: 0 })),
    "GPU budget breach: total 18 exceeds ceiling (16); no feasible pair packing",
  );
  assert.deepEqual(intents.get(poolKey(A, "decode")), { lastDesired: 3, lastSeenAt: 0 });
  // t=10: b decode 2→1 (−4) → 12 (fits alone). Candidate a/decode (+2); T = 4; 12 + 2 = 14.
  const decision = decide(fleet(), B, [{ role: "decode", desired: 1 }], bounds, { intents, now: 10 });
  assert.deepEqual(writesOf(decision), ["ns/b: decode=1 (-4)", "ns/a: decode=3 (2)"]);
  assert.equal(decision.totalGpus, 14);
});

/** a prefill 2×2=4, a decode 2×2=4, b decode 2×4=8, c decode 4×1=4 → 20. */
function fleetWithC(): Snapshot {
  return makeSnapshot([...fleet().pools.values(), pool(C, "decode", 4, 1)]);
}

Deno.test("multi-partner packing: candidates by |delta|, taken while still over the ceiling", () => {
  const intents = new IntentCache();
  intents.record(poolKey(B, "decode"), 1, 100); // −4
  intents.record(poolKey(C, "decode"), 2, 100); // −2
  // a decode 2→5 (+6) → 26 > 20. Order: c (−2), b (−4); T = max(2, 1, 4) = 4.
  // c: 24 > 20, still over → full. b: 20 in band → full. Writes by delta: b, c, a.
  const decision = decide(fleetWithC(), A, [{ role: "decode", desired: 5 }], { max: 20, min: OFF }, {
    intents,
  });
  assert.deepEqual(writesOf(decision), ["ns/b: decode=1 (-4)", "ns/c: decode=2 (-2)", "ns/a: decode=5 (6)"]);
  assert.equal(decision.totalGpus, 20);
});

Deno.test("multi-partner packing: partners that cannot reach the band are all dropped", () => {
  const intents = new IntentCache();
  intents.record(poolKey(B, "decode"), 1, 100); // −4
  intents.record(poolKey(C, "decode"), 2, 100); // −2
  // a decode 2→6 (+8) → 28. c: 26, b: 22, both "still over" → full; loop ends at 22 > 20.
  // Repair b against 26: min off → K = 1 again → still 22 → partner set empty → standalone 28.
  const decision = decide(fleetWithC(), A, [{ role: "decode", desired: 6 }], { max: 20, min: OFF }, {
    intents,
  });
  assert.equal(
    rejection(decision),
    "GPU budget breach: total 28 exceeds ceiling (20); no feasible pair packing",
  );
  // Partner selection never modifies intents.
  assert.deepEqual(intents.get(poolKey(B, "decode")), { lastDesired: 1, lastSeenAt: 100 });
});

Deno.test("partial scale-down partner: K = max(d, c + ceil(((min − T) − B) / g))", () => {
  // a prefill 2×2=4, a decode 2×2=4, b decode 3×4=12 → 20; band [19, 20].
  const snapshot = makeSnapshot([pool(A, "prefill", 2, 2), pool(A, "decode", 2, 2), pool(B, "decode", 3, 4)]);
  const intents = new IntentCache();
  intents.record(poolKey(B, "decode"), 0, 100); // −12
  // a decode 2→3 (+2) → 22. T = max(2, 4) = 4. Full b: 10 < 19 − 4 = 15, not over the ceiling
  // → partial: B = 22, (19 − 4) − 22 = −7, ceil(−7/4) = −1, K = max(0, 3 − 1) = 2 → −4 → 18.
  // 18 ≥ 15 and ≤ 20: in band.
  const decision = decide(snapshot, A, [{ role: "decode", desired: 3 }], { max: 20, min: 19 }, { intents });
  assert.deepEqual(writesOf(decision), ["ns/b: decode=2 (-4)", "ns/a: decode=3 (2)"]);
  assert.equal(decision.totalGpus, 18);
});

Deno.test("partial scale-up partner: K = min(d, c + floor((max − B) / g))", () => {
  // a prefill 2×2=4, a decode 4×2=8, b decode 1×4=4 → 16; band [16, 19].
  const snapshot = makeSnapshot([pool(A, "prefill", 2, 2), pool(A, "decode", 4, 2), pool(B, "decode", 1, 4)]);
  const intents = new IntentCache();
  intents.record(poolKey(B, "decode"), 4, 100); // +12
  // a decode 4→2 (−4) → 12 < 16. T = 4. Full b: 24 > 19, not under the floor → partial:
  // B = 12, headroom 7, K = min(4, 1 + floor(7/4)) = 2 → +4 → 16: in band.
  const decision = decide(snapshot, A, [{ role: "decode", desired: 2 }], { max: 19, min: 16 }, { intents });
  assert.deepEqual(writesOf(decision), ["ns/a: decode=2 (-4)", "ns/b: decode=2 (4)"]);
  assert.equal(decision.totalGpus, 16);
});

Deno.test("satisfied and same-sign intents do not pair", () => {
  const intents = new IntentCache();
  intents.record(poolKey(B, "decode"), 2, 100); // satisfied: desired = current
  intents.record(poolKey(A, "prefill"), 3, 100); // +2: same sign as the request
  // a decode 2→3 (+2) → 18 > 17, no candidate → rejected.
  assert.equal(
    rejection(decide(fleet(), A, [{ role: "decode", desired: 3 }], { max: 17, min: OFF }, { intents })),
    "GPU budget breach: total 18 exceeds ceiling (17); no feasible pair packing",
  );
});

Deno.test("a pairing is used even when the standalone total would fit", () => {
  const intents = new IntentCache();
  intents.record(poolKey(B, "decode"), 1, 100); // −4
  // a decode 2→3 (+2) → 18 ≤ 30 fits alone; b still joins: 18 − 4 = 14.
  const decision = decide(fleet(), A, [{ role: "decode", desired: 3 }], { max: 30, min: OFF }, { intents });
  assert.deepEqual(writesOf(decision), ["ns/b: decode=1 (-4)", "ns/a: decode=3 (2)"]);
  assert.equal(decision.kind === "approve" && decision.standalone, false);
  assert.equal(decision.totalGpus, 14);
});

Deno.test("apply order: largest scale-down first, ties keep the request's participant first", () => {
  // c decode 4→2 (gpu 1): −2; a prefill 2→1 (gpu 2): −2. Request b decode 2→3 (+4) → 24 > 20.
  const intents = new IntentCache();
  intents.record(poolKey(C, "decode"), 2, 100);
  intents.record(poolKey(A, "prefill"), 1, 100);
  // Both |delta| 2: snapshot order (a before c). T = 4. a: 22 still over → full; c: 20 → full.
  // Writes: own b (+4), a (−2), c (−2) → sorted: a, c, b.
  const decision = decide(fleetWithC(), B, [{ role: "decode", desired: 3 }], { max: 20, min: OFF }, {
    intents,
  });
  assert.deepEqual(writesOf(decision), ["ns/a: prefill=1 (-2)", "ns/c: decode=2 (-2)", "ns/b: decode=3 (4)"]);
  assert.equal(decision.totalGpus, 20);

  // Own participant first on a tie. a prefill 3×2=6, a decode 2×2=4, b decode 2×4=8 → 18.
  const snapshot = makeSnapshot([pool(A, "prefill", 3, 2), pool(A, "decode", 2, 2), pool(B, "decode", 2, 4)]);
  const tied = new IntentCache();
  tied.record(poolKey(A, "prefill"), 0, 100); // −6, same participant
  tied.record(poolKey(B, "decode"), 1, 100); // −4
  // a decode 2→3 (+2) → 20 > 12. Order: b (−4), a/prefill (−6); T = 4. b: 16 still over → full;
  // a/prefill: 10 → full. Writes: a = +2 − 6 = −4, b = −4: tie, the request's own write first.
  const tie = decide(snapshot, A, [{ role: "decode", desired: 3 }], { max: 12, min: OFF }, { intents: tied });
  assert.deepEqual(writesOf(tie), ["ns/a: decode=3,prefill=0 (-4)", "ns/b: decode=1 (-4)"]);
  assert.equal(tie.totalGpus, 10);
});

Deno.test("budget off: approve standalone, intents still recorded", () => {
  const intents = new IntentCache();
  intents.record(poolKey(B, "decode"), 1, 100);
  const decision = decide(fleet(), A, [{ role: "decode", desired: 100 }], { max: OFF, min: OFF }, {
    intents,
  });
  // +98 × 2 = +196 → 212, no partner even though b's intent is fresh and opposite.
  assert.deepEqual(writesOf(decision), ["ns/a: decode=100 (196)"]);
  assert.equal(decision.totalGpus, 212);
  assert.deepEqual(intents.get(poolKey(A, "decode")), { lastDesired: 100, lastSeenAt: 100 });
});

Deno.test("unknown pools are skipped for intents and deltas but still written", () => {
  // Only a/decode (2×2) and b/decode (2×4) exist → 12; max 12.
  const snapshot = makeSnapshot([pool(A, "decode", 2, 2), pool(B, "decode", 2, 4)]);
  const intents = new IntentCache();
  const targets: WriteTarget[] = [
    { role: "prefill", desired: 5, componentName: "VllmPrefillWorker" },
    { role: "decode", desired: 2 },
  ];
  const decision = decide(snapshot, A, targets, { max: 12, min: OFF }, { intents });
  assert.deepEqual(writesOf(decision), ["ns/a: prefill=5,decode=2 (0)"]);
  assert.equal(
    decision.kind === "approve" && decision.writes[0].targets[0].componentName,
    "VllmPrefillWorker",
  );
  assert.equal(intents.get(poolKey(A, "prefill")), undefined);
  assert.deepEqual(intents.get(poolKey(A, "decode")), { lastDesired: 2, lastSeenAt: 100 });
});

Deno.test("zero-GPU pools: ignored by totals, never partners, do not pair a request", () => {
  // a prefill 2×0, a decode 2×2=4, b decode 2×4=8 → 12; min 11.
  const snapshot = makeSnapshot([pool(A, "prefill", 2, 0), pool(A, "decode", 2, 2), pool(B, "decode", 2, 4)]);
  assert.equal(snapshot.totalGpus, 12);
  // prefill 2→5 (free), decode 2→1 (−2) → 10: not internally paired → no tolerance.
  assert.equal(
    rejection(
      decide(snapshot, A, [{ role: "prefill", desired: 5 }, { role: "decode", desired: 1 }], {
        max: OFF,
        min: 11,
      }),
    ),
    "GPU budget breach: total 10 below floor (11); no feasible pair packing",
  );
  // A zero-GPU pool's intent is no partner: b decode 2→3 (+4) → 16 > 14, a/prefill wants 0.
  const intents = new IntentCache();
  intents.record(poolKey(A, "prefill"), 0, 100);
  assert.equal(
    rejection(decide(snapshot, B, [{ role: "decode", desired: 3 }], { max: 14, min: OFF }, { intents })),
    "GPU budget breach: total 16 exceeds ceiling (14); no feasible pair packing",
  );
});

Deno.test("duplicate roles in a request: the last target wins for the decision", () => {
  const intents = new IntentCache();
  // decode 9 then decode 3: judged as 2→3 (+2) → 18 ≤ 18; both targets are written.
  const decision = decide(
    fleet(),
    A,
    [{ role: "decode", desired: 9 }, { role: "decode", desired: 3 }],
    { max: 18, min: OFF },
    { intents },
  );
  assert.deepEqual(writesOf(decision), ["ns/a: decode=9,decode=3 (2)"]);
  assert.equal(intents.get(poolKey(A, "decode"))?.lastDesired, 3);
});
