/**
 * Boundaries of the budget band and of partner packing (ceiling strict, floor lowered by the
 * tolerance): each limit is hit exactly and missed by one, each bound at 0 (on) and -1 (off), so
 * that flipping a comparison or shifting a limit by one in band.ts / partners.ts fails here.
 */
import assert from "node:assert/strict";
import {
  bandBreach,
  budgetEnabled,
  inBand,
  IntentCache,
  makeSnapshot,
  packPartners,
  partialReplicas,
  type PartnerCandidate,
  partnerCandidates,
  type Pool,
  poolKey,
} from "../../src/service/budget/mod.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const BAND = { max: 10, min: 6 };

Deno.test("budgetEnabled: on when either bound is ≥ 0 (0 counts), off when both are -1", () => {
  assert.equal(budgetEnabled({ max: 0, min: -1 }), true);
  assert.equal(budgetEnabled({ max: -1, min: 0 }), true);
  assert.equal(budgetEnabled({ max: -1, min: -1 }), false);
});

Deno.test("inBand / bandBreach: the ceiling is strict: max is in, max + 1 is out", () => {
  for (const tolerance of [0, 2]) {
    assert.equal(inBand(10, tolerance, BAND), true);
    assert.equal(bandBreach(10, tolerance, BAND), null);
    assert.equal(inBand(11, tolerance, BAND), false);
    assert.equal(bandBreach(11, tolerance, BAND), "total 11 exceeds ceiling (10)");
  }
  // A ceiling of 0 is a ceiling; -1 is none.
  assert.equal(inBand(0, 0, { max: 0, min: -1 }), true);
  assert.equal(inBand(1, 0, { max: 0, min: -1 }), false);
  assert.equal(bandBreach(1, 0, { max: 0, min: -1 }), "total 1 exceeds ceiling (0)");
  assert.equal(inBand(1_000_000, 0, { max: -1, min: -1 }), true);
  assert.equal(bandBreach(1_000_000, 0, { max: -1, min: -1 }), null);
});

Deno.test("inBand / bandBreach: the floor is min − tolerance: that total is in, one less is out", () => {
  // tolerance 2: 4 is in, 3 is out.
  assert.equal(inBand(4, 2, BAND), true);
  assert.equal(bandBreach(4, 2, BAND), null);
  assert.equal(inBand(3, 2, BAND), false);
  assert.equal(bandBreach(3, 2, BAND), "total 3 below floor (6 - tol 2)");
  // tolerance 1 is named too; tolerance 0 is not.
  assert.equal(bandBreach(4, 1, BAND), "total 4 below floor (6 - tol 1)");
  assert.equal(inBand(6, 0, BAND), true);
  assert.equal(inBand(5, 0, BAND), false);
  assert.equal(bandBreach(5, 0, BAND), "total 5 below floor (6)");
  // A floor of 0 is a floor (only a negative total breaks it); -1 is none.
  assert.equal(inBand(0, 0, { max: -1, min: 0 }), true);
  assert.equal(inBand(-1, 0, { max: -1, min: 0 }), false);
  assert.equal(bandBreach(-1, 0, { max: -1, min: 0 }), "total -1 below floor (0)");
  assert.equal(inBand(-5, 0, { max: -1, min: -1 }), true);
  assert.equal(bandBreach(-5, 0, { max: -1, min: -1 }), null);
  // Both breached cannot happen in a valid band; the ceiling is checked first.
  assert.equal(bandBreach(11, 0, { max: 10, min: 20 }), "total 11 exceeds ceiling (10)");
});

function pool(participant: string, replicas: number, gpuPerReplica: number): Pool {
  return { participant, role: "decode", replicas, gpuPerReplica };
}

function candidate(participant: string, current: number, desired: number, gpu: number): PartnerCandidate {
  return { pool: pool(participant, current, gpu), desired, gpuDelta: (desired - current) * gpu };
}

Deno.test("partial K, scale-up partner: headroom of exactly one replica, one GPU short, none, ceiling 0", () => {
  const up = { pool: pool("ns/b", 1, 4), desired: 4 };
  assert.equal(partialReplicas(up, 16, 0, { max: 20, min: -1 }), 2); // headroom 4 = one replica
  assert.equal(partialReplicas(up, 17, 0, { max: 20, min: -1 }), null); // headroom 3 < 4
  assert.equal(partialReplicas(up, 12, 0, { max: 20, min: -1 }), 3); // headroom 8 = two
  assert.equal(partialReplicas(up, 8, 0, { max: 20, min: -1 }), 4); // 12 = three = the target
  assert.equal(partialReplicas(up, 0, 0, { max: 20, min: -1 }), 4); // capped at the target
  assert.equal(partialReplicas(up, 20, 0, { max: 20, min: -1 }), null); // no headroom
  // One GPU of headroom is one replica of a 1-GPU pool.
  assert.equal(partialReplicas({ pool: pool("ns/b", 1, 1), desired: 4 }, 19, 0, { max: 20, min: -1 }), 2);
  assert.equal(partialReplicas(up, 21, 0, { max: 20, min: -1 }), null); // over already
  // Ceiling 0 is on (no headroom from 0); -1 is off (the full target).
  assert.equal(partialReplicas(up, 0, 0, { max: 0, min: -1 }), null);
  assert.equal(partialReplicas(up, 1000, 0, { max: -1, min: 5 }), 4);
});

Deno.test("partial K, scale-down partner: down to min − T exactly, one GPU short, none, floor 0", () => {
  const down = { pool: pool("ns/b", 3, 4), desired: 1 };
  // Floor − T = 10 − 2 = 8.
  assert.equal(partialReplicas(down, 12, 2, { max: -1, min: 10 }), 2); // 4 spare = one replica
  assert.equal(partialReplicas(down, 11, 2, { max: -1, min: 10 }), null); // 3 spare < 4
  assert.equal(partialReplicas(down, 16, 2, { max: -1, min: 10 }), 1); // 8 spare = the target
  assert.equal(partialReplicas(down, 100, 2, { max: -1, min: 10 }), 1); // capped at the target
  assert.equal(partialReplicas(down, 8, 2, { max: -1, min: 10 }), null); // at min − T already
  assert.equal(partialReplicas(down, 7, 2, { max: -1, min: 10 }), null); // below
  // The tolerance counts exactly once: with T = 3, 11 has 4 spare.
  assert.equal(partialReplicas(down, 11, 3, { max: -1, min: 10 }), 2);
  // Floor 0 is on (4 spare from 4 → one replica, not the target); -1 is off.
  assert.equal(partialReplicas(down, 4, 0, { max: -1, min: 0 }), 2);
  assert.equal(partialReplicas(down, 0, 0, { max: 5, min: -1 }), 1);
});

Deno.test("partial K: a candidate already at its target has none, whatever the bounds", () => {
  const still = { pool: pool("ns/b", 2, 4), desired: 2 };
  for (
    const bounds of [{ max: -1, min: -1 }, { max: 100, min: 0 }, { max: -1, min: 0 }, { max: 100, min: -1 }]
  ) {
    assert.equal(partialReplicas(still, 8, 0, bounds), null);
  }
});

Deno.test("packing toward the ceiling: landing on max is in band, max + 1 is not", () => {
  const bounds = { max: 20, min: -1 };
  // A scale-up request left the fleet at 24; a partner giving back 4 lands on 20 exactly.
  const exact = packPartners({
    candidates: [candidate("ns/b", 1, 0, 4)],
    standaloneTotal: 24,
    netDelta: 4,
    tolerance: 0,
    bounds,
  });
  assert.deepEqual(exact.partners.map((p) => p.replicas), [0]);
  assert.equal(exact.total, 20);
  // Giving back 3 lands on 21: still over, so no packing at all.
  const short = packPartners({
    candidates: [candidate("ns/b", 3, 0, 1)],
    standaloneTotal: 24,
    netDelta: 4,
    tolerance: 0,
    bounds,
  });
  assert.deepEqual(short, { partners: [], total: 24 });
  // Still over after the first (rule 2: take it and go on), on max after the second.
  const two = packPartners({
    candidates: [candidate("ns/b", 3, 0, 1), candidate("ns/c", 1, 0, 1)],
    standaloneTotal: 24,
    netDelta: 4,
    tolerance: 0,
    bounds,
  });
  assert.deepEqual(two.partners.map((p) => [p.pool.participant, p.replicas]), [["ns/b", 0], ["ns/c", 0]]);
  assert.equal(two.total, 20);
});

Deno.test("packing toward the floor: landing on min − T is in band, one less is not", () => {
  const bounds = { max: -1, min: 10 };
  // A scale-down request left 6; T = 2, so 8 is enough: a partner adding 2 lands on it.
  const exact = packPartners({
    candidates: [candidate("ns/b", 0, 2, 1)],
    standaloneTotal: 6,
    netDelta: -4,
    tolerance: 2,
    bounds,
  });
  assert.deepEqual(exact.partners.map((p) => p.replicas), [2]);
  assert.equal(exact.total, 8);
  // Adding 1 lands on 7: still under, no packing.
  const short = packPartners({
    candidates: [candidate("ns/b", 0, 1, 1)],
    standaloneTotal: 6,
    netDelta: -4,
    tolerance: 2,
    bounds,
  });
  assert.deepEqual(short, { partners: [], total: 6 });
  // Floor 0 with T = 0 from −1: a partner adding 1 lands on 0 (in band), rule 2 never needed.
  const zero = packPartners({
    candidates: [candidate("ns/b", 0, 1, 1)],
    standaloneTotal: -1,
    netDelta: -1,
    tolerance: 0,
    bounds: { max: -1, min: 0 },
  });
  assert.equal(zero.total, 0);
});

Deno.test("packing across a two-sided band: the crossing partner is cut to land exactly on an edge", () => {
  // Band [15 − 0, 20]. From 23 a partner of 3 × 4 GPUs going to 0 would land on 11 (crossing);
  // its partial keeps 1 replica: 23 − 8 = 15 = min − T exactly.
  const toFloor = packPartners({
    candidates: [candidate("ns/b", 3, 0, 4)],
    standaloneTotal: 23,
    netDelta: 2,
    tolerance: 0,
    bounds: { max: 20, min: 15 },
  });
  assert.deepEqual(toFloor.partners.map((p) => p.replicas), [1]);
  assert.equal(toFloor.total, 15);
  // From 12 (a scale-down request), a partner of 0 → 3 × 4 GPUs would land on 24; its partial
  // takes 2 replicas: 12 + 8 = 20 = max exactly.
  const toCeiling = packPartners({
    candidates: [candidate("ns/b", 0, 3, 4)],
    standaloneTotal: 12,
    netDelta: -2,
    tolerance: 0,
    bounds: { max: 20, min: 15 },
  });
  assert.deepEqual(toCeiling.partners.map((p) => p.replicas), [2]);
  assert.equal(toCeiling.total, 20);
});

Deno.test("candidates: a net delta of ±1 has partners; 0 has none", () => {
  const snapshot = makeSnapshot([pool("ns/a", 2, 1), { ...pool("ns/b", 2, 1), role: "prefill" }]);
  const intents = new IntentCache();
  intents.record(poolKey("ns/b", "prefill"), 1, 0); // −1
  const request = new Set([poolKey("ns/a", "decode")]);
  const listed = (net: number) =>
    partnerCandidates(snapshot, request, "ns/a", net, intents, 0, 30).map((c) => c.gpuDelta);
  assert.deepEqual(listed(+1), [-1]);
  assert.deepEqual(listed(-1), []);
  assert.deepEqual(listed(0), []);
  intents.record(poolKey("ns/b", "prefill"), 3, 0); // +1
  assert.deepEqual(listed(-1), [1]);
});

Deno.test("packing, rule 2 (still on the starting side) with a bound at 0 and a net delta of ±1", () => {
  // Ceiling 0: from 5, giving back 2 leaves 3 (still over: take it, go on), then 3 lands on 0.
  for (const netDelta of [1, 4]) {
    const overZero = packPartners({
      candidates: [candidate("ns/b", 2, 0, 1), candidate("ns/c", 3, 0, 1)],
      standaloneTotal: 5,
      netDelta,
      tolerance: 0,
      bounds: { max: 0, min: -1 },
    });
    assert.deepEqual(overZero.partners.map((p) => p.pool.participant), ["ns/b", "ns/c"]);
    assert.equal(overZero.total, 0);
  }
  // Floor 0 (a pure function: the total may start below it): −5 + 2 = −3 (still under), + 3 = 0.
  for (const netDelta of [-1, -4]) {
    const underZero = packPartners({
      candidates: [candidate("ns/b", 0, 2, 1), candidate("ns/c", 0, 3, 1)],
      standaloneTotal: -5,
      netDelta,
      tolerance: 0,
      bounds: { max: -1, min: 0 },
    });
    assert.deepEqual(underZero.partners.map((p) => p.pool.participant), ["ns/b", "ns/c"]);
    assert.equal(underZero.total, 0);
  }
});

Deno.test("packing, rule 2 needs the bound the request pushes against: no ceiling, no starting side", () => {
  // Floor only, a scale-up request at 12: 1 GPU back lands on 11 (in band); the next (8 GPUs)
  // would cross the floor and has no partial, so the packing stops at the first.
  const packing = packPartners({
    candidates: [candidate("ns/b", 1, 0, 1), candidate("ns/c", 2, 0, 4)],
    standaloneTotal: 12,
    netDelta: 2,
    tolerance: 0,
    bounds: { max: -1, min: 10 },
  });
  assert.deepEqual(packing.partners.map((p) => [p.pool.participant, p.replicas]), [["ns/b", 0]]);
  assert.equal(packing.total, 11);
});
