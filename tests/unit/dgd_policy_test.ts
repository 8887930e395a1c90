import assert from "node:assert/strict";
import { PolicyAnnotationError } from "../../src/errors.ts";
import {
  adjustmentText,
  ANNOTATION,
  applyPolicy,
  MAX_STABILIZATION_SECONDS,
  maxAnnotation,
  minAnnotation,
  NO_POLICY,
  readPolicy,
  Recommendations,
} from "../../src/service/dgd_policy.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const P = "globalplanner.dynamo.example/";

Deno.test("annotation names: one prefix, documented in the README", async () => {
  assert.equal(ANNOTATION.paused, `${P}paused`);
  assert.equal(minAnnotation("prefill"), `${P}prefill-min-replicas`);
  assert.equal(maxAnnotation("decode"), `${P}decode-max-replicas`);
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  for (
    const key of [
      ANNOTATION.paused,
      ANNOTATION.stabilization,
      ANNOTATION.scaleUpLimit,
      ANNOTATION.scaleDownLimit,
      ANNOTATION.lastRequest,
      minAnnotation("prefill"),
      maxAnnotation("prefill"),
    ]
  ) {
    assert.ok(readme.includes(key.slice(P.length)), `README documents ${key}`);
  }
});

Deno.test("no annotation of ours: no policy, nothing adjusted", () => {
  assert.deepEqual(readPolicy({ "other.io/x": "1" }, "ns/d"), {
    ...NO_POLICY,
    scaleUpLimit: undefined,
    scaleDownLimit: undefined,
  });
  const out = applyPolicy(readPolicy({}, "ns/d"), [{ role: "prefill", current: 1, requested: 9 }], {
    dgd: "ns/d",
    now: 0,
    history: new Recommendations(),
  });
  assert.deepEqual(out, [{ role: "prefill", current: 1, requested: 9, desired: 9, why: [] }]);
  assert.equal(adjustmentText(out), undefined);
});

Deno.test("readPolicy: values are checked, bad ones fail the request naming the annotation", () => {
  const bad = (annotations: Record<string, string>, pattern: RegExp) =>
    assert.throws(
      () => readPolicy(annotations, "ns/d"),
      (e) => e instanceof PolicyAnnotationError && pattern.test(e.message),
    );
  bad({ [ANNOTATION.paused]: "yes" }, /paused: expected "true" or "false", got "yes"/);
  bad({ [minAnnotation("prefill")]: "-1" }, /prefill-min-replicas: expected a whole number >= 0, got "-1"/);
  bad({ [maxAnnotation("decode")]: "2.5" }, /decode-max-replicas/);
  bad(
    { [minAnnotation("decode")]: "3", [maxAnnotation("decode")]: "2" },
    /decode-min-replicas \(3\) exceeds/,
  );
  bad({ [ANNOTATION.stabilization]: String(MAX_STABILIZATION_SECONDS + 1) }, /from 0 to 3600/);
  assert.equal(
    readPolicy({ [ANNOTATION.stabilization]: String(MAX_STABILIZATION_SECONDS) }, "d").stabilizationSeconds,
    3600,
  );
  assert.equal(
    readPolicy({ [minAnnotation("decode")]: "2", [maxAnnotation("decode")]: "2" }, "d").min.decode,
    2,
  );
  assert.equal(readPolicy({ [ANNOTATION.paused]: " TRUE " }, "d").paused, true);
  assert.equal(readPolicy({ [ANNOTATION.paused]: "false" }, "d").paused, false);
});

Deno.test("min/max clamp at the boundary, not one beyond", () => {
  const policy = readPolicy({ [minAnnotation("prefill")]: "2", [maxAnnotation("prefill")]: "5" }, "d");
  const run = (requested: number) =>
    applyPolicy(policy, [{ role: "prefill", current: 3, requested }], {
      dgd: "d",
      now: 0,
      history: new Recommendations(),
    })[0];
  assert.equal(run(5).desired, 5);
  assert.deepEqual(run(6).why, [`${P}prefill-max-replicas 5`]);
  assert.equal(run(6).desired, 5);
  assert.equal(run(2).desired, 2);
  assert.equal(run(1).desired, 2);
  assert.equal(adjustmentText([run(6)]), `prefill 6 → 5 (${P}prefill-max-replicas 5)`);
  // Other roles are not bounded by prefill's annotations.
  assert.equal(
    applyPolicy(policy, [{ role: "decode", current: 1, requested: 9 }], {
      dgd: "d",
      now: 0,
      history: new Recommendations(),
    })[0]
      .desired,
    9,
  );
});

Deno.test("scale-down stabilization: the highest recommendation within the window wins (HPA)", () => {
  const policy = readPolicy({ [ANNOTATION.stabilization]: "60" }, "d");
  const history = new Recommendations();
  const step = (now: number, current: number, requested: number) =>
    applyPolicy(policy, [{ role: "decode", current, requested }], { dgd: "d", now, history })[0].desired;
  assert.equal(step(0, 4, 6), 6, "scale-up is not delayed");
  assert.equal(step(10, 6, 2), 6, "6 was recommended 10 s ago");
  assert.equal(step(59, 6, 3), 6, "still inside the window");
  assert.equal(step(60, 6, 3), 3, "the 6 of t=0 left the window at exactly 60 s; 3 is the highest since");
  assert.equal(step(61, 3, 1), 3, "3 at t=59/60 is still in the window");
  assert.equal(step(200, 3, 1), 1, "window passed");
  assert.equal(step(201, 1, 0), 1);
  // Never above the current count: stabilization only slows a scale-down.
  assert.equal(step(300, 2, 9), 9);
  assert.equal(step(301, 2, 1), 2);
});

Deno.test("rate limits: at most N more or fewer per request; bounds win over the limit", () => {
  const policy = readPolicy({
    [ANNOTATION.scaleUpLimit]: "2",
    [ANNOTATION.scaleDownLimit]: "1",
    [maxAnnotation("prefill")]: "4",
  }, "d");
  const run = (current: number, requested: number) =>
    applyPolicy(policy, [{ role: "prefill", current, requested }], {
      dgd: "d",
      now: 0,
      history: new Recommendations(),
    })[0];
  assert.equal(run(1, 3).desired, 3);
  assert.equal(run(1, 4).desired, 3);
  assert.match(run(1, 4).why.join(), /scale-up-limit 2 per request/);
  assert.equal(run(3, 2).desired, 2);
  assert.equal(run(3, 0).desired, 2);
  assert.equal(run(9, 0).desired, 4, "current above max: the bound holds over the rate limit");
});

Deno.test("Recommendations stay bounded", () => {
  const history = new Recommendations();
  for (let i = 0; i < 5000; i++) history.highest("k", i % 3, i, 10_000);
  assert.equal(history.highest("k", 0, 5000, 10_000), 2);
  assert.equal(history.size, 1);
});

Deno.test("stabilization starts from the current count (a fresh process does not scale down at once)", () => {
  const policy = readPolicy({ [ANNOTATION.stabilization]: "30" }, "d");
  const history = new Recommendations();
  const step = (now: number, current: number, requested: number) =>
    applyPolicy(policy, [{ role: "decode", current, requested }], { dgd: "d", now, history })[0].desired;
  assert.equal(step(100, 5, 1), 5);
  assert.equal(step(129, 5, 1), 5);
  assert.equal(step(130, 5, 1), 1);
});
