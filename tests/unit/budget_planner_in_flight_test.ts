/**
 * The budget planner with writes in flight: a decision's writes leave the decision queue once
 * issued; later decisions count them as landed, and an approval must hold whichever way they end
 * or wait for them. Fleet (tests/support/fake_budget_port.ts): a = prefill 2×2 + decode 2×1,
 * b = prefill 1×1 + decode 2×2 → total 11.
 */
import assert from "node:assert/strict";
import { BudgetBreach, NotReady } from "../../src/errors.ts";
import { createLogger } from "../../src/ops/log.ts";
import { BudgetPlanner, STEP_ASIDE_TURNS } from "../../src/service/budget_planner.ts";
import { fleet, request } from "../support/fake_budget_port.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const signal = () => new AbortController().signal;

/**
 * A planner whose log resolves `settling` with the first participant whose decision says
 * `settle`, and `waitingOwn` with the first that waits for its own DGD's write in flight.
 */
function planner(port: ReturnType<typeof fleet>, max: number, min = -1) {
  const settling = Promise.withResolvers<string>();
  const waiting = Promise.withResolvers<string>();
  const logger = createLogger({
    level: "debug",
    sink: (line) => {
      const { message, decision, participant } = JSON.parse(line);
      if (message === "budget decision" && decision === "settle") settling.resolve(participant);
      if (message === "waiting for the write in flight of this DGD") waiting.resolve(participant);
    },
  });
  const gp = new BudgetPlanner({
    port,
    bounds: { max, min },
    intentTtlSeconds: 300,
    logger,
    clock: () => 1000,
  });
  return { gp, settling: settling.promise, waitingOwn: waiting.promise };
}

/**
 * Holds the next write of `participant` in `apply` until released (or failed with `failure`);
 * `issued` resolves once it is. Later writes pass.
 */
function hold(port: ReturnType<typeof fleet>, participant: string, failure?: Error) {
  const issued = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  let held = false;
  port.beforeApply = (p) => {
    if (p !== participant || held) return Promise.resolve();
    held = true;
    issued.resolve();
    return release.promise;
  };
  return {
    issued: issued.promise,
    release: () => failure ? release.reject(failure) : release.resolve(),
  };
}

/** Which comes first: `latch`, or `answer` settling ("answered"). */
const first = (latch: Promise<string>, answer: Promise<unknown>) =>
  Promise.race([latch, answer.then(() => "answered", () => "answered")]);

Deno.test("two concurrent requests can never both pass against the same pre-scale state", async () => {
  const port = fleet();
  const { gp } = planner(port, 12);
  const a = hold(port, "ns/a");
  const scaling = gp.scale(request("a", { decode: 3 }), signal()); // 11 + 1 = 12
  await a.issued;
  // Judged on 12 (a's write landed, the one outcome that is not a failure): 13 > 12.
  await assert.rejects(
    gp.scale(request("b", { prefill: 2 }), signal()),
    (e) =>
      e instanceof BudgetBreach &&
      e.message === "GPU budget breach: total 13 exceeds ceiling (12); no feasible pair packing",
  );
  assert.equal(gp.writesInFlight, 1, "answered while a's write was in flight");
  a.release();
  assert.equal((await scaling).status, "success");
  assert.equal(gp.writesInFlight, 0);
});

Deno.test("an approval that holds whichever way the write in flight ends is answered while it is in flight", async () => {
  const port = fleet();
  const { gp } = planner(port, 13);
  const a = hold(port, "ns/a");
  const scaling = gp.scale(request("a", { decode: 3 }), signal()); // 11 + 1 = 12
  await a.issued;
  assert.equal(gp.writesInFlight, 1);
  // 12 + 1 = 13 ≤ 13, and 12 if a's write fails.
  assert.equal((await gp.scale(request("b", { prefill: 2 }), signal())).status, "success");
  assert.deepEqual(port.applied, ["ns/b:prefill=2"]);
  a.release();
  assert.equal((await scaling).status, "success");
});

Deno.test("an approval the write in flight could break waits for it, then is decided on the settled fleet", async (t) => {
  for (const aLands of [true, false]) {
    await t.step(aLands ? "the write lands" : "the write fails", async () => {
      const port = fleet();
      const { gp, settling } = planner(port, 12);
      const notReady = new NotReady("DynamoGraphDeployment is not ready (name: 'a' in namespace 'ns')");
      const a = hold(port, "ns/a", aLands ? undefined : notReady);
      const scaling = gp.scale(request("a", { decode: 1 }), signal()).catch((e) => e); // 11 − 1 = 10
      await a.issued;
      // 10 + 2 = 12 if a's write lands; 13 if it fails.
      const second = gp.scale(request("b", { prefill: 3 }), signal());
      assert.equal(await first(settling, second), "ns/b");
      a.release();
      if (aLands) {
        assert.equal((await second).status, "success");
        assert.deepEqual(port.applied, ["ns/a:decode=1", "ns/b:prefill=3"]);
      } else {
        // 11 + 2 = 13 > 12 alone; a's fresh intent (decode 1) is now a partner that frees one.
        assert.equal(await scaling, notReady);
        assert.equal((await second).status, "success");
        assert.deepEqual(port.applied, ["ns/a:decode=1", "ns/b:prefill=3"]);
      }
      assert.equal(gp.writesInFlight, 0);
    });
  }
});

/** The fleet plus c = decode 1×1 (total 12), ceiling 13, with a's intent prefill → `intent`. */
async function withIntent(intent: number) {
  const port = fleet();
  port.add("ns/c", "decode", 1, 1);
  const planned = planner(port, 13);
  await assert.rejects(planned.gp.scale(request("a", { prefill: intent }), signal()), BudgetBreach);
  return { port, ...planned };
}

Deno.test("a packing with partners that holds whichever way the writes in flight end does not wait for them", async () => {
  // a prefill 2 → 3 (+2) was rejected: 14 > 13.
  const { port, gp } = await withIntent(3);
  const c = hold(port, "ns/c");
  const scaling = gp.scale(request("c", { decode: 2 }), signal()); // 13, standalone
  await c.issued;
  // b decode 2 → 1 frees 2 and a takes them: 13 − 2 + 2 = 13, or 12 if c's write fails.
  assert.equal((await gp.scale(request("b", { decode: 1 }), signal())).status, "success");
  assert.deepEqual(port.applied, ["ns/b:decode=1", "ns/a:prefill=3"]);
  c.release();
  assert.equal((await scaling).status, "success");
});

Deno.test("a packing with partners that a failing write in flight could push over the ceiling waits", async () => {
  const port = fleet();
  port.add("ns/c", "decode", 1, 1); // total 12
  const { gp, settling } = planner(port, 13);
  const c = hold(port, "ns/c");
  const scaling = gp.scale(request("c", { decode: 0 }), signal()); // 11, standalone
  await c.issued;
  // a prefill 2 → 4: 11 + 4 = 15 > 13, rejected; its intent stays.
  await assert.rejects(gp.scale(request("a", { prefill: 4 }), signal()), BudgetBreach);
  // b decode 2 → 1 frees 2, a takes 4: 11 − 2 + 4 = 13, but 14 if c's scale-down fails.
  const pairing = gp.scale(request("b", { decode: 1 }), signal());
  assert.equal(await first(settling, pairing), "ns/b");
  assert.deepEqual(port.applied, []);
  c.release();
  assert.equal((await scaling).status, "success");
  assert.equal((await pairing).status, "success");
  assert.deepEqual(port.applied, ["ns/c:decode=0", "ns/b:decode=1", "ns/a:prefill=4"]);
});

Deno.test("a DGD being written as a partner: its own request, and a packing that would move it, wait", async () => {
  // a prefill 2 → 5 (+6) was rejected: 18 > 13.
  const { port, gp, settling, waitingOwn } = await withIntent(5);
  const a = hold(port, "ns/a");
  // b decode 2 → 1 (−2 → 10); a partially, prefill → 3 (+2 → 12); b's write lands, a's is held.
  const pairing = gp.scale(request("b", { decode: 1 }), signal());
  await a.issued;
  // c decode 1 → 0 (−1 → 11) would move a on to prefill 4 (13): a is being written, so it waits.
  const moving = gp.scale(request("c", { decode: 0 }), signal());
  assert.equal(await first(settling, moving), "ns/c");
  a.release();
  assert.equal((await pairing).status, "success");
  assert.equal((await moving).status, "success");
  assert.deepEqual(port.applied, ["ns/b:decode=1", "ns/a:prefill=3", "ns/c:decode=0", "ns/a:prefill=4"]);

  // Now a's own request while a is moved as b's partner again.
  const again = hold(port, "ns/a");
  // b decode 1 → 0 (−2 → 11): a prefill 4 → 5 (+2 → 13).
  const pairingAgain = gp.scale(request("b", { decode: 0 }), signal());
  await again.issued;
  const own = gp.scale(request("a", { decode: 1 }), signal()); // a's own: decode 2 → 1
  assert.equal(await first(waitingOwn, own), "ns/a");
  again.release();
  assert.equal((await pairingAgain).status, "success");
  const answer = await own;
  assert.equal(answer.status, "success");
  // Decided on a's copy with b's move landed: prefill 5.
  assert.deepEqual(answer.current_replicas, { prefill: 5, decode: 1 });
});

Deno.test("a DGD's next request decides only once its write in flight is answered", async () => {
  const port = fleet();
  const { gp } = planner(port, 20);
  const a = hold(port, "ns/a");
  const scaling = gp.scale(request("a", { decode: 3 }), signal());
  await a.issued;
  const again = gp.scale(request("a", { decode: 4 }), signal());
  // b arrives after a's second request; it is answered while a's first write is held, and
  // a's second request has not looked at the fleet yet (one snapshot each for a's first and b).
  assert.equal((await gp.scale(request("b", { decode: 3 }), signal())).status, "success");
  assert.equal(port.snapshots, 2);
  a.release();
  await scaling;
  assert.equal((await again).status, "success");
  assert.deepEqual(port.applied, ["ns/b:decode=3", "ns/a:decode=3", "ns/a:decode=4"]);
});

Deno.test("a dry run's write counts for no later decision", async () => {
  const port = fleet();
  const logger = createLogger({ level: "error", sink: () => {} });
  const gp = new BudgetPlanner({
    port,
    bounds: { max: 12, min: -1 },
    intentTtlSeconds: 300,
    logger,
    clock: () => 1000,
    dryRun: true,
  });
  const a = hold(port, "ns/a");
  const scaling = gp.scale(request("a", { decode: 3 }), signal()); // would be 12
  await a.issued;
  assert.equal(gp.writesInFlight, 0);
  // Judged on 11, as if a's dry run had not happened: 11 + 1 = 12.
  assert.equal((await gp.scale(request("b", { prefill: 2 }), signal())).status, "success");
  a.release();
  assert.equal((await scaling).status, "success");
});

/** Holds the first write of each of `participants` in `apply` until its `release`. */
function holdEach(port: ReturnType<typeof fleet>, participants: string[]) {
  const held = new Map(participants.map((p) => [p, {
    issued: Promise.withResolvers<void>(),
    release: Promise.withResolvers<void>(),
    taken: false,
  }]));
  port.beforeApply = (p) => {
    const h = held.get(p);
    if (!h || h.taken) return Promise.resolve();
    h.taken = true;
    h.issued.resolve();
    return h.release.promise;
  };
  return {
    issued: (p: string) => held.get(p)!.issued.promise,
    release: (p: string) => held.get(p)!.release.resolve(),
  };
}

/**
 * Whether `promise` has settled once everything that can run without I/O has: the port is in
 * memory, so every promise chain that can progress does so within one macrotask turn (the
 * microtask queue drains before a timer fires). Not a wait for time: nothing here is timed.
 */
async function isDone(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(() => (done = true), () => (done = true));
  const turn = Promise.withResolvers<void>();
  setTimeout(turn.resolve, 0);
  await turn.promise;
  return done;
}

/**
 * A planner whose log resolves `settles(participant, n)` at `participant`'s n-th `settle`;
 * `observed` lists what it told its observer (decisions, and writes in flight as `writes=n`).
 */
function countingPlanner(port: ReturnType<typeof fleet>, max: number) {
  const observed: string[] = [];
  const seen = new Map<string, number>();
  const waiters: { participant: string; n: number; latch: PromiseWithResolvers<void> }[] = [];
  const logger = createLogger({
    level: "info",
    sink: (line) => {
      const { message, decision, participant } = JSON.parse(line);
      if (message !== "budget decision" || decision !== "settle") return;
      const n = (seen.get(participant) ?? 0) + 1;
      seen.set(participant, n);
      for (const w of waiters) if (w.participant === participant && w.n === n) w.latch.resolve();
    },
  });
  const gp = new BudgetPlanner({
    port,
    bounds: { max, min: -1 },
    intentTtlSeconds: 300,
    logger,
    clock: () => 1000,
    observe: {
      decision: (kind) => observed.push(kind),
      writesInFlight: (writes) => observed.push(`writes=${writes}`),
    },
  });
  const settles = (participant: string, n: number) => {
    const latch = Promise.withResolvers<void>();
    if ((seen.get(participant) ?? 0) >= n) latch.resolve();
    else waiters.push({ participant, n, latch });
    return latch.promise;
  };
  return { gp, settles, observed };
}

Deno.test("a decision left open by a write in flight steps aside: one queued behind it is answered meanwhile", async () => {
  const port = fleet();
  port.add("ns/c", "decode", 1, 1); // total 12
  const { gp, settles, observed } = countingPlanner(port, 13);
  const held = holdEach(port, ["ns/a"]);
  const scaling = gp.scale(request("a", { decode: 1 }), signal()); // 12 − 1 = 11
  await held.issued("ns/a");
  // 11 + 2 = 13 if a's write lands, 14 if it fails: open.
  const open = gp.scale(request("b", { prefill: 3 }), signal());
  await settles("ns/b", 1);
  // Queued behind b, and decided on its own: 11 + 4 = 15 > 13.
  await assert.rejects(
    gp.scale(request("c", { decode: 5 }), signal()),
    (e) =>
      e instanceof BudgetBreach && e.message.startsWith("GPU budget breach: total 15 exceeds ceiling (13)"),
  );
  assert.equal(await isDone(open), false, "b still waits for a's write");
  held.release("ns/a");
  assert.equal((await scaling).status, "success");
  assert.equal((await open).status, "success");
  assert.deepEqual(port.applied, ["ns/a:decode=1", "ns/b:prefill=3"]);
  // a approved (1 in flight), b open, c rejected, a answered (0), b approved and answered.
  assert.deepEqual(observed, [
    "approve",
    "writes=1",
    "settle",
    "reject",
    "writes=0",
    "approve",
    "writes=1",
    "writes=0",
  ]);
});

Deno.test(`a decision still open after ${STEP_ASIDE_TURNS} answers holds its turn until it is decided`, async () => {
  const port = fleet();
  for (const dgd of ["c", "d", "e", "f"]) port.add(`ns/${dgd}`, "decode", 1, 1); // total 15
  const { gp, settles } = countingPlanner(port, 16);
  const held = holdEach(port, ["ns/a", "ns/d", "ns/e", "ns/f"]);
  const writing = [gp.scale(request("a", { decode: 1 }), signal())]; // −1
  await held.issued("ns/a");
  for (const dgd of ["d", "e", "f"]) {
    writing.push(gp.scale(request(dgd, { decode: 0 }), signal())); // −1 each
    await held.issued(`ns/${dgd}`);
  }
  // Landed: 11 + 5 = 16 ≤ 16; open while a's write may fail (17), whatever d, e and f do.
  const open = gp.scale(request("b", { prefill: 6 }), signal());
  const overCeiling = () => assert.rejects(gp.scale(request("c", { decode: 9 }), signal()), BudgetBreach);
  await settles("ns/b", 1);
  for (const [turn, dgd] of ["d", "e", "f"].entries()) {
    // b has stepped aside (turns 1 to 3): a request behind it is answered at once.
    await overCeiling();
    held.release(`ns/${dgd}`);
    await settles("ns/b", turn + 2);
  }
  assert.equal(STEP_ASIDE_TURNS, 3, "one settle per turn: three steps aside, the fourth turn holds");
  // b now holds its turn: c's request, which alone would be answered at once, waits behind it.
  const behind = gp.scale(request("c", { decode: 9 }), signal());
  assert.equal(await isDone(behind), false, "queued behind b's held turn");
  assert.equal(await isDone(open), false);
  held.release("ns/a");
  assert.equal((await open).status, "success");
  await assert.rejects(behind, BudgetBreach);
  for (const answer of await Promise.all(writing)) assert.equal(answer.status, "success");
  assert.deepEqual(port.applied, [
    "ns/d:decode=0",
    "ns/e:decode=0",
    "ns/f:decode=0",
    "ns/a:decode=1",
    "ns/b:prefill=6",
  ]);
});

Deno.test("a request aborted while it waits for writes in flight ends with the abort, and writes nothing", async () => {
  const port = fleet();
  const { gp, settles } = countingPlanner(port, 12);
  const held = holdEach(port, ["ns/a"]);
  const scaling = gp.scale(request("a", { decode: 1 }), signal()); // 11 − 1 = 10
  await held.issued("ns/a");
  const abort = new AbortController();
  const open = gp.scale(request("b", { prefill: 3 }), abort.signal); // 12 if a lands, 13 if not
  await settles("ns/b", 1);
  const reason = new Error("caller went away");
  abort.abort(reason);
  await assert.rejects(open, (e) => e === reason);
  held.release("ns/a");
  assert.equal((await scaling).status, "success");
  assert.deepEqual(port.applied, ["ns/a:decode=1"]);
  assert.equal(gp.writesInFlight, 0);
});
