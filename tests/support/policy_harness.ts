// deno-lint-ignore-file no-explicit-any -- API objects of any shape, read by tests only
/**
 * What the policy e2e tests share: a connector wired as src/app.ts wires it (the service
 * account of tests/support/rbac.ts), one scale request through the real `scale_request`
 * handler, and the Events recorded on a DGD as the API server returns them.
 */
import assert from "node:assert/strict";
import {
  type BudgetWiring,
  connectKubernetes,
  type KubeConnector,
  type PolicyWiring,
} from "../../src/kube/mod.ts";
import { createLogger } from "../../src/ops/log.ts";
import type { ScaleResponse } from "../../src/service/contract.ts";
import { createScaleRequestHandler, type Scaler } from "../../src/service/handlers.ts";
import type { KubeCluster } from "./kube_cluster.ts";
import { serviceAccountDir } from "./rbac.ts";

const logger = createLogger({ level: "error", sink: () => {} });

/** A connector with `policy` (and a GPU budget's DGD cache when `budget` is given). */
export async function policyConnector(
  cluster: KubeCluster,
  token: string,
  policy: PolicyWiring,
  budget?: BudgetWiring,
): Promise<KubeConnector> {
  const dir = await serviceAccountDir(cluster, token);
  const env = cluster.inClusterEnv();
  return await connectKubernetes(
    { serviceAccountDir: dir, blockingTimeoutSeconds: 10 },
    (n) => env[n],
    logger,
    budget,
    undefined,
    policy,
  );
}

/** One request (caller `c` unless given) for a DGD of `namespace`, answered by `scaler`. */
export async function scaleThrough(
  scaler: Scaler,
  namespace: string,
  request: Record<string, unknown>,
  dryRun = false,
): Promise<ScaleResponse> {
  const handler = createScaleRequestHandler({
    managedNamespaces: null,
    noOperation: false,
    dryRun,
    scaler,
    logger,
  });
  const context = { id: "t", headers: {}, signal: new AbortController().signal };
  for await (
    const item of handler({ caller_namespace: "c", k8s_namespace: namespace, ...request }, context)
  ) {
    return item as ScaleResponse;
  }
  throw new Error("no response");
}

/** The Events about DGD `name` (from one reporting instance, if given). */
export async function eventsOn(
  cluster: KubeCluster,
  namespace: string,
  name: string,
  instance?: string,
): Promise<any[]> {
  const r = await cluster.request("GET", `/apis/events.k8s.io/v1/namespaces/${namespace}/events`);
  assert.ok(r.ok, r.text);
  return r.json.items.filter((e: any) =>
    e.regarding?.name === name && (instance === undefined || e.reportingInstance === instance)
  );
}

export const prefill = (n: number) => [{ sub_component_type: "prefill", desired_replicas: n }];
export const decode = (n: number) => [{ sub_component_type: "decode", desired_replicas: n }];
