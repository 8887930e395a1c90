import assert from "node:assert/strict";
import { DeadlineQueue, IdleTimer } from "../../src/runtime/deadlines.ts";

Deno.test.sanitizer({ ops: true, resources: true });

/** Resolves when `fire` is called; rejects after `ms` (a missing deadline fails loudly). */
function latch(ms = 5_000): { fire: () => void; fired: Promise<void>; done: () => void } {
  let fire!: () => void;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const fired = new Promise<void>((resolve, reject) => {
    fire = resolve;
    timer = setTimeout(() => reject(new Error("deadline never fired")), ms);
  });
  return { fire, fired, done: () => clearTimeout(timer) };
}

Deno.test("deadlines fire in order, never before their length has passed; cancelled ones never", async () => {
  const queue = new DeadlineQueue(30);
  const order: string[] = [];
  const last = latch();
  const startedA = performance.now();
  let elapsedA = -1;
  queue.add(() => {
    elapsedA = performance.now() - startedA;
    order.push("a");
  });
  const b = queue.add(() => order.push("b"));
  queue.add(() => {
    order.push("c");
    last.fire();
  });
  b.cancel();
  b.cancel(); // idempotent
  await last.fired;
  last.done();
  assert.deepEqual(order, ["a", "c"]);
  assert.ok(elapsedA >= 30, `fired after ${elapsedA} ms`);
  assert.equal(queue.size, 0);
  assert.equal(queue.armed, false);
});

Deno.test("cancelling the last pending deadline leaves no timer behind", () => {
  const queue = new DeadlineQueue(60_000);
  const a = queue.add(() => assert.fail("cancelled"));
  const b = queue.add(() => assert.fail("cancelled"));
  assert.equal(queue.size, 2);
  a.cancel();
  assert.equal(queue.armed, true);
  b.cancel();
  assert.equal(queue.size, 0);
  assert.equal(queue.armed, false);
});

Deno.test("a deadline added by a firing one is kept and fires too", async () => {
  const queue = new DeadlineQueue(10);
  const second = latch();
  queue.add(() => queue.add(second.fire));
  await second.fired;
  second.done();
  assert.equal(queue.armed, false);
});

Deno.test("an idle timer fires only after a full period without a touch", async () => {
  const idle = latch();
  let touchedAt = 0;
  let firedAfter = -1;
  const timer = new IdleTimer(40, () => {
    firedAfter = performance.now() - touchedAt;
    idle.fire();
  });
  // Touched from a timer of half the period: the first check finds recent activity.
  const touched = new Promise<void>((resolve) =>
    setTimeout(() => {
      touchedAt = performance.now();
      timer.touch();
      resolve();
    }, 20)
  );
  await touched;
  await idle.fired;
  idle.done();
  assert.ok(firedAfter >= 40, `idle after ${firedAfter} ms since the touch`);
  timer.stop();
});

Deno.test("a stopped idle timer never fires", () => {
  const timer = new IdleTimer(10, () => assert.fail("stopped"));
  timer.stop();
  timer.stop();
});
