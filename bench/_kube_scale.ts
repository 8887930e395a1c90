/**
 * The Kubernetes side of the kube scale phase (bench/phases/kube_scale.ts): its cluster, the bench
 * playing the operator, the API server's audit log, and the physical limit (one raw PATCH).
 * Private to bench/.
 */
import { parseAllDocuments, stringify as yamlStringify } from "yaml";
import { applyManifest, createDgd, DGD_PATH, v1beta1Dgd } from "../tests/support/dgd_fixtures.ts";
import { reconcileFullStatus } from "../tests/support/fake_operator.ts";
import { type KubeCluster, REDUCED_DGD_CRD, startKubeCluster } from "../tests/support/kube_cluster.ts";
import { type ServiceProcess, startService } from "../tests/support/service.ts";
import { startCountingProxy } from "../tests/support/tcp_proxy.ts";
import { UPSTREAM_RBAC, UPSTREAM_SA } from "../tests/support/upstream_rbac.ts";
import { ROOT } from "./_util.ts";
import { type Audit, AUDIT_POLICY, auditCalls } from "./_audit.ts";

export { type Audit, auditCalls };
import { type Started, startUpstream as startUpstreamPlanner } from "./_upstream.ts";

export const K8S_NS = "bench-kube";
export const SA_NS = "dynamo-system";
export const DGD = "bench-dgd";

export interface ScaleCluster {
  cluster: KubeCluster;
  /** The API server's audit log. */
  audit: string;
  ourToken: string;
  upstreamToken: string;
}

/**
 * etcd + kube-apiserver with an audit log, both planners' RBAC and ServiceAccount tokens, and the
 * one v1beta1 DGD (prefill + decode, Ready) every request writes.
 */
export async function startScaleCluster(scratch: string): Promise<ScaleCluster> {
  await Deno.writeTextFile(`${scratch}/audit-policy.yaml`, AUDIT_POLICY);
  const audit = `${scratch}/audit.log`;
  // The project's reduced DGD CRD stores v1alpha1, whose status schema has `services`, so a v1beta1
  // `status.components` (which upstream reads) would be pruned. Same CRD, v1beta1 as storage version.
  const crd = parseAllDocuments(await Deno.readTextFile(REDUCED_DGD_CRD))
    .map((d) => d.toJS({ maxAliasCount: -1 }))
    .find((o) => o?.kind === "CustomResourceDefinition");
  for (const v of crd.spec.versions) v.storage = v.name === "v1beta1";
  await Deno.writeTextFile(
    `${scratch}/dgd-crd-v1beta1-storage.yaml`,
    yamlStringify(crd, { aliasDuplicateObjects: false }),
  );
  const cluster = await startKubeCluster({
    dgdCrd: "none",
    extraCrdFiles: [`${scratch}/dgd-crd-v1beta1-storage.yaml`],
    extraApiserverArgs: [`--audit-policy-file=${scratch}/audit-policy.yaml`, `--audit-log-path=${audit}`],
  });
  try {
    await cluster.createNamespace(K8S_NS);
    await cluster.createNamespace(SA_NS);
    await applyManifest(
      cluster,
      parseAllDocuments(await Deno.readTextFile(`${ROOT}/deploy/rbac.yaml`)).map((d) => d.toJSON()),
    );
    await applyManifest(cluster, UPSTREAM_RBAC);
    const ourToken = await cluster.createServiceAccountToken(SA_NS, "global-planner");
    const upstreamToken = await cluster.createServiceAccountToken(SA_NS, UPSTREAM_SA);
    await createDgd(
      cluster,
      v1beta1Dgd(DGD, K8S_NS, {
        prefill: { type: "prefill", replicas: 1 },
        decode: { type: "decode", replicas: 1 },
      }),
    );
    await reconcile(cluster);
    return { cluster, audit, ourToken, upstreamToken };
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}

/** The bench as operator: spec replicas → status (observedGeneration, Ready, component counts). */
export function reconcile(cluster: KubeCluster): Promise<number> {
  return reconcileFullStatus(cluster, K8S_NS, DGD);
}

export async function ourApiCalls(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = /^dynamo_global_planner_kube_api_calls_total(?:\{[^}]*\})?\s+(\S+)/m.exec(text);
  if (!m) throw new Error("no dynamo_global_planner_kube_api_calls_total in /metrics");
  return Number(m[1]);
}

/**
 * The physical limit of a non-blocking scale: this process sends the one PATCH such a scale needs
 * (the same JSON patch of the same DGD, as the same ServiceAccount, through a counting proxy as
 * the targets' traffic) on a warm connection, and times its round trip. Same steps, same
 * operator turn between two requests (outside the timed window).
 */
export async function runRawPatch(
  cluster: KubeCluster,
  token: string,
  plan: { warmup: number; n: number },
): Promise<number[]> {
  const proxy = startCountingProxy(cluster.port);
  const http = Deno.createHttpClient({ caCerts: [cluster.caPem] });
  const url = `https://127.0.0.1:${proxy.port}${DGD_PATH("v1beta1", K8S_NS, DGD)}`;
  const got = await cluster.request("GET", DGD_PATH("v1beta1", K8S_NS, DGD));
  const index = (got.json.spec.components as { name: string }[]).findIndex((c) => c.name === "decode");
  let decode = 2;
  const patch = async (): Promise<number> => {
    const body = JSON.stringify([
      { op: "test", path: `/spec/components/${index}/name`, value: "decode" },
      { op: "add", path: `/spec/components/${index}/replicas`, value: decode },
    ]);
    decode = decode === 2 ? 3 : 2;
    const t0 = performance.now();
    const response = await fetch(url, {
      method: "PATCH",
      client: http,
      headers: {
        accept: "application/json",
        authorization: `Bearer ${token}`,
        "content-type": "application/json-patch+json",
      },
      body,
    });
    await response.arrayBuffer();
    const ms = performance.now() - t0;
    if (!response.ok) throw new Error(`raw PATCH: HTTP ${response.status}`);
    await reconcile(cluster);
    return ms;
  };
  const latMs: number[] = [];
  try {
    for (let i = 0; i < plan.warmup; i++) await patch();
    for (let i = 0; i < plan.n; i++) latMs.push(await patch());
  } finally {
    http.close();
    await proxy.close();
  }
  return latMs.sort((a, b) => a - b);
}

export type { Started };

export async function startOurs(cluster: KubeCluster, scratch: string, token: string): Promise<Started> {
  const proxy = startCountingProxy(cluster.port);
  // Under /tmp: the service's permission set reads only /tmp and the standard SA path.
  const saDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-bench-sa-" });
  await cluster.writeServiceAccountDir(saDir, SA_NS, token);
  const kv = `${scratch}/kv-shared-bench-kube-ours`;
  await Deno.mkdir(kv, { recursive: true });
  let service: ServiceProcess | undefined;
  try {
    service = await startService({
      args: ["--service-account-dir", saDir],
      env: {
        DYN_LOG: "info",
        DYN_NAMESPACE: "bench-kube-ours",
        POD_NAMESPACE: K8S_NS,
        DYN_DISCOVERY_BACKEND: "file",
        DYN_FILE_KV: kv,
        KUBERNETES_SERVICE_HOST: "127.0.0.1",
        KUBERNETES_SERVICE_PORT: String(proxy.port),
        DYN_SYSTEM_PORT: "0",
        DYN_SYSTEM_HOST: "127.0.0.1",
      },
      readyTimeoutMs: 60_000,
    });
    const status = await service.waitForLog((l) => l.message === "system status server listening");
    const connector = await service.waitForLog((l) => l.message === "Kubernetes connector ready");
    if (connector.server !== `https://127.0.0.1:${proxy.port}`) {
      throw new Error(`ours talks to ${connector.server}, not to the counting proxy`);
    }
    const s = service;
    return {
      namespace: "bench-kube-ours",
      proxy,
      user: `system:serviceaccount:${SA_NS}:global-planner`,
      metricsPort: Number(status.port),
      async stop() {
        await s.stop("SIGTERM");
        await proxy.close();
        await Deno.remove(saDir, { recursive: true }).catch(() => {});
      },
    };
  } catch (e) {
    await service?.stop("SIGKILL");
    await proxy.close();
    await Deno.remove(saDir, { recursive: true }).catch(() => {});
    throw e;
  }
}

export function startUpstream(cluster: KubeCluster, scratch: string, token: string): Promise<Started> {
  return startUpstreamPlanner(cluster, scratch, token, {
    k8sNamespace: K8S_NS,
    namespace: "bench-kube-peer",
  });
}
