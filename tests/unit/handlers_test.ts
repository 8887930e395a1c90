import assert from "node:assert/strict";
import { KubeError, NotReady, Paused } from "../../src/errors.ts";
import { isScaleReason } from "../../src/ops/gp_metrics.ts";
import { scaleResponse, tagReason } from "../../src/service/contract.ts";
import { createLogger, type LogFields } from "../../src/ops/log.ts";
import type { Handler } from "../../src/runtime/endpoint.ts";
import { createHealthHandler, createScaleRequestHandler, type Scaler } from "../../src/service/handlers.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const REQUEST = {
  caller_namespace: "ns-a",
  graph_deployment_name: "llama",
  k8s_namespace: "prod",
  target_replicas: [{ sub_component_type: "prefill", desired_replicas: 2 }, {
    sub_component_type: "decode",
    desired_replicas: 4,
  }],
};

function capture() {
  const lines: LogFields[] = [];
  return { lines, logger: createLogger({ level: "debug", sink: (l) => lines.push(JSON.parse(l)) }) };
}

async function collect(handler: Handler, input: unknown) {
  const items: unknown[] = [];
  for await (
    const item of handler(input, { id: "req-1", headers: {}, signal: new AbortController().signal })
  ) items.push(item);
  return items;
}

Deno.test("unauthorized caller → error with upstream's message and no scaler call", async () => {
  const { logger, lines } = capture();
  let called = false;
  const scaler: Scaler = { scale: () => (called = true, Promise.reject(new Error("must not be called"))) };
  const handler = createScaleRequestHandler({
    managedNamespaces: ["ns-b"],
    noOperation: false,
    scaler,
    logger,
  });
  assert.deepEqual(await collect(handler, REQUEST), [
    { status: "error", message: "Namespace ns-a not authorized", current_replicas: {} },
  ]);
  assert.equal(called, false);
  assert.equal(lines[0].reason, "not_authorized");
});

Deno.test("implicit mode (no managed namespaces) accepts every caller", async () => {
  const { logger } = capture();
  const handler = createScaleRequestHandler({ managedNamespaces: null, noOperation: true, logger });
  assert.equal(((await collect(handler, REQUEST))[0] as { status: string }).status, "success");
});

Deno.test("no-operation → success, upstream's message, {} and one structured log line", async () => {
  const { logger, lines } = capture();
  const handler = createScaleRequestHandler({ managedNamespaces: ["ns-a"], noOperation: true, logger });
  assert.deepEqual(
    await collect(handler, JSON.stringify({ ...REQUEST, target_replicas: REQUEST.target_replicas })),
    [
      {
        status: "success",
        message: "[no-operation] Scale request received and logged (not executed)",
        current_replicas: {},
      },
    ],
  );
  assert.equal(lines.length, 1);
  assert.equal(lines[0].message, "scale request");
  assert.equal(lines[0].caller, "ns-a");
  assert.equal(lines[0].dgd, "llama");
  assert.equal(lines[0].k8s_namespace, "prod");
  assert.deepEqual(lines[0].targets, { prefill: 2, decode: 4 });
  assert.equal(lines[0].result, "success");
  assert.equal(lines[0].reason, "no_operation");
});

Deno.test("no-operation accepts empty target_replicas", async () => {
  const { logger } = capture();
  const handler = createScaleRequestHandler({ managedNamespaces: null, noOperation: true, logger });
  assert.equal(
    ((await collect(handler, { ...REQUEST, target_replicas: [] }))[0] as { status: string }).status,
    "success",
  );
});

Deno.test("without a Kubernetes connector a scale request is an error, never a fake success", async () => {
  const { logger } = capture();
  const handler = createScaleRequestHandler({ managedNamespaces: null, noOperation: false, logger });
  const [response] = await collect(handler, REQUEST) as { status: string; message: string }[];
  assert.equal(response.status, "error");
  assert.match(response.message, /not available.*--no-operation/);
});

Deno.test("scaler errors map to statuses in one table: NotReady → rejected, KubeError → error", async () => {
  const { logger, lines } = capture();
  for (
    const [error, status, reason] of [
      [
        new NotReady("DynamoGraphDeployment is not ready (name: 'llama' in namespace 'prod')"),
        "rejected",
        "rejected_not_ready",
      ],
      [
        new KubeError("forbidden", { verb: "patch", resource: "dynamographdeployments", status: 403 }),
        "error",
        "kubernetes_error",
      ],
    ] as const
  ) {
    const handler = createScaleRequestHandler({
      managedNamespaces: null,
      noOperation: false,
      scaler: { scale: () => Promise.reject(error) },
      logger,
    });
    const [response] = await collect(handler, REQUEST);
    assert.deepEqual(response, { status, message: error.message, current_replicas: {} });
    assert.equal(lines.at(-1)!.reason, reason);
  }
});

Deno.test("a malformed request throws (an error item for the caller) and is logged with its outcome", async () => {
  const { logger, lines } = capture();
  const handler = createScaleRequestHandler({ managedNamespaces: null, noOperation: true, logger });
  await assert.rejects(
    collect(handler, { caller_namespace: "x" }),
    (e: Error) => e.name === "InvalidRequest" && e.message.startsWith("Invalid request: "),
  );
  assert.equal(lines[0].reason, "invalid_request");
});

Deno.test("health answers any request with status, component, namespace and managed namespaces", async () => {
  assert.deepEqual(
    await collect(createHealthHandler({ namespace: "prod-gp", managedNamespaces: ["a", "b"] }), "anything"),
    [
      { status: "healthy", component: "GlobalPlanner", namespace: "prod-gp", managed_namespaces: ["a", "b"] },
    ],
  );
  assert.deepEqual(
    await collect(createHealthHandler({ namespace: "prod-gp", managedNamespaces: null }), { text: "health" }),
    [
      { status: "healthy", component: "GlobalPlanner", namespace: "prod-gp", managed_namespaces: "all" },
    ],
  );
});

Deno.test("health with a GPU budget reports the DGD watch and turns degraded with its message", async () => {
  let state = { enabled: true, synced: true, watching: true, degraded: false, dgds: 3 } as
    & Record<string, unknown>
    & { degraded: boolean; message?: string };
  const handler = createHealthHandler({ namespace: "n", managedNamespaces: null, dgdWatch: () => state });
  assert.deepEqual(await collect(handler, {}), [
    {
      status: "healthy",
      component: "GlobalPlanner",
      namespace: "n",
      managed_namespaces: "all",
      dgd_watch: state,
    },
  ]);
  state = {
    ...state,
    watching: false,
    degraded: true,
    message: "DGD watch down for 45 s: boom; GPU budget cache may be stale",
  };
  const [item] = await collect(handler, {}) as Record<string, unknown>[];
  assert.equal(item.status, "degraded");
  assert.equal(item.message, "DGD watch down for 45 s: boom; GPU budget cache may be stale");
});

Deno.test("health turns degraded while the discovery registration is not in place", async () => {
  let registered: boolean | undefined = undefined;
  const handler = createHealthHandler({
    namespace: "n",
    managedNamespaces: null,
    registered: () => registered,
    discovery: "kubernetes",
  });
  const healthy = {
    status: "healthy",
    component: "GlobalPlanner",
    namespace: "n",
    managed_namespaces: "all",
  };
  assert.deepEqual(await collect(handler, {}), [healthy], "not known yet: as upstream");
  registered = true;
  assert.deepEqual(await collect(handler, {}), [healthy], "in place: exactly upstream's answer");
  registered = false;
  assert.deepEqual(await collect(handler, {}), [{
    ...healthy,
    status: "degraded",
    message: "discovery registration (kubernetes) is not in place; restoring it",
  }]);
  // It also wins over a healthy DGD watch.
  const budget = createHealthHandler({
    namespace: "n",
    managedNamespaces: null,
    registered: () => false,
    dgdWatch: () => ({ degraded: false }),
  });
  const [item] = await collect(budget, {}) as Record<string, unknown>[];
  assert.equal(item.status, "degraded");
});

Deno.test("a negative desired_replicas → error, {} and no scaler call, in every mode; authorization first", async () => {
  const negative = {
    ...REQUEST,
    target_replicas: [
      { sub_component_type: "prefill", desired_replicas: 0 },
      { sub_component_type: "decode", component_name: "VllmDecodeWorker", desired_replicas: -1 },
    ],
  };
  const message =
    "Invalid scale request: desired_replicas must be >= 0, got -1 for decode (VllmDecodeWorker); " +
    "nothing was changed";
  for (const noOperation of [false, true]) {
    const { logger, lines } = capture();
    const outcomes: string[] = [];
    let called = false;
    const handler = createScaleRequestHandler({
      managedNamespaces: ["ns-a"],
      noOperation,
      scaler: { scale: () => (called = true, Promise.reject(new Error("must not be called"))) },
      logger,
      observe: (result, reason) => outcomes.push(`${result} ${reason}`),
    });
    assert.deepEqual(await collect(handler, JSON.stringify(negative)), [
      { status: "error", message, current_replicas: {} },
    ]);
    assert.equal(called, false);
    assert.deepEqual(outcomes, ["error invalid_request"]);
    assert.equal(lines.at(-1)?.reason, "invalid_request");
    // Zero is a count, not an error (the boundary).
    const zero = { ...negative, target_replicas: [{ sub_component_type: "decode", desired_replicas: 0 }] };
    assert.notEqual(
      ((await collect(handler, zero))[0] as { message: string }).message,
      message,
    );
    // Two offenders are both named; an unauthorized caller hears only that.
    const two = {
      ...negative,
      target_replicas: [{ sub_component_type: "prefill", desired_replicas: -2 }, ...negative.target_replicas],
    };
    assert.match(
      ((await collect(handler, two))[0] as { message: string }).message,
      /got -2 for prefill, -1 for decode/,
    );
    assert.deepEqual(await collect(handler, { ...negative, caller_namespace: "ns-x" }), [
      { status: "error", message: "Namespace ns-x not authorized", current_replicas: {} },
    ]);
  }
});

Deno.test("our policies in the handler: binding refusals, policy refusals, dry-run prefix, reasons for metrics", async () => {
  const observed: string[] = [];
  const run = async (scaler: Scaler, extra: Record<string, unknown> = {}, input: unknown = REQUEST) => {
    const { logger } = capture();
    const handler = createScaleRequestHandler({
      managedNamespaces: null,
      noOperation: false,
      scaler,
      logger,
      observe: (_result, reason) => observed.push(reason),
      ...extra,
    });
    return (await collect(handler, input))[0];
  };
  let calls = 0;
  const ok: Scaler = {
    scale:
      () => (calls++, Promise.resolve(scaleResponse("success", "Scaled llama successfully", { prefill: 2 }))),
  };
  const binding = { callerBinding: "operator", callerMap: {}, managedK8sNamespaces: null };
  assert.deepEqual(await run(ok, { binding }), {
    status: "error",
    message: "Caller 'ns-a' may not scale DynamoGraphDeployment 'prod/llama': caller binding \"operator\" " +
      "accepts only 'prod-llama' for it; nothing was changed",
    current_replicas: {},
  });
  assert.equal(calls, 0);
  assert.deepEqual(await run(ok, { binding }, { ...REQUEST, caller_namespace: "prod-llama" }), {
    status: "success",
    message: "Scaled llama successfully",
    current_replicas: { prefill: 2 },
  });
  assert.equal(calls, 1);
  const paused: Scaler = { scale: () => Promise.reject(new Paused("paused!", { prefill: 1, decode: 3 })) };
  assert.deepEqual(await run(paused), {
    status: "rejected",
    message: "paused!",
    current_replicas: { prefill: 1, decode: 3 },
  });
  assert.deepEqual(await run(ok, { dryRun: true }), {
    status: "success",
    message: "[dry-run] Scaled llama successfully",
    current_replicas: { prefill: 2 },
  });
  const retry: Scaler = {
    scale: () => Promise.resolve(tagReason(scaleResponse("success", "again"), "duplicate")),
  };
  await run(retry);
  assert.deepEqual(observed, ["caller_not_bound", "success", "rejected_paused", "dry_run", "duplicate"]);
  for (const reason of observed) assert.ok(isScaleReason(reason), `${reason} is a metric reason`);
});
