import assert from "node:assert/strict";
import { type GpuCount, type GpuInput, gpusPerReplica, wholeNumber } from "../../src/kube/gpu.ts";
import { viewDgd } from "../../src/kube/dgd.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const DGD = "team-a/llm";

function services(component: string, spec: Record<string, unknown>, status?: unknown): GpuCount {
  return gpusPerReplica({ dgd: DGD, shape: "services", component, spec, status });
}

function components(spec: Record<string, unknown>, status?: unknown, index = 0): GpuCount {
  const input: GpuInput = {
    dgd: DGD,
    shape: "components",
    component: String(spec.name),
    index,
    spec,
    status,
  };
  return gpusPerReplica(input);
}

function main(container: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    name: "w",
    type: "decode",
    podTemplate: { spec: { containers: [{ name: "sidecar" }, { name: "main", ...container }] } },
    ...extra,
  };
}

function perReplica(count: GpuCount): number | string {
  return count.kind === "ok" ? count.perReplica : `unknown: ${count.reason}`;
}

Deno.test("wholeNumber accepts non-negative integers and integer strings only", () => {
  assert.deepEqual(
    [0, 4, "2", " 8 ", "+1"].map(wholeNumber),
    [0, 4, 2, 8, 1],
  );
  for (const bad of [-1, 1.5, "1.5", "500m", "", "x", null, undefined, true, NaN, "-3"]) {
    assert.equal(wholeNumber(bad), undefined, `${JSON.stringify(bad)}`);
  }
});

Deno.test("v1alpha1: limits.gpu (a string), else requests.gpu", () => {
  assert.deepEqual(services("p", { resources: { limits: { gpu: "2" }, requests: { gpu: "1" } } }), {
    kind: "ok",
    perReplica: 2,
    source: "spec.services.p.resources.limits.gpu",
  });
  assert.deepEqual(services("p", { resources: { requests: { gpu: "1" } } }), {
    kind: "ok",
    perReplica: 1,
    source: "spec.services.p.resources.requests.gpu",
  });
  assert.equal(perReplica(services("p", { resources: { limits: { gpu: 4 } } })), 4);
  assert.equal(perReplica(services("p", { resources: { limits: { gpu: "0" } } })), 0);
});

Deno.test("v1alpha1: multinode multiplies by nodeCount, default 2", () => {
  const gpu = { resources: { limits: { gpu: "8" } } };
  assert.equal(perReplica(services("p", { ...gpu, multinode: { nodeCount: 4 } })), 32);
  assert.deepEqual(services("p", { ...gpu, multinode: {} }), {
    kind: "ok",
    perReplica: 16,
    source: "spec.services.p.resources.limits.gpu × multinode.nodeCount 2",
  });
  assert.equal(perReplica(services("p", { ...gpu, multinode: null })), 8);
});

Deno.test("v1alpha1: unknown reasons name the DGD, the component and the field", () => {
  assert.deepEqual(services("VllmDecodeWorker", { subComponentType: "decode" }), {
    kind: "unknown",
    reason: "cannot determine GPUs per replica of component 'VllmDecodeWorker' of DGD 'team-a/llm': " +
      "neither spec.services.VllmDecodeWorker.resources.limits.gpu nor " +
      "spec.services.VllmDecodeWorker.resources.requests.gpu is set",
  });
  assert.deepEqual(services("p", { resources: { limits: { gpu: "1.5" }, requests: { gpu: "1" } } }), {
    kind: "unknown",
    reason: "cannot determine GPUs per replica of component 'p' of DGD 'team-a/llm': " +
      'spec.services.p.resources.limits.gpu is "1.5", not a non-negative integer',
  });
  const badNodes = services("p", { resources: { limits: { gpu: "1" } }, multinode: { nodeCount: "two" } });
  assert.deepEqual(badNodes, {
    kind: "unknown",
    reason: "cannot determine GPUs per replica of component 'p' of DGD 'team-a/llm': " +
      'multinode.nodeCount is "two", not a positive integer',
  });
});

Deno.test("published status gpusPerReplica is preferred and taken as is", () => {
  const spec = main({ resources: { limits: { "nvidia.com/gpu": 1 } } }, { multinode: { nodeCount: 2 } });
  assert.deepEqual(components(spec, { components: { w: { gpusPerReplica: 6 } } }), {
    kind: "ok",
    perReplica: 6,
    source: "status.components.w.gpusPerReplica",
  });
  const alphaStatus = { services: { p: { gpusPerReplica: "3" } } };
  assert.deepEqual(services("p", { resources: { limits: { gpu: "1" } } }, alphaStatus), {
    kind: "ok",
    perReplica: 3,
    source: "status.services.p.gpusPerReplica",
  });
  assert.equal(perReplica(components(spec, { components: { w: { replicas: 1 } } })), 2, "not published");
  assert.equal(perReplica(components(spec, { components: { w: { gpusPerReplica: null } } })), 2);
  assert.equal(perReplica(components(spec, { components: { other: { gpusPerReplica: 9 } } })), 2);
});

Deno.test("published but unusable gpusPerReplica fails with upstream's wording", () => {
  assert.deepEqual(components(main({}), { components: { w: { gpusPerReplica: -1 } } }), {
    kind: "unknown",
    reason: "GPU shape for component 'w' is unavailable: " +
      "DGD 'team-a/llm' status.components.w.gpusPerReplica is -1, not a non-negative integer",
  });
});

Deno.test("v1beta1: main container nvidia.com/gpu limits, else requests, int or string", () => {
  assert.deepEqual(components(main({ resources: { limits: { "nvidia.com/gpu": "2" } } }), undefined, 3), {
    kind: "ok",
    perReplica: 2,
    source: 'spec.components[3].podTemplate.spec.containers[name=main].resources.limits["nvidia.com/gpu"]',
  });
  assert.equal(perReplica(components(main({ resources: { requests: { "nvidia.com/gpu": 4 } } }))), 4);
  const sidecarGpus = {
    name: "w",
    podTemplate: {
      spec: {
        containers: [
          { name: "helper", resources: { limits: { "nvidia.com/gpu": 8 } } },
          { name: "main", resources: { limits: { "nvidia.com/gpu": 1 } } },
        ],
      },
    },
  };
  assert.equal(perReplica(components(sidecarGpus)), 1, "only the main container counts");
});

Deno.test("v1beta1: tensor-parallel argument when no GPU resource is set", () => {
  const cases: [Record<string, unknown>, number][] = [
    [{ args: ["--model", "m", "--tensor-parallel-size", "4"] }, 4],
    [{ args: ["--tp=2"] }, 2],
    [{ args: ["--tensor-parallel-size=8"] }, 8],
    [{ command: ["/bin/sh", "-c"], args: ["python3 -m dynamo.vllm --tp 2 --enforce-eager"] }, 2],
    [{ command: ["python3", "-m", "dynamo.sglang", "--tp", "2"], args: ["--tp", "4"] }, 4],
    [{ args: ["--tp", "2"], resources: { limits: { "nvidia.com/gpu": 1 } } }, 1],
  ];
  for (const [container, expected] of cases) {
    assert.equal(perReplica(components(main(container))), expected, JSON.stringify(container));
  }
  assert.deepEqual(components(main({ args: ["--tp", "2"] }, { multinode: {} })), {
    kind: "ok",
    perReplica: 4,
    source: "spec.components[0].podTemplate.spec.containers[name=main] --tp × multinode.nodeCount 2",
  });
});

Deno.test("v1beta1: multinode multiplies the GPU resource by nodeCount", () => {
  const gpu = { resources: { limits: { "nvidia.com/gpu": "8" } } };
  assert.equal(perReplica(components(main(gpu, { multinode: { nodeCount: 3 } }))), 24);
  assert.equal(perReplica(components(main(gpu, { multinode: {} }))), 16);
  assert.equal(perReplica(components(main(gpu))), 8);
});

Deno.test("v1beta1: unknown reasons", () => {
  const prefix = "cannot determine GPUs per replica of component 'w' of DGD 'team-a/llm': ";
  assert.deepEqual(components({ name: "w", type: "decode" }, undefined, 1), {
    kind: "unknown",
    reason: prefix + "spec.components[1].podTemplate.spec.containers[name=main] is missing",
  });
  assert.deepEqual(components(main({ args: ["--model", "m"] })), {
    kind: "unknown",
    reason: prefix +
      'spec.components[0].podTemplate.spec.containers[name=main] has no resources.limits/requests["nvidia.com/gpu"] ' +
      "and no --tensor-parallel-size/--tp argument",
  });
  assert.deepEqual(components(main({ args: ["--tp"] })), {
    kind: "unknown",
    reason: prefix + "spec.components[0].podTemplate.spec.containers[name=main] --tp is missing, " +
      "not a non-negative integer",
  });
  assert.deepEqual(
    components(main({ resources: { limits: { "nvidia.com/gpu": "1000m" } } })).kind,
    "unknown",
  );
});

Deno.test("viewDgd computes GPUs for every component (fallback workers can be pools)", () => {
  const view = viewDgd({
    apiVersion: "nvidia.com/v1beta1",
    metadata: { name: "llm", namespace: "team-a" },
    spec: {
      components: [
        { name: "Frontend", type: "frontend" },
        main({ resources: { limits: { "nvidia.com/gpu": 2 } } }, { name: "worker", type: "worker" }),
      ],
    },
    status: { components: { Frontend: { gpusPerReplica: 0 } } },
  });
  assert.deepEqual(view.components.map((c) => perReplica(c.gpus)), [0, 2]);
});
