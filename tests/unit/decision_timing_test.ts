/**
 * Decision time: where the scaling use cases observe it (the write issued, or the answer known,
 * never the write's round trip) on an injected clock, and how the metric buckets it.
 */
import assert from "node:assert/strict";
import { BudgetBreach, NotReady } from "../../src/errors.ts";
import { createGlobalPlannerMetrics, DECISION_DURATION_BUCKETS } from "../../src/ops/gp_metrics.ts";
import { createLogger } from "../../src/ops/log.ts";
import { BudgetPlanner } from "../../src/service/budget_planner.ts";
import { DecisionTimer } from "../../src/service/decision_timer.ts";
import {
  type AppliedTargets,
  type PlannedTarget,
  type ScalePort,
  ScaleUseCase,
  type ScaleView,
} from "../../src/service/scale_use_case.ts";
import { fleet, request } from "../support/fake_budget_port.ts";

Deno.test.sanitizer({ ops: true, resources: true });

const logger = createLogger({ level: "error", sink: () => {} });
const signal = () => new AbortController().signal;

/** A clock the fakes advance: milliseconds. */
function manualClock() {
  let now = 1000;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

Deno.test("metric: a decision lands in the finest bucket holding it, once per span", () => {
  const m = createGlobalPlannerMetrics({ version: "0.0.0", denoVersion: "x" });
  m.recordDecision(0.002, 0.0005);
  m.recordDecision(0.0020001, 0.00175);
  const text = m.render();
  const bucket = (span: string, le: string) =>
    Number(
      new RegExp(
        `^dynamo_global_planner_scale_decision_duration_seconds_bucket\\{span="${span}",le="${le}"\\} (\\d+)$`,
        "m",
      ).exec(text)?.[1],
    );
  // 2 ms exactly is within the 2 ms bound; a hair above is not.
  assert.equal(bucket("receipt", "0.00175"), 0);
  assert.equal(bucket("receipt", "0.002"), 1);
  assert.equal(bucket("receipt", "0.0025"), 2);
  assert.equal(bucket("turn", "0.00025"), 0);
  assert.equal(bucket("turn", "0.0005"), 1);
  assert.equal(bucket("turn", "0.0015"), 1);
  assert.equal(bucket("turn", "0.00175"), 2);
  assert.match(text, /^dynamo_global_planner_scale_decision_duration_seconds_count\{span="receipt"\} 2$/m);
  assert.ok(DECISION_DURATION_BUCKETS.includes(0.002));
});

Deno.test("timer: only the first decision counts; the turn splits the wait from the decision", () => {
  const clock = manualClock();
  const seen: [number, number][] = [];
  const timer = new DecisionTimer({ clock: clock.now, observe: (s, t) => seen.push([s, t]) });
  clock.advance(3); // waiting for the decisions ahead
  timer.turn();
  clock.advance(1);
  timer.turn(); // a second call does not move the turn's start
  timer.decided();
  clock.advance(5);
  timer.decided();
  assert.deepEqual(seen, [[0.004, 0.001]]);
});

Deno.test("budget: the decision is observed before the write's round trip, and a rejection when it is known", async () => {
  const clock = manualClock();
  const port = fleet(); // total 11
  const snapshot = port.snapshot.bind(port);
  port.snapshot = () => (clock.advance(1), snapshot());
  port.beforeApply = () => (clock.advance(50), Promise.resolve());
  const seen: [number, number][] = [];
  const gp = new BudgetPlanner({
    port,
    bounds: { max: 12, min: -1 },
    intentTtlSeconds: 300,
    logger,
    clock: () => 1000,
    decisions: { clock: clock.now, observe: (s, t) => seen.push([s, t]) },
  });
  await gp.scale(request("a", { decode: 3 }), signal()); // 12: approved, one write
  await assert.rejects(gp.scale(request("b", { prefill: 2 }), signal()), BudgetBreach); // 13 > 12
  assert.deepEqual(seen, [[0.001, 0.001], [0.001, 0.001]]);
});

Deno.test("budget: a request waiting behind another's write counts the wait from its receipt, not in its turn", async () => {
  const clock = manualClock();
  const port = fleet();
  const release = Promise.withResolvers<void>();
  const applying = Promise.withResolvers<void>();
  port.beforeApply = (participant) => {
    if (participant !== "ns/a") return Promise.resolve();
    applying.resolve();
    return release.promise;
  };
  const seen: [number, number][] = [];
  const gp = new BudgetPlanner({
    port,
    bounds: { max: 20, min: -1 },
    intentTtlSeconds: 300,
    logger,
    clock: () => 1000,
    decisions: { clock: clock.now, observe: (s, t) => seen.push([s, t]) },
  });
  const first = gp.scale(request("a", { decode: 3 }), signal());
  await applying.promise; // a's decision is made; its write is in flight
  const second = gp.scale(request("b", { prefill: 2 }), signal());
  clock.advance(7); // a's write takes 7 ms
  release.resolve();
  await Promise.all([first, second]);
  assert.deepEqual(seen, [[0, 0], [0.007, 0]]);
});

interface View extends ScaleView {
  replicas: number;
}

/** One DGD with one component in memory; reads and writes advance the clock. */
function memoryPort(clock: ReturnType<typeof manualClock>, view: View) {
  const writes: number[] = [];
  const port: ScalePort<View, PlannedTarget, AppliedTargets> = {
    read: () => (clock.advance(0.5), Promise.resolve(view)),
    resolve: (v, targets) =>
      targets.map((t) => ({
        role: t.sub_component_type,
        desired: t.desired_replicas,
        component: { name: "c", replicas: v.replicas },
      })),
    replicas: (v) => ({ decode: v.replicas }),
    write: (_ref, _v, targets) => {
      clock.advance(10);
      writes.push(targets[0].desired);
      return Promise.resolve({
        written: new Map([["c", targets[0].desired]]),
        replicas: { decode: targets[0].desired },
      });
    },
    waitApplied: () => Promise.resolve(),
  };
  return { port, writes };
}

Deno.test("no budget: the decision is observed before the write, and a refusal when it is known", async () => {
  const clock = manualClock();
  const seen: [number, number][] = [];
  const view: View = { ready: true, annotations: {}, replicas: 1 };
  const { port, writes } = memoryPort(clock, view);
  const scaler = new ScaleUseCase({
    port,
    logger,
    decisions: { clock: clock.now, observe: (s, t) => seen.push([s, t]) },
  });
  const req = (n: number) => ({ ...request("a", { decode: n }), k8s_namespace: "ns" });
  await scaler.scale(req(2), signal());
  assert.deepEqual(writes, [2]);
  view.ready = false;
  await assert.rejects(scaler.scale(req(3), signal()), NotReady);
  assert.deepEqual(seen, [[0.0005, 0.0005], [0.0005, 0.0005]]);
});
