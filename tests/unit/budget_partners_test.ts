/** Partner candidates and partial K, with hand-computed numbers. */
import assert from "node:assert/strict";
import {
  IntentCache,
  makeSnapshot,
  packPartners,
  partialReplicas,
  partnerCandidates,
  type Pool,
  poolKey,
  type Role,
} from "../../src/service/budget/mod.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

function pool(participant: string, role: Role, replicas: number, gpuPerReplica: number): Pool {
  return { participant, role, replicas, gpuPerReplica };
}

Deno.test("candidates: same participant first, then a stable sort by |delta|", () => {
  const snapshot = makeSnapshot([
    pool("ns/b", "decode", 4, 1), // → 2: −2 (cross)
    pool("ns/a", "prefill", 2, 2), // → 1: −2 (same)
    pool("ns/a", "decode", 2, 2), // the request's pool
    pool("ns/c", "decode", 3, 1), // → 2: −1 (cross)
    pool("ns/d", "prefill", 3, 4), // → 1: −8 (cross)
    pool("ns/e", "decode", 1, 4), // → 2: +4 (same sign as the request: excluded)
  ]);
  const intents = new IntentCache();
  intents.record(poolKey("ns/b", "decode"), 2, 0);
  intents.record(poolKey("ns/a", "prefill"), 1, 0);
  intents.record(poolKey("ns/a", "decode"), 1, 0); // in the request: excluded
  intents.record(poolKey("ns/c", "decode"), 2, 0);
  intents.record(poolKey("ns/d", "prefill"), 1, 0);
  intents.record(poolKey("ns/e", "decode"), 2, 0);
  const candidates = partnerCandidates(
    snapshot,
    new Set([poolKey("ns/a", "decode")]),
    "ns/a",
    +2,
    intents,
    10,
    30,
  );
  // Listed: [a/prefill −2] + [b −2, c −1, d −8]; stable by |delta|: c 1, a 2, b 2, d 8.
  assert.deepEqual(
    candidates.map((c) => `${poolKey(c.pool.participant, c.pool.role)} ${c.gpuDelta}`),
    ["ns/c/decode -1", "ns/a/prefill -2", "ns/b/decode -2", "ns/d/prefill -8"],
  );
  // No candidates at all when the request does not change the total.
  assert.deepEqual(partnerCandidates(snapshot, new Set(), "ns/a", 0, intents, 10, 30), []);
});

Deno.test("candidates: a pool's bounds are asked for only when its intent moves against the request", () => {
  const snapshot = makeSnapshot([
    pool("ns/a", "decode", 2, 1), // the request's pool
    pool("ns/b", "decode", 4, 1), // → 2: against the request
    pool("ns/c", "decode", 1, 1), // → 3: the request's way
    pool("ns/d", "decode", 2, 1), // → 2: satisfied
  ]);
  const intents = new IntentCache();
  for (const [p, desired] of [["ns/b", 2], ["ns/c", 3], ["ns/d", 2]] as const) {
    intents.record(poolKey(p, "decode"), desired, 0);
  }
  const asked: string[] = [];
  const candidates = partnerCandidates(
    snapshot,
    new Set([poolKey("ns/a", "decode")]),
    "ns/a",
    +1,
    intents,
    10,
    30,
    (p) => {
      asked.push(p.participant);
      return { min: 3 };
    },
  );
  assert.deepEqual(asked, ["ns/b"]);
  assert.deepEqual(candidates.map((c) => [c.pool.participant, c.desired, c.gpuDelta]), [["ns/b", 3, -1]]);
  // A scale-down asks about the other way's pool only.
  asked.length = 0;
  partnerCandidates(snapshot, new Set([poolKey("ns/a", "decode")]), "ns/a", -1, intents, 10, 30, (p) => {
    asked.push(p.participant);
    return undefined;
  });
  assert.deepEqual(asked, ["ns/c"]);
});

Deno.test("partial K: scale-up partner bounded by the ceiling's headroom", () => {
  const up = { pool: pool("ns/b", "decode", 1, 4), desired: 4 };
  // headroom 19 − 12 = 7 → K = min(4, 1 + 1) = 2.
  assert.equal(partialReplicas(up, 12, 4, { max: 19, min: 16 }), 2);
  // headroom 3 < 4 → K = 1 + 0 = current → none.
  assert.equal(partialReplicas(up, 16, 4, { max: 19, min: 16 }), null);
  // headroom ≤ 0 → none.
  assert.equal(partialReplicas(up, 19, 4, { max: 19, min: 16 }), null);
  // Plenty of headroom → the full target.
  assert.equal(partialReplicas(up, 0, 4, { max: 100, min: -1 }), 4);
  // Ceiling off → the full target.
  assert.equal(partialReplicas(up, 1000, 4, { max: -1, min: 16 }), 4);
});

Deno.test("partial K: scale-down partner bounded by the floor minus T", () => {
  const down = { pool: pool("ns/b", "decode", 3, 4), desired: 0 };
  // (19 − 4) − 22 = −7, ceil(−7/4) = −1 → K = 2.
  assert.equal(partialReplicas(down, 22, 4, { max: 20, min: 19 }), 2);
  // (19 − 4) − 18 = −3, ceil(−3/4) = −0 → K = 3 = current → none.
  assert.equal(partialReplicas(down, 18, 4, { max: 20, min: 19 }), null);
  // Baseline already under min − T → none.
  assert.equal(partialReplicas(down, 14, 4, { max: 20, min: 19 }), null);
  // (10 − 0) − 40 = −30 → K = max(0, 3 − 7) = 0.
  assert.equal(partialReplicas(down, 40, 0, { max: 20, min: 10 }), 0);
  // Floor off → the full target.
  assert.equal(partialReplicas(down, 0, 4, { max: 20, min: -1 }), 0);
});

Deno.test("packing: rule 3 stops the loop after the crossing candidate", () => {
  const first = { pool: pool("ns/b", "decode", 3, 4), desired: 0, gpuDelta: -12 };
  const second = { pool: pool("ns/c", "decode", 2, 1), desired: 0, gpuDelta: -2 };
  // Start 22, band [19 − 4, 20]: b full → 10, crosses → partial K = 2 (−4) → 18; c never tried.
  const packing = packPartners({
    candidates: [first, second],
    standaloneTotal: 22,
    netDelta: 2,
    tolerance: 4,
    bounds: { max: 20, min: 19 },
  });
  assert.deepEqual(packing.partners.map((p) => [p.pool.participant, p.desired, p.replicas, p.gpuDelta]), [
    ["ns/b", 0, 2, -4],
  ]);
  assert.equal(packing.total, 18);
});
