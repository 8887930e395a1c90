/**
 * The budget planner with writes in flight: a standalone write leaves the decision queue once
 * issued, later decisions count it as landed and hold whichever way it ends, or wait for it.
 * Fleet (tests/support/fake_budget_port.ts): a = prefill 2×2 + decode 2×1, b = prefill 1×1 +
 * decode 2×2 → total 11.
 */
import assert from "node:assert/strict";
import { BudgetBreach, NotReady } from "../../src/errors.ts";
import { createLogger } from "../../src/ops/log.ts";
import { BudgetPlanner } from "../../src/service/budget_planner.ts";
import { fleet, request } from "../support/fake_budget_port.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const signal = () => new AbortController().signal;

/** A planner whose `budget decision` log lines resolve `settling` when one says `settle`. */
function planner(port: ReturnType<typeof fleet>, max: number, min = -1) {
  const settling = Promise.withResolvers<string>();
  const logger = createLogger({
    level: "info",
    sink: (line) => {
      const { message, decision, participant } = JSON.parse(line);
      if (message === "budget decision" && decision === "settle") settling.resolve(participant);
    },
  });
  const gp = new BudgetPlanner({
    port,
    bounds: { max, min },
    intentTtlSeconds: 300,
    logger,
    clock: () => 1000,
  });
  return { gp, settling: settling.promise };
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

Deno.test("two concurrent requests can never both pass against the same pre-scale state", async () => {
  const port = fleet();
  const { gp, settling } = planner(port, 12);
  const a = hold(port, "ns/a");
  const first = gp.scale(request("a", { decode: 3 }), signal()); // 11 + 1 = 12
  await a.issued;
  // 13 with a's write landed, 12 if it fails: b waits for it, then is judged on 12 + 1.
  const second = gp.scale(request("b", { prefill: 2 }), signal());
  second.catch(() => {});
  assert.equal(await Promise.race([settling, second.then(() => "answered", () => "answered")]), "ns/b");
  a.release();
  assert.equal((await first).status, "success");
  await assert.rejects(
    second,
    (e) =>
      e instanceof BudgetBreach &&
      e.message === "GPU budget breach: total 13 exceeds ceiling (12); no feasible pair packing",
  );
});

Deno.test("a decision that holds whichever way the write in flight ends is answered while it is in flight", async () => {
  const port = fleet();
  const { gp } = planner(port, 13);
  const a = hold(port, "ns/a");
  const first = gp.scale(request("a", { decode: 3 }), signal()); // 11 + 1 = 12
  await a.issued;
  assert.equal(gp.writesInFlight, 1);
  // 12 + 1 = 13 ≤ 13, and 12 if a's write fails.
  const second = await gp.scale(request("b", { prefill: 2 }), signal());
  assert.equal(second.status, "success");
  assert.deepEqual(port.applied, ["ns/b:prefill=2"]);
  a.release();
  assert.equal((await first).status, "success");
  assert.equal(gp.writesInFlight, 0);
});

Deno.test("a rejection that holds whichever way the write in flight ends is answered while it is in flight", async () => {
  const port = fleet();
  const { gp } = planner(port, 12);
  const a = hold(port, "ns/a");
  const first = gp.scale(request("a", { decode: 3 }), signal()); // 11 + 1 = 12
  await a.issued;
  // +2: 14 with a's write landed, 13 if it fails; over 12 either way.
  await assert.rejects(
    gp.scale(request("b", { prefill: 3 }), signal()),
    (e) =>
      e instanceof BudgetBreach &&
      e.message === "GPU budget breach: total 14 exceeds ceiling (12); no feasible pair packing",
  );
  assert.equal(gp.writesInFlight, 1, "answered while a's write was still in flight");
  a.release();
  assert.equal((await first).status, "success");
});

Deno.test("a decision the write in flight could change waits for it, then decides on the settled fleet", async (t) => {
  for (const aLands of [true, false]) {
    await t.step(aLands ? "the write lands" : "the write fails", async () => {
      const port = fleet();
      const { gp, settling } = planner(port, 12);
      const notReady = new NotReady("DynamoGraphDeployment is not ready (name: 'a' in namespace 'ns')");
      const a = hold(port, "ns/a", aLands ? undefined : notReady);
      const first = gp.scale(request("a", { decode: 1 }), signal()).catch((e) => e); // 11 − 1 = 10
      await a.issued;
      let answered = false;
      // 10 + 2 = 12 if a's write lands; 13 if it fails.
      const second = gp.scale(request("b", { prefill: 3 }), signal()).finally(() => (answered = true));
      second.catch(() => {});
      assert.equal(await Promise.race([settling, second.then(() => "answered", () => "answered")]), "ns/b");
      assert.equal(answered, false);
      a.release();
      if (aLands) {
        assert.equal((await second).status, "success");
        assert.deepEqual(port.applied, ["ns/a:decode=1", "ns/b:prefill=3"]);
      } else {
        // 11 + 2 = 13 > 12 alone; a's fresh intent (decode 1) is now a partner that frees one.
        assert.equal(await first, notReady);
        assert.equal((await second).status, "success");
        assert.deepEqual(port.applied, ["ns/a:decode=1", "ns/b:prefill=3"]);
      }
      assert.equal(gp.writesInFlight, 0);
    });
  }
});

Deno.test("a packing with partners waits for the writes in flight", async () => {
  const port = fleet();
  port.add("ns/c", "decode", 1, 1); // total 12
  const { gp, settling } = planner(port, 13);
  // a: prefill 2 → 3 = 14 > 13, rejected; its intent stays.
  await assert.rejects(gp.scale(request("a", { prefill: 3 }), signal()), BudgetBreach);
  const c = hold(port, "ns/c");
  const first = gp.scale(request("c", { decode: 2 }), signal()); // 13, standalone
  await c.issued;
  // b: decode 2 → 1 frees 2, a's intent takes them: a partner move, judged on the settled fleet.
  const second = gp.scale(request("b", { decode: 1 }), signal());
  assert.equal(await Promise.race([settling, second.then(() => "answered")]), "ns/b");
  assert.deepEqual(port.applied, []);
  c.release();
  assert.equal((await first).status, "success");
  assert.equal((await second).status, "success");
  assert.deepEqual(port.applied, ["ns/c:decode=2", "ns/b:decode=1", "ns/a:prefill=3"]);
});

Deno.test("a DGD's next request decides only once its write in flight is answered", async () => {
  const port = fleet();
  const { gp } = planner(port, 20);
  const a = hold(port, "ns/a");
  const first = gp.scale(request("a", { decode: 3 }), signal());
  await a.issued;
  const again = gp.scale(request("a", { decode: 4 }), signal());
  // b arrives after a's second request; it is answered while a's first write is held, and
  // a's second request has not looked at the fleet yet (one snapshot each for a's first and b).
  assert.equal((await gp.scale(request("b", { decode: 3 }), signal())).status, "success");
  assert.equal(port.snapshots, 2);
  a.release();
  await first;
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
  const first = gp.scale(request("a", { decode: 3 }), signal()); // would be 12
  await a.issued;
  assert.equal(gp.writesInFlight, 0);
  // Judged on 11, as if a's dry run had not happened: 11 + 1 = 12.
  assert.equal((await gp.scale(request("b", { prefill: 2 }), signal())).status, "success");
  a.release();
  assert.equal((await first).status, "success");
});
