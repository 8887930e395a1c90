/**
 * Kubernetes discovery in tests: the objects the operator and kubelet would produce (no
 * controller-manager runs on the test cluster), and a normal form of DynamoWorkerMetadata CRs
 * for comparing two writers.
 */
import assert from "node:assert/strict";
import type { KubeCluster } from "./kube_cluster.ts";

export const DWM_PATH = (ns: string, name = "") =>
  `/apis/nvidia.com/v1alpha1/namespaces/${ns}/dynamoworkermetadatas${name ? `/${name}` : ""}`;
export const SLICE_PATH = (ns: string, name = "") =>
  `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices${name ? `/${name}` : ""}`;

/**
 * kube-apiserver refuses loopback addresses in EndpointSlices (422); callers route by the
 * CR's transport anyway, so any address works: this one is from a documentation range.
 */
export const SLICE_ADDRESS = "192.0.2.10";

export interface SliceTarget {
  pod: string;
  uid: string;
  ready: boolean;
}

/** An EndpointSlice as the operator's discovery-labelled Service would have it. */
export function endpointSlice(ns: string, name: string, targets: SliceTarget[]): Record<string, unknown> {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name,
      namespace: ns,
      labels: {
        "nvidia.com/dynamo-discovery-backend": "kubernetes",
        "nvidia.com/dynamo-discovery-enabled": "true",
        "kubernetes.io/service-name": name,
      },
    },
    addressType: "IPv4",
    ports: [{ name: "system", port: 9090, protocol: "TCP" }],
    endpoints: targets.map((t, i) => ({
      addresses: [`192.0.2.${10 + i}`],
      conditions: { ready: t.ready, serving: t.ready, terminating: false },
      targetRef: { kind: "Pod", namespace: ns, name: t.pod, uid: t.uid },
    })),
  };
}

/** Creates or replaces the slice. */
export async function putSlice(
  cluster: KubeCluster,
  ns: string,
  name: string,
  targets: SliceTarget[],
): Promise<void> {
  const body = endpointSlice(ns, name, targets);
  const existing = await cluster.request("GET", SLICE_PATH(ns, name));
  const r = existing.status === 404
    ? await cluster.request("POST", SLICE_PATH(ns), body)
    : await cluster.request("PUT", SLICE_PATH(ns, name), {
      ...body,
      metadata: { ...(body.metadata as object), resourceVersion: existing.json.metadata.resourceVersion },
    });
  assert.ok(r.ok, `EndpointSlice ${name}: ${r.status} ${r.text}`);
}

// deno-lint-ignore no-explicit-any -- a CR of any shape
export async function getDwm(cluster: KubeCluster, ns: string, name: string): Promise<any> {
  const r = await cluster.request("GET", DWM_PATH(ns, name));
  return r.status === 404 ? undefined : r.json;
}

/**
 * The CR with what must differ between two writers replaced by placeholders: its name, the
 * pod name and uid, the instance id (decimal and hex) and the TCP address; server-set
 * metadata (uid, resourceVersion, timestamps, generation) dropped.
 */
export function normalDwm(
  // deno-lint-ignore no-explicit-any
  cr: any,
  who: { name: string; uid: string; instanceId: bigint },
): unknown {
  const hex = who.instanceId.toString(16);
  let text = JSON.stringify({
    apiVersion: cr.apiVersion,
    kind: cr.kind,
    metadata: {
      name: cr.metadata.name,
      namespace: cr.metadata.namespace,
      ownerReferences: cr.metadata.ownerReferences,
      // deno-lint-ignore no-explicit-any
      managedFields: cr.metadata.managedFields.map((f: any) => ({ ...f, time: "<time>" })),
    },
    spec: cr.spec,
  });
  text = text.replaceAll(who.uid, "<uid>").replaceAll(hex, "<hex>").replaceAll(
    who.instanceId.toString(),
    '"<id>"',
  )
    .replace(/\d+\.\d+\.\d+\.\d+:\d+\//g, "<addr>/").replaceAll(`"${who.name}"`, '"<name>"');
  return JSON.parse(text);
}
