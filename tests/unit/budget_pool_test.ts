/** Pools, keys and snapshot totals. */
import assert from "node:assert/strict";
import { makeSnapshot, participantId, poolKey, totalGpus } from "../../src/service/budget/mod.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("keys: participant = namespace/dgd, pool = participant/role", () => {
  const id = participantId("team-ns", "llama");
  assert.equal(id, "team-ns/llama");
  assert.equal(poolKey(id, "prefill"), "team-ns/llama/prefill");
});

Deno.test("snapshot total: Σ replicas × gpu, zero-GPU pools count 0, last pool per key wins", () => {
  const snapshot = makeSnapshot([
    { participant: "ns/a", role: "prefill", replicas: 3, gpuPerReplica: 2 }, // 6
    { participant: "ns/a", role: "decode", replicas: 5, gpuPerReplica: 0 }, // 0
    { participant: "ns/b", role: "decode", replicas: 1, gpuPerReplica: 8 }, // replaced
    { participant: "ns/b", role: "decode", replicas: 2, gpuPerReplica: 8 }, // 16
  ]);
  assert.equal(snapshot.totalGpus, 22);
  assert.equal(snapshot.pools.size, 3);
  assert.equal(totalGpus(snapshot.pools.values()), 22);
});

Deno.test("snapshot rejects counts that are not known non-negative numbers", () => {
  assert.throws(
    () => makeSnapshot([{ participant: "ns/a", role: "decode", replicas: 1, gpuPerReplica: NaN }]),
    RangeError,
  );
  assert.throws(
    () => makeSnapshot([{ participant: "ns/a", role: "decode", replicas: -1, gpuPerReplica: 1 }]),
    RangeError,
  );
});
