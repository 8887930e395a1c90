/**
 * Writes in flight, as later budget decisions count them: landed in the snapshot, with the
 * spread their failures could still cause.
 *
 *   ns/a prefill 2 × 2 = 4,  ns/a decode 2 × 1 = 2,  ns/b decode 2 × 4 = 8   → total 14
 */
import assert from "node:assert/strict";
import { InFlightWrites, makeSnapshot, NO_SPREAD, type Snapshot } from "../../src/service/budget/mod.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const fleet = (): Snapshot =>
  makeSnapshot([
    { participant: "ns/a", role: "prefill", replicas: 2, gpuPerReplica: 2 },
    { participant: "ns/a", role: "decode", replicas: 2, gpuPerReplica: 1 },
    { participant: "ns/b", role: "decode", replicas: 2, gpuPerReplica: 4 },
  ]);

Deno.test("nothing in flight: the snapshot itself, no spread", () => {
  const snapshot = fleet();
  const view = new InFlightWrites().view(snapshot);
  assert.equal(view.snapshot, snapshot);
  assert.deepEqual(view.spread, NO_SPREAD);
});

Deno.test("a scale-up in flight counts as landed; its failure could lower the total by its GPUs", () => {
  const writes = new InFlightWrites();
  // ns/a prefill 2 → 3: +2 GPUs.
  writes.begin(fleet(), { participant: "ns/a", targets: [{ role: "prefill", desired: 3 }], gpuDelta: 2 });
  const { snapshot, spread } = writes.view(fleet());
  assert.equal(snapshot.totalGpus, 16);
  assert.equal(snapshot.pools.get("ns/a/prefill")?.replicas, 3);
  assert.deepEqual(spread, { raise: 0, lower: 2 });
});

Deno.test("a scale-down in flight: its failure could raise the total; the spreads of several writes add", () => {
  const writes = new InFlightWrites();
  // ns/b decode 2 → 1: −4.  ns/a decode 2 → 5: +3.
  writes.begin(fleet(), { participant: "ns/b", targets: [{ role: "decode", desired: 1 }], gpuDelta: -4 });
  writes.begin(fleet(), { participant: "ns/a", targets: [{ role: "decode", desired: 5 }], gpuDelta: 3 });
  const { snapshot, spread } = writes.view(fleet());
  assert.equal(snapshot.totalGpus, 14 - 4 + 3);
  assert.deepEqual(spread, { raise: 4, lower: 3 });
});

Deno.test("one write lands whole or not at all: its spread is its net change", () => {
  const writes = new InFlightWrites();
  // ns/a prefill 2 → 3 (+2) and decode 2 → 0 (−2): net 0.
  writes.begin(fleet(), {
    participant: "ns/a",
    targets: [{ role: "prefill", desired: 3 }, { role: "decode", desired: 0 }],
    gpuDelta: 0,
  });
  const { snapshot, spread } = writes.view(fleet());
  assert.equal(snapshot.totalGpus, 14);
  assert.equal(snapshot.pools.get("ns/a/decode")?.replicas, 0);
  assert.deepEqual(spread, NO_SPREAD);
});

Deno.test("a snapshot that already shows the write is not counted twice; unknown pools change nothing", () => {
  const writes = new InFlightWrites();
  writes.begin(fleet(), {
    participant: "ns/a",
    targets: [{ role: "prefill", desired: 3 }, { role: "decode", desired: 7 }],
    gpuDelta: 0,
  });
  writes.begin(fleet(), { participant: "ns/z", targets: [{ role: "decode", desired: 9 }], gpuDelta: 0 });
  const landed = makeSnapshot([
    { participant: "ns/a", role: "prefill", replicas: 3, gpuPerReplica: 2 },
    { participant: "ns/b", role: "decode", replicas: 2, gpuPerReplica: 4 },
  ]);
  const { snapshot, spread } = writes.view(landed);
  // ns/a prefill is already 3 (6 GPUs); ns/a decode is not in this snapshot, ns/z in neither.
  assert.equal(snapshot.totalGpus, 14);
  assert.equal(snapshot.pools.has("ns/a/decode"), false);
  assert.equal(snapshot.pools.has("ns/z/decode"), false);
  // The spread is the write's change as its decision counted it: +2 (prefill) + 5 (decode 2 → 7).
  assert.deepEqual(spread, { raise: 0, lower: 7 });
});

Deno.test("settle forgets the write; settled() waits for the writes in flight when called, not later ones", async () => {
  const writes = new InFlightWrites();
  const settleA = writes.begin(fleet(), {
    participant: "ns/a",
    targets: [{ role: "prefill", desired: 3 }],
    gpuDelta: 2,
  });
  const waited = writes.settled();
  let done = false;
  waited.then(() => (done = true));
  const settleB = writes.begin(fleet(), {
    participant: "ns/b",
    targets: [{ role: "decode", desired: 3 }],
    gpuDelta: 4,
  });
  await Promise.resolve();
  assert.equal(done, false);
  settleA();
  await waited;
  assert.equal(writes.size, 1);
  assert.equal(writes.has("ns/a"), false);
  assert.equal(writes.has("ns/b"), true);
  settleB();
  settleB(); // twice is harmless
  assert.equal(writes.size, 0);
  await writes.settled();
});

Deno.test("a second write of one DGD while its first is in flight is a bug, said at once", () => {
  const writes = new InFlightWrites();
  writes.begin(fleet(), { participant: "ns/a", targets: [{ role: "prefill", desired: 3 }], gpuDelta: 2 });
  assert.throws(
    () =>
      writes.begin(fleet(), { participant: "ns/a", targets: [{ role: "prefill", desired: 4 }], gpuDelta: 4 }),
    /already in flight/,
  );
});
