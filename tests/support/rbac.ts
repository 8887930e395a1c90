/** The project's RBAC manifest on a test cluster: what every Kubernetes test starts from. */
import { parseAllDocuments } from "yaml";
import { applyManifest } from "./dgd_fixtures.ts";
import type { KubeCluster } from "./kube_cluster.ts";
import { PROJECT_ROOT } from "./paths.ts";

/** The namespace and ServiceAccount of deploy/rbac.yaml. */
export const SA_NAMESPACE = "dynamo-system";
export const SA_NAME = "global-planner";

// deno-lint-ignore no-explicit-any -- manifests of any kind
export async function readManifest(relativePath: string): Promise<Record<string, any>[]> {
  return parseAllDocuments(await Deno.readTextFile(`${PROJECT_ROOT}/${relativePath}`)).map((d) => d.toJSON());
}

/** Applies deploy/rbac.yaml and returns a token of its ServiceAccount. */
export async function installRbac(cluster: KubeCluster): Promise<string> {
  await cluster.createNamespace(SA_NAMESPACE);
  await applyManifest(cluster, await readManifest("deploy/rbac.yaml"));
  return await cluster.createServiceAccountToken(SA_NAMESPACE, SA_NAME);
}

/**
 * A service-account directory for `token`, inside the cluster's temp dir (under /tmp, which the
 * service's permission set reads), so `cluster.stop()` removes it.
 */
export async function serviceAccountDir(cluster: KubeCluster, token: string): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: cluster.dir, prefix: "sa-" });
  await cluster.writeServiceAccountDir(dir, SA_NAMESPACE, token);
  return dir;
}
