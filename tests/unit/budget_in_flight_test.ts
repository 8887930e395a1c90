/**
 * Writes in flight, as later budget decisions count them: landed in the snapshot, with the
 * spread their failures could still cause.
 *
 *   ns/a prefill 2 × 2 = 4,  ns/a decode 2 × 1 = 2,  ns/b decode 2 × 4 = 8,  ns/c decode 1 × 1 = 1
 *   → total 15
 */
import assert from "node:assert/strict";
import {
  InFlightWrites,
  makeSnapshot,
  NO_SPREAD,
  type ParticipantWrite,
  type Snapshot,
} from "../../src/service/budget/mod.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const fleet = (): Snapshot =>
  makeSnapshot([
    { participant: "ns/a", role: "prefill", replicas: 2, gpuPerReplica: 2 },
    { participant: "ns/a", role: "decode", replicas: 2, gpuPerReplica: 1 },
    { participant: "ns/b", role: "decode", replicas: 2, gpuPerReplica: 4 },
    { participant: "ns/c", role: "decode", replicas: 1, gpuPerReplica: 1 },
  ]);

/** `participant role=desired` (the declared gpuDelta is ignored: the snapshot decides). */
const write = (participant: string, role: "prefill" | "decode", desired: number): ParticipantWrite => ({
  participant,
  targets: [{ role, desired }],
  gpuDelta: 0,
});

Deno.test("nothing in flight: the snapshot itself, no spread", () => {
  const snapshot = fleet();
  const view = new InFlightWrites().view(snapshot);
  assert.equal(view.snapshot, snapshot);
  assert.deepEqual(view.spread, NO_SPREAD);
});

Deno.test("one scale-up in flight counts as landed; its failure could lower the total by its GPUs", () => {
  const writes = new InFlightWrites();
  writes.begin(fleet(), [write("ns/a", "prefill", 3)]); // +2
  const { snapshot, spread } = writes.view(fleet());
  assert.equal(snapshot.totalGpus, 17);
  assert.equal(snapshot.pools.get("ns/a/prefill")?.replicas, 3);
  assert.deepEqual(spread, { raise: 0, lower: 2 });
});

Deno.test("independent decisions: their spreads add", () => {
  const writes = new InFlightWrites();
  writes.begin(fleet(), [write("ns/b", "decode", 1)]); // −4
  writes.begin(fleet(), [write("ns/a", "decode", 5)]); // +3
  const { snapshot, spread } = writes.view(fleet());
  assert.equal(snapshot.totalGpus, 15 - 4 + 3);
  assert.deepEqual(spread, { raise: 4, lower: 3 });
});

Deno.test("one write lands whole or not at all: its spread is its net change", () => {
  const writes = new InFlightWrites();
  // ns/a prefill 2 → 3 (+2) and decode 2 → 0 (−2): net 0.
  writes.begin(fleet(), [{
    participant: "ns/a",
    targets: [{ role: "prefill", desired: 3 }, { role: "decode", desired: 0 }],
    gpuDelta: 0,
  }]);
  const { snapshot, spread } = writes.view(fleet());
  assert.equal(snapshot.totalGpus, 15);
  assert.equal(snapshot.pools.get("ns/a/decode")?.replicas, 0);
  assert.deepEqual(spread, NO_SPREAD);
});

Deno.test("a pairing: nothing lands, or its first write and any of the rest", () => {
  const writes = new InFlightWrites();
  // b decode 2 → 1 (−4) first, then a prefill 2 → 4 (+4), then c decode 1 → 0 (−1): all landed = −1.
  const issued = writes.begin(fleet(), [
    write("ns/b", "decode", 1),
    write("ns/a", "prefill", 4),
    write("ns/c", "decode", 0),
  ]);
  // Outcomes against all landed (−1): none +1; b alone −3; b + a +1; b + c −4.
  assert.deepEqual(writes.view(fleet()).spread, { raise: 1, lower: 4 });
  assert.equal(writes.view(fleet()).snapshot.totalGpus, 14);
  // b landed (the fleet's copy shows it): now any subset of a (+4) and c (−1).
  issued.answered("ns/b");
  const landedB = makeSnapshot(
    [...fleet().pools.values()].map((p) => p.participant === "ns/b" ? { ...p, replicas: 1 } : p),
  );
  assert.deepEqual(writes.view(landedB).spread, { raise: 1, lower: 4 });
  assert.equal(writes.view(landedB).snapshot.totalGpus, 14);
  issued.answered("ns/a");
  assert.deepEqual(writes.view(landedB).spread, { raise: 1, lower: 0 });
  assert.equal(writes.has("ns/c"), true);
  issued.answered("ns/c");
  assert.equal(writes.size, 0);
  assert.deepEqual(writes.view(landedB).spread, NO_SPREAD);
});

Deno.test("a pairing whose first write lands and nets zero: only its later writes are uncertain", () => {
  const writes = new InFlightWrites();
  // c decode 1 → 0 (−1), then a decode 2 → 3 (+1).
  const issued = writes.begin(fleet(), [write("ns/c", "decode", 0), write("ns/a", "decode", 3)]);
  assert.deepEqual(writes.view(fleet()).spread, { raise: 0, lower: 1 });
  issued.answered("ns/c");
  assert.deepEqual(writes.view(fleet()).spread, { raise: 0, lower: 1 });
});

Deno.test("a snapshot that already shows a write is not counted twice; unknown pools change nothing", () => {
  const writes = new InFlightWrites();
  writes.begin(fleet(), [{
    participant: "ns/a",
    targets: [{ role: "prefill", desired: 3 }, { role: "decode", desired: 7 }],
    gpuDelta: 0,
  }]);
  writes.begin(fleet(), [write("ns/z", "decode", 9)]);
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

/** Whether `promise` has settled after the pending reactions ran. */
async function isDone(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 3; i++) await Promise.resolve();
  return done;
}

Deno.test("changed() resolves at every answer and end, settledOf() at its decision's end; end() forgets writes never answered", async () => {
  const sizes: number[] = [];
  const writes = new InFlightWrites((size) => sizes.push(size));
  await writes.changed(); // nothing in flight: at once
  const first = writes.begin(fleet(), [write("ns/b", "decode", 1), write("ns/a", "prefill", 3)]);
  const later = writes.begin(fleet(), [write("ns/c", "decode", 2)]);
  const waitedA = writes.settledOf("ns/a");
  const change = writes.changed();
  assert.equal(await isDone(change), false, "nothing answered yet");
  first.answered("ns/b");
  assert.equal(await isDone(change), true, "an answer is a change");
  assert.equal(writes.has("ns/b"), false);
  assert.equal(await isDone(waitedA), false, "ns/a is still in flight");
  const next = writes.changed();
  assert.notEqual(next, change, "a resolved change is not handed out again");
  assert.equal(await isDone(next), false);
  first.end(); // ns/b's failure stops the rest, say: ns/a is never written
  assert.equal(await isDone(next), true, "a decision's end is a change");
  await waitedA;
  assert.equal(writes.has("ns/a"), false);
  assert.equal(writes.has("ns/c"), true);
  const last = writes.changed();
  later.answered("ns/c"); // its last write: the decision ends
  assert.equal(await isDone(last), true);
  later.end(); // after its last answer: harmless
  first.answered("ns/a"); // after the end: nothing
  assert.equal(writes.size, 0);
  await writes.changed();
  await writes.settledOf("ns/a");
  // Every change of size, once: issued, answered, abandoned at the end of its decision.
  assert.deepEqual(sizes, [2, 3, 2, 1, 0]);
});

Deno.test("a second write of one DGD while one is in flight is a bug, said at once", () => {
  const writes = new InFlightWrites();
  writes.begin(fleet(), [write("ns/b", "decode", 1), write("ns/a", "prefill", 3)]);
  assert.throws(() => writes.begin(fleet(), [write("ns/a", "prefill", 4)]), /already in flight/);
  assert.equal(writes.size, 2);
});

Deno.test("decisions between two changes share one view; a write issued, answered or abandoned, or a new snapshot, makes a new one", () => {
  const writes = new InFlightWrites();
  const snapshot = fleet();
  const first = writes.begin(snapshot, [write("ns/b", "decode", 1), write("ns/a", "prefill", 3)]);
  const shared = writes.view(snapshot);
  assert.equal(writes.view(snapshot), shared, "nothing changed: the same view");
  // b decode 2 → 1 (−4), a prefill 2 → 3 (+2): 15 − 2 = 13; nothing lands → 15, b alone → 11.
  assert.equal(shared.snapshot.totalGpus, 13);
  assert.deepEqual(shared.spread, { raise: 2, lower: 2 });

  const later = writes.begin(snapshot, [write("ns/c", "decode", 2)]); // +1
  const issued = writes.view(snapshot);
  assert.notEqual(issued, shared);
  assert.equal(issued.snapshot.totalGpus, 14);
  assert.deepEqual(issued.spread, { raise: 2, lower: 3 });

  first.answered("ns/b"); // landed: the snapshot the next decision observes would show it
  const answered = writes.view(snapshot);
  assert.notEqual(answered, issued);
  // Only a (+2) and c (+1) are pending now, each may fail alone.
  assert.deepEqual(answered.spread, { raise: 0, lower: 3 });

  first.end(); // a abandoned
  const abandoned = writes.view(snapshot);
  assert.notEqual(abandoned, answered);
  assert.deepEqual(abandoned.spread, { raise: 0, lower: 1 });

  const observed = fleet(); // another (equal) snapshot object: not assumed to be the same fleet
  assert.notEqual(writes.view(observed), abandoned);
  later.end();
  assert.equal(writes.view(snapshot).snapshot, snapshot, "nothing in flight: the snapshot itself");
});
