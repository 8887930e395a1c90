// deno-lint-ignore-file no-explicit-any -- API objects of any shape, read by tests only
/** DGD objects for tests on the real API server (both API versions). */
import type { KubeCluster } from "./kube_cluster.ts";

export const DGD_PATH = (v: string, ns: string, name = "") =>
  `/apis/nvidia.com/${v}/namespaces/${ns}/dynamographdeployments${name ? `/${name}` : ""}`;
export const DGDSA_PATH = (v: string, ns: string, name = "") =>
  `/apis/nvidia.com/${v}/namespaces/${ns}/dynamographdeploymentscalingadapters${name ? `/${name}` : ""}`;

export interface ServiceSpec {
  role?: "prefill" | "decode";
  replicas: number;
  gpu?: number;
  adapter?: boolean;
  type?: string;
}

export function v1alpha1Dgd(name: string, ns: string, services: Record<string, ServiceSpec>) {
  return {
    apiVersion: "nvidia.com/v1alpha1",
    kind: "DynamoGraphDeployment",
    metadata: { name, namespace: ns },
    spec: {
      backendFramework: "vllm",
      services: Object.fromEntries(
        Object.entries(services).map(([svc, s]) => [svc, {
          componentType: s.type ?? "worker",
          ...(s.role ? { subComponentType: s.role } : {}),
          replicas: s.replicas,
          resources: { limits: { gpu: String(s.gpu ?? 1) } },
          ...(s.adapter ? { scalingAdapter: { enabled: true } } : {}),
        }]),
      ),
    },
  };
}

export function v1beta1Dgd(name: string, ns: string, components: Record<string, ServiceSpec>) {
  return {
    apiVersion: "nvidia.com/v1beta1",
    kind: "DynamoGraphDeployment",
    metadata: { name, namespace: ns },
    spec: {
      backendFramework: "vllm",
      components: Object.entries(components).map(([component, s]) => ({
        name: component,
        type: s.type ?? s.role ?? "worker",
        replicas: s.replicas,
        ...(s.adapter ? { scalingAdapter: {} } : {}),
        podTemplate: {
          spec: {
            containers: [{
              name: "main",
              image: "x",
              resources: { limits: { "nvidia.com/gpu": String(s.gpu ?? 1) } },
            }],
          },
        },
      })),
    },
  };
}

/** Creates the DGD, its adapters (for services with `adapter`), and marks it Ready. */
export async function createDgd(
  cluster: KubeCluster,
  object: ReturnType<typeof v1alpha1Dgd> | ReturnType<typeof v1beta1Dgd>,
  opts: { ready?: boolean; createAdapters?: boolean } = {},
) {
  const version = object.apiVersion.split("/")[1];
  const ns = object.metadata.namespace;
  const created = await cluster.request("POST", DGD_PATH(version, ns), object);
  if (!created.ok) throw new Error(`create DGD ${object.metadata.name}: ${created.status} ${created.text}`);
  const entries: [string, { replicas: number; adapter?: boolean }][] = "services" in object.spec
    ? Object.entries(object.spec.services).map((
      [n, s],
    ) => [n, { replicas: s.replicas, adapter: "scalingAdapter" in s }])
    : object.spec.components.map((c) => [c.name, { replicas: c.replicas, adapter: "scalingAdapter" in c }]);
  if (opts.createAdapters !== false) {
    for (const [svc, s] of entries) {
      if (!s.adapter) continue;
      const adapter = {
        apiVersion: "nvidia.com/v1beta1",
        kind: "DynamoGraphDeploymentScalingAdapter",
        metadata: { name: `${object.metadata.name}-${svc.toLowerCase()}`, namespace: ns },
        spec: { replicas: s.replicas, dgdRef: { name: object.metadata.name, serviceName: svc } },
      };
      const r = await cluster.request("POST", DGDSA_PATH("v1beta1", ns), adapter);
      if (!r.ok) throw new Error(`create DGDSA: ${r.status} ${r.text}`);
    }
  }
  if (opts.ready !== false) {
    const got = await cluster.request("GET", DGD_PATH(version, ns, object.metadata.name));
    const r = await cluster.request("PATCH", DGD_PATH(version, ns, object.metadata.name) + "/status", {
      status: {
        state: "successful",
        observedGeneration: got.json.metadata.generation,
        conditions: [{
          type: "Ready",
          status: "True",
          reason: "all_resources_are_ready",
          message: "ok",
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        }],
      },
    });
    if (!r.ok) throw new Error(`status: ${r.status} ${r.text}`);
  }
}

export async function readDgd(cluster: KubeCluster, version: string, ns: string, name: string) {
  const got = await cluster.request("GET", DGD_PATH(version, ns, name));
  if (!got.ok) throw new Error(`read DGD: ${got.status}`);
  return got.json;
}

/** Spec replicas by service/component name. */
export function replicasOf(dgd: Record<string, any>): Record<string, number> {
  if (Array.isArray(dgd.spec.components)) {
    return Object.fromEntries(dgd.spec.components.map((c: any) => [c.name, c.replicas ?? 0]));
  }
  return Object.fromEntries(
    Object.entries(dgd.spec.services).map(([n, s]: [string, any]) => [n, s.replicas ?? 0]),
  );
}

/** Applies a multi-document manifest as admin (create; ok if it exists). */
export async function applyManifest(cluster: KubeCluster, docs: Record<string, any>[]) {
  for (const doc of docs) {
    const [group, version] = doc.apiVersion.includes("/") ? doc.apiVersion.split("/") : ["", doc.apiVersion];
    const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
    const plural = doc.kind.toLowerCase() + (doc.kind.endsWith("s") ? "es" : "s");
    const ns = doc.metadata.namespace ? `/namespaces/${doc.metadata.namespace}` : "";
    const r = await cluster.request("POST", `${base}${ns}/${plural}`, doc);
    if (!r.ok && r.status !== 409) {
      throw new Error(`apply ${doc.kind} ${doc.metadata.name}: ${r.status} ${r.text}`);
    }
  }
}

/**
 * The two-DGD fleet of the budget tests, one of each API version: alpha (v1alpha1) prefill
 * 2×2 GPUs + decode 2×1 = 6; beta (v1beta1) prefill 1×1 + decode 2×2 = 5; 11 in all.
 */
export async function createAlphaBetaFleet(cluster: KubeCluster, ns: string): Promise<void> {
  await createDgd(
    cluster,
    v1alpha1Dgd("alpha", ns, {
      P: { role: "prefill", replicas: 2, gpu: 2 },
      D: { role: "decode", replicas: 2, gpu: 1 },
    }),
  );
  await createDgd(
    cluster,
    v1beta1Dgd("beta", ns, {
      p: { role: "prefill", replicas: 1, gpu: 1 },
      d: { role: "decode", replicas: 2, gpu: 2 },
    }),
  );
}
