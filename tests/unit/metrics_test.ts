import assert from "node:assert/strict";
import { Registry } from "../../src/ops/metrics.ts";
import { createGlobalPlannerMetrics, METRIC_PREFIX, SCALE_REASONS } from "../../src/ops/gp_metrics.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("counter and gauge render HELP, TYPE and sorted series exactly", () => {
  const registry = new Registry();
  const requests = registry.counter({
    name: "req_total",
    help: "Requests.",
    labelNames: ["code", "method"],
  });
  const up = registry.gauge({ name: "up", help: "Up." });
  requests.inc({ method: "post", code: "500" });
  requests.add(2, { code: "200", method: "get" });
  requests.inc({ code: "200", method: "get" });
  up.set(1);
  assert.equal(
    registry.render(),
    [
      "# HELP req_total Requests.",
      "# TYPE req_total counter",
      'req_total{code="200",method="get"} 3',
      'req_total{code="500",method="post"} 1',
      "# HELP up Up.",
      "# TYPE up gauge",
      "up 1",
      "",
    ].join("\n"),
  );
});

Deno.test("label values escape backslash, quote and newline; HELP escapes backslash and newline", () => {
  const registry = new Registry();
  const g = registry.gauge({ name: "g", help: 'a "q" \\ b\nc', labelNames: ["v"] });
  g.set(1, { v: 'x\\y"z\nw' });
  assert.equal(
    registry.render(),
    '# HELP g a "q" \\\\ b\\nc\n# TYPE g gauge\ng{v="x\\\\y\\"z\\nw"} 1\n',
  );
});

Deno.test("histogram renders cumulative buckets, +Inf, _sum and _count", () => {
  const registry = new Registry();
  const h = registry.histogram({
    name: "lat_seconds",
    help: "Latency.",
    labelNames: ["result"],
    buckets: [0.1, 1, 2.5],
  });
  for (const v of [0.05, 0.1, 0.5, 3, 10]) h.observe(v, { result: "ok" });
  assert.equal(
    registry.render(),
    [
      "# HELP lat_seconds Latency.",
      "# TYPE lat_seconds histogram",
      'lat_seconds_bucket{result="ok",le="0.1"} 2',
      'lat_seconds_bucket{result="ok",le="1"} 3',
      'lat_seconds_bucket{result="ok",le="2.5"} 3',
      'lat_seconds_bucket{result="ok",le="+Inf"} 5',
      'lat_seconds_sum{result="ok"} 13.65',
      'lat_seconds_count{result="ok"} 5',
      "",
    ].join("\n"),
  );
});

Deno.test("label-less histogram exists at zero before any observation", () => {
  const registry = new Registry();
  registry.histogram({ name: "h", help: "H.", buckets: [1] });
  assert.equal(
    registry.render(),
    '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 0\nh_bucket{le="+Inf"} 0\nh_sum 0\nh_count 0\n',
  );
});

Deno.test("special values use the format's spelling", () => {
  const registry = new Registry();
  const g = registry.gauge({ name: "g", help: "G.", labelNames: ["k"] });
  g.set(Infinity, { k: "a" });
  g.set(-Infinity, { k: "b" });
  g.set(NaN, { k: "c" });
  g.set(1.5e-7, { k: "d" });
  assert.deepEqual(registry.render().split("\n").slice(2, 6), [
    'g{k="a"} +Inf',
    'g{k="b"} -Inf',
    'g{k="c"} NaN',
    'g{k="d"} 1.5e-7',
  ]);
});

Deno.test("families sort by name; labelled families without series show only HELP/TYPE", () => {
  const registry = new Registry();
  registry.gauge({ name: "zz", help: "Z.", labelNames: ["a"] });
  registry.counter({ name: "aa_total", help: "A." });
  assert.equal(
    registry.render(),
    "# HELP aa_total A.\n# TYPE aa_total counter\naa_total 0\n# HELP zz Z.\n# TYPE zz gauge\n",
  );
});

Deno.test("remove and clear drop series", () => {
  const registry = new Registry();
  const g = registry.gauge({ name: "g", help: "G.", labelNames: ["dgd"] });
  g.set(1, { dgd: "a" });
  g.set(2, { dgd: "b" });
  g.remove({ dgd: "a" });
  assert.match(registry.render(), /^g\{dgd="b"\} 2$/m);
  assert.doesNotMatch(registry.render(), /dgd="a"/);
  g.clear();
  assert.equal(registry.render(), "# HELP g G.\n# TYPE g gauge\n");
});

Deno.test("misuse is refused loudly", () => {
  const registry = new Registry();
  const c = registry.counter({ name: "c_total", help: "C.", labelNames: ["a"] });
  assert.throws(() => c.add(-1, { a: "x" }), /only increase/);
  assert.throws(() => c.inc({ b: "x" } as unknown as { a: string }), /takes labels \[a\], got \[b\]/);
  assert.throws(() => registry.gauge({ name: "c_total", help: "dup" }), /clashes/);
  registry.histogram({ name: "h", help: "H.", buckets: [1] });
  assert.throws(() => registry.counter({ name: "h_count", help: "clash" }), /clashes/);
  assert.throws(() => registry.gauge({ name: "bad-name", help: "" }), /invalid metric name/);
  assert.throws(() => registry.gauge({ name: "g", help: "", labelNames: ["__x"] }), /invalid label/);
  assert.throws(
    () => registry.histogram({ name: "h2", help: "", labelNames: ["le"], buckets: [1] }),
    /"le"/,
  );
  assert.throws(() => registry.histogram({ name: "h3", help: "", buckets: [2, 1] }), /ascending/);
});

Deno.test("Global Planner metrics: names, pre-created reasons, facade", () => {
  const m = createGlobalPlannerMetrics({ version: "1.2.3", denoVersion: "9.9.9" });
  const fresh = m.render();
  for (const reason of SCALE_REASONS) {
    assert.match(
      fresh,
      new RegExp(`^${METRIC_PREFIX}scale_requests_total\\{result="\\w+",reason="${reason}"\\} 0$`, "m"),
    );
  }
  assert.match(fresh, /^dynamo_global_planner_build_info\{version="1.2.3",deno="9.9.9"\} 1$/m);
  assert.match(fresh, /^dynamo_global_planner_gpu_budget_max \+Inf$/m);
  assert.match(fresh, /^dynamo_global_planner_discovery_registered 0$/m);
  assert.match(fresh, /^dynamo_global_planner_budget_writes_in_flight 0$/m);
  for (const line of fresh.split("\n").filter((l) => l && !l.startsWith("#"))) {
    assert.ok(line.startsWith(METRIC_PREFIX), line);
  }

  m.recordScale("rejected", "rejected_budget", 0.003);
  m.setManagedGpus({ "ns/a": 4, "ns/b": 2 });
  m.setManagedGpus({ "ns/b": 3 });
  m.setGpuBudget({ max: 16, min: 2 });
  m.setDiscoveryRegistered(true);
  m.setDgdWatchUp(true);
  m.countBudgetDecision("settle");
  m.countBudgetDecision("approve");
  m.countBudgetDecision("settle");
  m.setBudgetWritesInFlight(3);
  const release = m.trackInflight();
  m.trackInflight();
  release();
  release();
  const text = m.render();
  assert.match(
    text,
    /^dynamo_global_planner_scale_requests_total\{result="rejected",reason="rejected_budget"\} 1$/m,
  );
  assert.match(
    text,
    /^dynamo_global_planner_scale_request_duration_seconds_bucket\{result="rejected",le="0.005"\} 1$/m,
  );
  assert.match(text, /^dynamo_global_planner_scale_request_duration_seconds_count\{result="rejected"\} 1$/m);
  assert.doesNotMatch(text, /dgd="ns\/a"/);
  assert.match(text, /^dynamo_global_planner_managed_gpus\{dgd="ns\/b"\} 3$/m);
  assert.match(text, /^dynamo_global_planner_managed_gpus_total 3$/m);
  assert.match(text, /^dynamo_global_planner_gpu_budget_max 16$/m);
  assert.match(text, /^dynamo_global_planner_gpu_budget_min 2$/m);
  assert.match(text, /^dynamo_global_planner_discovery_registered 1$/m);
  assert.match(text, /^dynamo_global_planner_dgd_watch_up 1$/m);
  assert.match(text, /^dynamo_global_planner_inflight_requests 1$/m);
  assert.match(text, /^dynamo_global_planner_budget_decisions_total\{decision="settle"\} 2$/m);
  assert.match(text, /^dynamo_global_planner_budget_decisions_total\{decision="approve"\} 1$/m);
  assert.match(text, /^dynamo_global_planner_budget_writes_in_flight 3$/m);
});

Deno.test("managed GPUs: each picture replaces the last (unchanged, changed, gone and new DGDs)", () => {
  const m = createGlobalPlannerMetrics({ version: "1.2.3", denoVersion: "9.9.9" });
  const series = () =>
    Object.fromEntries(
      [...m.render().matchAll(/^dynamo_global_planner_managed_gpus\{dgd="([^"]+)"\} (\S+)$/gm)].map((
        x,
      ) => [x[1], Number(x[2])]),
    );
  m.setManagedGpus({ "ns/a": 4, "ns/b": 2, "ns/c": 1 });
  m.setManagedGpus({ "ns/a": 4, "ns/b": 5, "ns/d": 0 });
  assert.deepEqual(series(), { "ns/a": 4, "ns/b": 5, "ns/d": 0 });
  assert.match(m.render(), /^dynamo_global_planner_managed_gpus_total 9$/m);
  m.setManagedGpus({ "ns/c": 1 }); // c returns after being dropped
  assert.deepEqual(series(), { "ns/c": 1 });
  m.setManagedGpus({});
  assert.deepEqual(series(), {});
  assert.match(m.render(), /^dynamo_global_planner_managed_gpus_total 0$/m);
});

Deno.test("managed GPUs: an update sets only the DGDs it names and moves the total with them", () => {
  const m = createGlobalPlannerMetrics({ version: "1.2.3", denoVersion: "9.9.9" });
  const series = () =>
    Object.fromEntries(
      [...m.render().matchAll(/^dynamo_global_planner_managed_gpus\{dgd="([^"]+)"\} (\S+)$/gm)].map((
        x,
      ) => [x[1], Number(x[2])]),
    );
  m.setManagedGpus({ "ns/a": 4, "ns/b": 2 });
  m.updateManagedGpus({ "ns/b": 5, "ns/c": 1 });
  assert.deepEqual(series(), { "ns/a": 4, "ns/b": 5, "ns/c": 1 });
  assert.match(m.render(), /^dynamo_global_planner_managed_gpus_total 10$/m);
  m.updateManagedGpus({ "ns/a": 4 });
  assert.match(m.render(), /^dynamo_global_planner_managed_gpus_total 10$/m);
  // A later whole picture still replaces everything, the updated DGDs included.
  m.setManagedGpus({ "ns/c": 2 });
  assert.deepEqual(series(), { "ns/c": 2 });
  m.updateManagedGpus({ "ns/c": 3 });
  assert.match(m.render(), /^dynamo_global_planner_managed_gpus_total 3$/m);
});
