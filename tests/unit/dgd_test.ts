import assert from "node:assert/strict";
import { DgdShapeError, InvalidRequest, outcomeOf, TargetResolutionError } from "../../src/errors.ts";
import {
  adapterName,
  adapterScalePatch,
  currentReplicas,
  dgdReplicaPatch,
  isReady,
  JSON_PATCH,
  MERGE_PATCH,
  resolveTargets,
  viewDgd,
} from "../../src/kube/dgd.ts";
import type { TargetReplica } from "../../src/service/contract.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const READY = { conditions: [{ type: "Ready", status: "True", reason: "all_resources_are_ready" }] };

function alpha(services: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: "nvidia.com/v1alpha1",
    kind: "DynamoGraphDeployment",
    metadata: { name: "llm", namespace: "team-a", resourceVersion: "42", generation: 3 },
    spec: { services },
    status: READY,
    ...extra,
  };
}

function beta(components: unknown[], extra: Record<string, unknown> = {}) {
  return {
    apiVersion: "nvidia.com/v1beta1",
    kind: "DynamoGraphDeployment",
    metadata: { name: "llm", namespace: "team-a" },
    spec: { components },
    status: READY,
    ...extra,
  };
}

function target(type: "prefill" | "decode", desired: number, name: string | null = null): TargetReplica {
  return { sub_component_type: type, component_name: name, desired_replicas: desired };
}

const DISAGG_ALPHA = alpha({
  Frontend: { componentType: "frontend", replicas: 1 },
  VllmPrefillWorker: { componentType: "worker", subComponentType: "prefill", replicas: 2 },
  VllmDecodeWorker: {
    componentType: "worker",
    subComponentType: "decode",
    scalingAdapter: { enabled: true },
  },
});

const DISAGG_BETA = beta([
  { name: "Frontend", type: "frontend", replicas: 1 },
  { name: "prefill-worker", type: "prefill", replicas: 2, scalingAdapter: {} },
  { name: "decode-worker", type: "decode", replicas: 4 },
]);

function assertThrows(fn: () => unknown, kind: new (...args: never[]) => Error, message: string) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof kind, `expected ${kind.name}, got ${error}`);
    assert.equal(error.message, message);
    return true;
  });
}

// --- viewDgd -------------------------------------------------------------------------------

Deno.test("viewDgd reads a v1alpha1 services map", () => {
  const view = viewDgd(DISAGG_ALPHA);
  assert.equal(view.apiVersion, "v1alpha1");
  assert.equal(view.shape, "services");
  assert.equal(view.name, "llm");
  assert.equal(view.namespace, "team-a");
  assert.equal(view.resourceVersion, "42");
  assert.equal(view.generation, 3);
  assert.equal(view.ready, true);
  const [frontend, prefill, decode] = view.components;
  assert.deepEqual(
    [frontend.name, frontend.type, frontend.role, frontend.replicas, frontend.index],
    ["Frontend", "frontend", undefined, 1, undefined],
  );
  assert.deepEqual([prefill.role, prefill.subComponentType, prefill.replicas], ["prefill", "prefill", 2]);
  assert.equal(prefill.scalingAdapter, false);
  assert.deepEqual([decode.role, decode.replicas, decode.scalingAdapter], ["decode", 0, true]);
});

Deno.test("viewDgd reads a v1beta1 components list with indexes and adapter presence", () => {
  const view = viewDgd(DISAGG_BETA);
  assert.equal(view.apiVersion, "v1beta1");
  assert.equal(view.shape, "components");
  assert.deepEqual(
    view.components.map((c) => [c.name, c.index, c.type, c.role, c.replicas, c.scalingAdapter]),
    [
      ["Frontend", 0, "frontend", undefined, 1, false],
      ["prefill-worker", 1, "prefill", "prefill", 2, true],
      ["decode-worker", 2, "decode", "decode", 4, false],
    ],
  );
});

Deno.test("viewDgd: v1alpha1 scalingAdapter needs enabled: true; roles only from subComponentType", () => {
  const view = viewDgd(alpha({
    a: { scalingAdapter: {} },
    b: { scalingAdapter: { enabled: false } },
    c: { componentType: "prefill", subComponentType: "other" },
  }));
  assert.deepEqual(view.components.map((c) => c.scalingAdapter), [false, false, false]);
  assert.equal(view.components[2].role, undefined);
});

Deno.test("viewDgd: components win over services, whatever the apiVersion", () => {
  const both = {
    ...alpha({ old: { subComponentType: "decode", replicas: 9 } }),
    spec: {
      services: { old: { subComponentType: "decode", replicas: 9 } },
      components: [{ name: "new", type: "decode", replicas: 1 }],
    },
  };
  const view = viewDgd(both);
  assert.equal(view.apiVersion, "v1alpha1");
  assert.equal(view.shape, "components");
  assert.deepEqual(view.components.map((c) => c.name), ["new"]);
  const servicesUnderBeta = { ...beta([]), spec: { services: { s: { subComponentType: "prefill" } } } };
  assert.equal(viewDgd(servicesUnderBeta).shape, "services");
});

Deno.test("viewDgd: an empty spec takes its layout from apiVersion", () => {
  assert.equal(viewDgd({ ...alpha({}), spec: {} }).shape, "services");
  assert.equal(viewDgd({ ...beta([]), spec: {} }).shape, "components");
  assert.deepEqual(viewDgd({ ...beta([]), spec: {} }).components, []);
});

Deno.test("viewDgd rejects malformed objects with DgdShapeError", () => {
  const cases: [unknown, string][] = [
    [null, "DynamoGraphDeployment must be an object, got null"],
    [[], "DynamoGraphDeployment must be an object, got a list"],
    [
      { ...alpha({}), apiVersion: "nvidia.com/v2" },
      'DynamoGraphDeployment apiVersion must be nvidia.com/v1alpha1 or nvidia.com/v1beta1, got "nvidia.com/v2"',
    ],
    [
      { ...alpha({}), apiVersion: undefined },
      "DynamoGraphDeployment apiVersion must be nvidia.com/v1alpha1 or nvidia.com/v1beta1, got nothing",
    ],
    [{ ...alpha({}), kind: "Deployment" }, 'expected kind DynamoGraphDeployment, got "Deployment"'],
    [
      { ...alpha({}), metadata: { name: "x" } },
      "DynamoGraphDeployment must have metadata.name and metadata.namespace",
    ],
    [{ ...alpha({}), spec: undefined }, "DynamoGraphDeployment 'team-a/llm' has no spec"],
    [
      { ...alpha({}), spec: { services: [] } },
      "DynamoGraphDeployment 'team-a/llm' spec.services must be a map",
    ],
    [alpha({ s: null }), "DynamoGraphDeployment 'team-a/llm' spec.services.s must be an object"],
    [
      { ...beta([]), spec: { components: {} } },
      "DynamoGraphDeployment 'team-a/llm' spec.components must be a list",
    ],
    [beta([{ type: "decode" }]), "DynamoGraphDeployment 'team-a/llm' spec.components[0] has no name"],
    [
      beta([{ name: "Worker" }, { name: "worker" }]),
      "DynamoGraphDeployment 'team-a/llm' has two components named 'worker'",
    ],
    [
      alpha({ s: { replicas: -1 } }),
      "DynamoGraphDeployment 'team-a/llm' spec.services.s.replicas is -1, not a non-negative integer",
    ],
    [
      beta([{ name: "w", replicas: "2" }]),
      "DynamoGraphDeployment 'team-a/llm' spec.components[0].replicas is \"2\", not a non-negative integer",
    ],
  ];
  for (const [object, message] of cases) assertThrows(() => viewDgd(object), DgdShapeError, message);
});

// --- readiness -----------------------------------------------------------------------------

Deno.test("isReady: only a Ready condition with status True counts", () => {
  const withConditions = (conditions: unknown) => alpha({}, { status: { conditions } });
  assert.equal(isReady(DISAGG_ALPHA), true);
  assert.equal(isReady(alpha({}, { status: undefined })), false);
  assert.equal(isReady(alpha({}, { status: {} })), false);
  assert.equal(isReady(withConditions([])), false);
  assert.equal(isReady(withConditions("Ready")), false);
  assert.equal(isReady(withConditions([{ type: "Ready", status: "False" }])), false);
  assert.equal(isReady(withConditions([{ type: "Ready", status: "Unknown" }])), false);
  assert.equal(isReady(withConditions([{ type: "Ready", status: true }])), false);
  assert.equal(isReady(withConditions([{ type: "Available", status: "True" }])), false);
  assert.equal(
    isReady(
      withConditions([null, { type: "Progressing", status: "True" }, { type: "Ready", status: "True" }]),
    ),
    true,
  );
  assert.equal(isReady(null), false);
  assert.equal(viewDgd(withConditions([{ type: "Ready", status: "False" }])).ready, false);
});

// --- resolveTargets ------------------------------------------------------------------------

Deno.test("resolveTargets maps roles to services and components", () => {
  for (const object of [DISAGG_ALPHA, DISAGG_BETA]) {
    const view = viewDgd(object);
    const resolved = resolveTargets(view, [target("decode", 5), target("prefill", 1)]);
    assert.deepEqual(
      resolved.map((r) => [r.role, r.component.role, r.desired]),
      [["decode", "decode", 5], ["prefill", "prefill", 1]],
    );
  }
  const named = resolveTargets(viewDgd(DISAGG_BETA), [target("decode", 3, "Frontend")]);
  assert.equal(named[0].component.name, "decode-worker", "a role match wins over component_name");
});

Deno.test("resolveTargets: empty targets are refused", () => {
  assertThrows(
    () => resolveTargets(viewDgd(DISAGG_ALPHA), []),
    TargetResolutionError,
    "target_replicas cannot be empty",
  );
});

Deno.test("resolveTargets: not-found messages, v1alpha1 and newest wording", () => {
  const prefillOnlyAlpha = viewDgd(alpha({ p: { subComponentType: "prefill" } }));
  assertThrows(
    () => resolveTargets(prefillOnlyAlpha, [target("decode", 1)]),
    TargetResolutionError,
    "DynamoGraphDeployment must contain a service with subComponentType 'decode'",
  );
  const prefillOnlyBeta = viewDgd(beta([{ name: "p", type: "prefill" }]));
  assertThrows(
    () => resolveTargets(prefillOnlyBeta, [target("decode", 1)]),
    TargetResolutionError,
    "DynamoGraphDeployment must contain a component with type 'decode'",
  );
});

Deno.test("resolveTargets: several matches list the names sorted", () => {
  const alphaView = viewDgd(alpha({
    zeta: { subComponentType: "decode" },
    alpha: { subComponentType: "decode" },
    Mid: { subComponentType: "decode" },
  }));
  assertThrows(
    () => resolveTargets(alphaView, [target("decode", 1, "zeta")]),
    TargetResolutionError,
    "DynamoGraphDeployment must contain only one service with subComponentType 'decode', " +
      "but found multiple: {Mid, alpha, zeta}",
  );
  const betaView = viewDgd(beta([{ name: "p2", type: "prefill" }, { name: "p1", type: "prefill" }]));
  assertThrows(
    () => resolveTargets(betaView, [target("prefill", 1)]),
    TargetResolutionError,
    "DynamoGraphDeployment must contain only one component with type 'prefill', " +
      "but found multiple: {p1, p2}",
  );
});

Deno.test("resolveTargets: v1alpha1 component_name fallback needs an empty or missing subComponentType", () => {
  const view = viewDgd(alpha({
    agg: { componentType: "worker", replicas: 1 },
    blank: { subComponentType: "" },
    odd: { subComponentType: "encode" },
    p: { subComponentType: "prefill" },
  }));
  assert.equal(resolveTargets(view, [target("decode", 2, "agg")])[0].component.name, "agg");
  assert.equal(resolveTargets(view, [target("decode", 2, "blank")])[0].component.name, "blank");
  const notFound = "DynamoGraphDeployment must contain a service with subComponentType 'decode'";
  for (const name of ["odd", "p", "missing", "", null]) {
    assertThrows(() => resolveTargets(view, [target("decode", 2, name)]), TargetResolutionError, notFound);
  }
  const resolved = resolveTargets(view, [target("decode", 2, "agg")])[0];
  assert.equal(resolved.role, "decode", "the requested role, even though the service declares none");
});

Deno.test("resolveTargets: v1beta1 fallback allows type empty, worker or the requested type", () => {
  const view = viewDgd(beta([
    { name: "untyped" },
    { name: "blank", type: "" },
    { name: "worker", type: "worker" },
    { name: "fe", type: "frontend" },
    { name: "pf", type: "prefill" },
  ]));
  for (const name of ["untyped", "blank", "worker"]) {
    assert.equal(resolveTargets(view, [target("decode", 1, name)])[0].component.name, name);
  }
  const notFound = "DynamoGraphDeployment must contain a component with type 'decode'";
  for (const name of ["fe", "pf", "Worker", "nope", null]) {
    assertThrows(() => resolveTargets(view, [target("decode", 1, name)]), TargetResolutionError, notFound);
  }
});

Deno.test("resolveTargets: two targets on one component are refused before any write", () => {
  const view = viewDgd(beta([{ name: "worker", type: "worker" }]));
  assertThrows(
    () => resolveTargets(view, [target("prefill", 1, "worker"), target("decode", 1, "worker")]),
    TargetResolutionError,
    "duplicate replica target for component worker",
  );
  assertThrows(
    () => resolveTargets(viewDgd(DISAGG_ALPHA), [target("decode", 1), target("decode", 2)]),
    TargetResolutionError,
    "duplicate replica target for component VllmDecodeWorker",
  );
});

Deno.test("TargetResolutionError is reported as an invalid request", () => {
  assert.ok(new TargetResolutionError("x") instanceof InvalidRequest);
  assert.deepEqual(outcomeOf(new TargetResolutionError("x")), { status: "error", reason: "invalid_request" });
});

// --- currentReplicas -----------------------------------------------------------------------

Deno.test("currentReplicas: spec counts per role, components without a role left out", () => {
  assert.deepEqual(currentReplicas(viewDgd(DISAGG_ALPHA)), { prefill: 2, decode: 0 });
  assert.deepEqual(currentReplicas(viewDgd(DISAGG_BETA)), { prefill: 2, decode: 4 });
  assert.deepEqual(currentReplicas(viewDgd(beta([{ name: "w", type: "worker", replicas: 3 }]))), {});
  assert.deepEqual(currentReplicas(viewDgd(alpha({ d: { subComponentType: "decode", replicas: 1 } }))), {
    decode: 1,
  });
});

Deno.test("currentReplicas: two components with one role is an error", () => {
  assertThrows(
    () => currentReplicas(viewDgd(beta([{ name: "b", type: "decode" }, { name: "a", type: "decode" }]))),
    TargetResolutionError,
    "DynamoGraphDeployment must contain only one component with type 'decode', but found multiple: {a, b}",
  );
});

// --- names and patches ---------------------------------------------------------------------

Deno.test("adapterName lower-cases the component, not the DGD", () => {
  assert.equal(adapterName("llm", "VllmDecodeWorker"), "llm-vllmdecodeworker");
  assert.equal(adapterName("My-DGD", "decode"), "My-DGD-decode");
});

Deno.test("adapterScalePatch: merge patch of spec.replicas, optionally preconditioned", () => {
  assert.deepEqual(adapterScalePatch(3), { contentType: MERGE_PATCH, body: { spec: { replicas: 3 } } });
  assert.deepEqual(adapterScalePatch(0, "77"), {
    contentType: "application/merge-patch+json",
    body: { spec: { replicas: 0 }, metadata: { resourceVersion: "77" } },
  });
});

Deno.test("dgdReplicaPatch: v1alpha1 merge patch on the service", () => {
  assert.deepEqual(dgdReplicaPatch(viewDgd(DISAGG_ALPHA), "VllmDecodeWorker", 6), {
    contentType: "application/merge-patch+json",
    body: { spec: { services: { VllmDecodeWorker: { replicas: 6 } } } },
  });
});

Deno.test("dgdReplicaPatch: v1beta1 JSON patch guarded by a test on the name at that index", () => {
  assert.deepEqual(dgdReplicaPatch(viewDgd(DISAGG_BETA), "decode-worker", 0), {
    contentType: JSON_PATCH,
    body: [
      { op: "test", path: "/spec/components/2/name", value: "decode-worker" },
      { op: "add", path: "/spec/components/2/replicas", value: 0 },
    ],
  });
  assert.equal(JSON_PATCH, "application/json-patch+json");
});

Deno.test("dgdReplicaPatch: unknown component and bad counts are refused", () => {
  assertThrows(
    () => dgdReplicaPatch(viewDgd(DISAGG_BETA), "gone", 1),
    TargetResolutionError,
    "DynamoGraphDeployment 'team-a/llm' has no spec.components entry named 'gone'",
  );
  assertThrows(
    () => dgdReplicaPatch(viewDgd(DISAGG_ALPHA), "vllmdecodeworker", 1),
    TargetResolutionError,
    "DynamoGraphDeployment 'team-a/llm' has no spec.services entry named 'vllmdecodeworker'",
  );
  for (const bad of [-1, 1.5, NaN]) {
    assertThrows(
      () => dgdReplicaPatch(viewDgd(DISAGG_ALPHA), "VllmDecodeWorker", bad),
      InvalidRequest,
      `desired replicas must be a non-negative integer, got ${bad}`,
    );
  }
  assert.throws(() => adapterScalePatch(-2), InvalidRequest);
});

Deno.test("viewDgd attaches per-component GPU counts", () => {
  const view = viewDgd(alpha({
    p: { subComponentType: "prefill", resources: { limits: { gpu: "2" } } },
    d: { subComponentType: "decode" },
  }));
  assert.deepEqual(view.components[0].gpus, {
    kind: "ok",
    perReplica: 2,
    source: "spec.services.p.resources.limits.gpu",
  });
  assert.equal(view.components[1].gpus.kind, "unknown");
});
