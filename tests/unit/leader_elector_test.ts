/**
 * The leader election state machine on a fake clock and an in-memory Lease with the API
 * server's optimistic concurrency (the same machine runs against the real kube-apiserver in
 * tests/e2e/leader_election_test.ts). Boundaries are checked one millisecond either side.
 */
import assert from "node:assert/strict";
import { KubeError, NotLeader } from "../../src/errors.ts";
import { type ElectorClock, LeaderElector } from "../../src/kube/leader/elector.ts";
import type { LeaseApi, LeaseRecord, StoredLease } from "../../src/kube/leader/lease_api.ts";
import { createLogger } from "../../src/ops/log.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const logger = createLogger({ level: "error", sink: () => {} });
const TIMING = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

/** Timers fire in time order when the test advances the clock; between them, promises settle. */
class FakeClock implements ElectorClock {
  t = 1_000_000;
  #timers: { at: number; fn: () => void; id: number }[] = [];
  #next = 0;
  now = (): number => this.t;
  after = (ms: number, fn: () => void): () => void => {
    const id = this.#next++;
    this.#timers.push({ at: this.t + Math.max(0, ms), fn, id });
    return () => (this.#timers = this.#timers.filter((timer) => timer.id !== id));
  };
  sleep = (ms: number, signal: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const cancel = this.after(ms, resolve);
      signal.addEventListener("abort", () => (cancel(), resolve()), { once: true });
    });
  /** Lets every pending promise chain run (the fake API answers without I/O). */
  async settle(): Promise<void> {
    for (let i = 0; i < 20; i++) await Promise.resolve();
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await this.settle();
    while (true) {
      this.#timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const timer = this.#timers[0];
      if (!timer || timer.at > end) break;
      this.#timers.shift();
      this.t = timer.at;
      timer.fn();
      await this.settle();
    }
    this.t = end;
    await this.settle();
  }
}

/** One Lease with resourceVersion checks; each candidate gets its own view that can be cut off. */
class LeaseStore {
  lease?: StoredLease;
  #version = 0;
  writes: { by: string; record: LeaseRecord }[] = [];
  view(name: string): LeaseApi & { down: boolean } {
    const guard = (signal: AbortSignal) => {
      if (view.down) {
        // A partition: the request hangs until its deadline.
        return new Promise<never>((_, reject) =>
          signal.addEventListener("abort", () => reject(new Error("no answer")), { once: true })
        );
      }
      return undefined;
    };
    const store_ = (record: LeaseRecord) => {
      this.writes.push({ by: name, record });
      this.lease = {
        record: { ...record },
        resourceVersion: String(++this.#version),
        raw: JSON.stringify(record),
      };
      return { ...this.lease };
    };
    const conflict = () => new KubeError("conflict", { verb: "update", resource: "leases", status: 409 });
    const view = {
      down: false,
      where: "ns/lease",
      get: async (signal: AbortSignal) => {
        await guard(signal);
        return this.lease ? { ...this.lease } : undefined;
      },
      create: async (record: LeaseRecord, signal: AbortSignal) => {
        await guard(signal);
        if (this.lease) throw conflict();
        return store_(record);
      },
      update: async (record: LeaseRecord, version: string, signal: AbortSignal) => {
        await guard(signal);
        if (this.lease?.resourceVersion !== version) throw conflict();
        return store_(record);
      },
    };
    return view;
  }
}

function elector(
  store: LeaseStore,
  clock: FakeClock,
  name: string,
  random = () => 0,
  state?: () => Record<string, string>,
) {
  const api = store.view(name);
  const events: string[] = [];
  const inherited: Record<string, string>[] = [];
  const e = new LeaderElector({
    ...TIMING,
    api,
    identity: name,
    logger,
    clock,
    random,
    state,
    onStartedLeading: (_term, from) => (events.push("started"), inherited.push(from)),
    onStoppedLeading: (reason) => events.push(`stopped: ${reason}`),
  });
  return { e, api, events, inherited };
}

Deno.test("a free Lease is created and held at once; a second candidate stays standby and is refused writes", async () => {
  const clock = new FakeClock();
  const store = new LeaseStore();
  const a = elector(store, clock, "a");
  const b = elector(store, clock, "b");
  a.e.start();
  await clock.settle();
  b.e.start();
  await clock.advance(30_000);
  assert.equal(a.e.role, "leader");
  assert.equal(b.e.role, "standby");
  assert.equal(b.e.leader, "a");
  assert.deepEqual(a.events, ["started"]);
  assert.deepEqual(b.events, []);
  assert.equal(store.lease?.record.holderIdentity, "a");
  assert.equal(store.lease?.record.leaseDurationSeconds, 15);
  assert.equal(store.lease?.record.leaseTransitions, 0);
  assert.ok(a.e.writeSignal() instanceof AbortSignal);
  assert.throws(
    () => b.e.writeSignal(),
    (error) => error instanceof NotLeader && /held by a/.test(error.message),
  );
  // The leader renewed every retry period, b never wrote.
  assert.equal(store.writes.filter((w) => w.by === "b").length, 0);
  assert.equal(store.writes.filter((w) => w.by === "a").length, 1 + 30_000 / 2_000);
  await a.e.stop();
  await b.e.stop();
});

Deno.test("a leader that cannot renew stops leading exactly at its last renewal + the renew deadline", async () => {
  const clock = new FakeClock();
  const store = new LeaseStore();
  const a = elector(store, clock, "a");
  a.e.start();
  await clock.advance(4_000); // renewed at +2 s and +4 s
  const renewedAt = store.lease!.record.renewTime!;
  const term = a.e.writeSignal();
  a.api.down = true;
  await clock.advance(renewedAt + 10_000 - 1 - clock.t);
  assert.equal(a.e.leading, true, "still leading 1 ms before the deadline");
  assert.equal(term.aborted, false);
  await clock.advance(1);
  assert.equal(a.e.leading, false, "not leading at the deadline");
  assert.equal(term.aborted, true, "writes in flight are aborted");
  assert.ok(term.reason instanceof NotLeader);
  assert.equal(a.events.length, 2);
  assert.match(a.events[1], /^stopped: lease not renewed within the renew deadline/);
  assert.throws(() => a.e.writeSignal(), NotLeader);
  await a.e.stop();
});

Deno.test("a standby takes an unrenewed Lease exactly when it expires (observed + duration), not 1 ms before", async () => {
  const clock = new FakeClock();
  const store = new LeaseStore();
  const a = elector(store, clock, "a");
  a.e.start();
  await clock.settle();
  a.api.down = true; // a's renewals stop here; its lease was written at t0
  const t0 = clock.t;
  // b first sees the lease 1 s later; the worst jitter would put its next retry 4.4 s away.
  await clock.advance(1_000);
  const b = elector(store, clock, "b", () => 1);
  b.e.start();
  const seenAt = clock.t;
  await clock.advance(seenAt + 15_000 - 1 - clock.t);
  assert.equal(b.e.leading, false, "lease still valid 1 ms before observed + duration");
  assert.equal(a.e.leading, false, "the old leader stopped before the lease could be taken");
  assert.equal(store.writes.filter((w) => w.by === "b").length, 0);
  await clock.advance(1);
  assert.equal(b.e.leading, true, "taken at observed + duration");
  assert.equal(store.lease?.record.holderIdentity, "b");
  assert.equal(store.lease?.record.leaseTransitions, 1);
  assert.equal(store.lease!.record.acquireTime, seenAt + 15_000);
  assert.ok(store.lease!.record.acquireTime! >= t0 + 15_000);
  // The old leader's last write came before the new one's first write.
  const firstOfB = store.writes.findIndex((w) => w.by === "b");
  assert.ok(store.writes.slice(firstOfB).every((w) => w.by === "b"));
  await a.e.stop(10);
  await b.e.stop();
});

Deno.test("a standby that saw renewals times the expiry from the last change it observed", async () => {
  const clock = new FakeClock();
  const store = new LeaseStore();
  const a = elector(store, clock, "a");
  a.e.start();
  await clock.settle();
  const b = elector(store, clock, "b", () => 1);
  b.e.start();
  await clock.advance(5_500); // renewals at +2 s and +4 s, b polls every 1 s
  a.api.down = true;
  const lastRenewal = clock.t - 1_500;
  // b polls at whole seconds after its start: it saw the +4 s renewal at +4 s exactly.
  await clock.advance(lastRenewal + 15_000 - 1 - clock.t);
  assert.equal(b.e.leading, false);
  await clock.advance(1);
  assert.equal(b.e.leading, true);
  await a.e.stop(10);
  await b.e.stop();
});

Deno.test("graceful stop releases the Lease (holder cleared, duration kept); a standby takes it within half a retry period", async () => {
  const clock = new FakeClock();
  const store = new LeaseStore();
  const a = elector(store, clock, "a");
  a.e.start();
  await clock.settle();
  const b = elector(store, clock, "b", () => 1);
  b.e.start();
  await clock.advance(5_300);
  await a.e.stop();
  assert.equal(a.e.leading, false);
  assert.equal(store.lease?.record.holderIdentity, "");
  assert.equal(store.lease?.record.leaseDurationSeconds, 15);
  // b polls at +6 s: 700 ms after the release, whatever the jitter would have said.
  await clock.advance(699);
  assert.equal(b.e.leading, false);
  await clock.advance(1);
  assert.equal(b.e.leading, true);
  assert.equal(store.lease?.record.leaseTransitions, 1);
  assert.deepEqual(a.events, ["started", "stopped: stopping"]);
  await b.e.stop();
});

Deno.test("a standby polls a held Lease every retry / 2 without jitter; a failed attempt waits retry × (1 + 1.2 × random), as client-go", async () => {
  const clock = new FakeClock();
  const store = new LeaseStore();
  const a = elector(store, clock, "a");
  a.e.start();
  await clock.settle();
  let gets = 0;
  const b = elector(store, clock, "b", () => 0.5);
  const get = b.api.get;
  b.api.get = (signal) => (gets++, get(signal));
  b.e.start();
  await clock.settle();
  assert.equal(gets, 1);
  await clock.advance(999);
  assert.equal(gets, 1);
  await clock.advance(1);
  assert.equal(gets, 2, "held: polled after exactly retry / 2");
  b.api.get = () => (gets++, Promise.reject(new Error("unreachable")));
  await clock.advance(1_000);
  assert.equal(gets, 3, "the failing attempt");
  await clock.advance(2_000 * 1.6 - 1);
  assert.equal(gets, 3);
  await clock.advance(1);
  assert.equal(gets, 4, "failed: retried after retry × 1.6 (random 0.5)");
  await a.e.stop();
  await b.e.stop();
});

Deno.test("a leader whose Lease was taken over (a conflicting holder) stops leading on its next renewal", async () => {
  const clock = new FakeClock();
  const store = new LeaseStore();
  const a = elector(store, clock, "a");
  a.e.start();
  await clock.settle();
  const now = clock.t;
  store.lease = {
    record: { holderIdentity: "intruder", leaseDurationSeconds: 15, renewTime: now, leaseTransitions: 1 },
    resourceVersion: "999",
    raw: "intruder",
  };
  await clock.advance(2_000);
  assert.equal(a.e.leading, false);
  assert.match(a.events[1], /lease taken by intruder/);
  assert.equal(a.e.leader, "intruder");
  await a.e.stop();
  assert.equal(store.lease?.record.holderIdentity, "intruder", "a release never clears someone else's lease");
});

Deno.test("the leader's state rides on the Lease: renewed, kept through the release, inherited by the successor", async () => {
  const clock = new FakeClock();
  const store = new LeaseStore();
  let version = 0;
  const a = elector(store, clock, "a", () => 0, () => ({ "x/intents": `v${version}` }));
  a.e.start();
  await clock.settle();
  assert.deepEqual(a.inherited, [{}]);
  assert.equal(store.lease?.record.annotations, undefined, "a first holder has nothing to keep yet");
  version = 1;
  await clock.advance(2_000);
  assert.deepEqual(store.lease?.record.annotations, { "x/intents": "v1" });
  version = 2;
  await a.e.stop();
  assert.deepEqual(
    store.lease?.record.annotations,
    { "x/intents": "v2" },
    "the release writes the latest state",
  );
  const b = elector(store, clock, "b");
  b.e.start();
  await clock.settle();
  assert.equal(b.e.leading, true);
  assert.deepEqual(b.inherited, [{ "x/intents": "v2" }]);
  assert.deepEqual(
    store.lease?.record.annotations,
    { "x/intents": "v2" },
    "kept until the successor writes its own",
  );
  await b.e.stop();
});
