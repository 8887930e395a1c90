/**
 * The API paths the connector uses, and which served version of each Dynamo resource to speak.
 * Versions are discovered once per process (newest served wins) unless configured.
 */
import type { DgdApiVersion } from "./dgd.ts";
import type { KubeClient, KubeRequest } from "./client.ts";

export const GROUP = "nvidia.com";
export const DGD = "dynamographdeployments";
export const DGDSA = "dynamographdeploymentscalingadapters";
const CANDIDATES: DgdApiVersion[] = ["v1beta1", "v1alpha1"];

export interface ApiVersions {
  dgd: DgdApiVersion;
  adapter: DgdApiVersion;
}

export interface ObjectRef {
  namespace: string;
  name: string;
}

const enc = encodeURIComponent;

export function dgdRequest(
  v: DgdApiVersion,
  ref: ObjectRef,
): Pick<KubeRequest, "path" | "group" | "resource" | "namespace" | "name"> {
  return {
    path: `/apis/${GROUP}/${v}/namespaces/${enc(ref.namespace)}/${DGD}/${enc(ref.name)}`,
    group: GROUP,
    resource: DGD,
    namespace: ref.namespace,
    name: ref.name,
  };
}

export function dgdWatchRequest(
  v: DgdApiVersion,
  ref: ObjectRef,
  resourceVersion: string,
  timeoutSeconds: number,
) {
  const query = new URLSearchParams({
    watch: "true",
    fieldSelector: `metadata.name=${ref.name}`,
    resourceVersion,
    timeoutSeconds: String(Math.max(1, Math.ceil(timeoutSeconds))),
    allowWatchBookmarks: "true",
  });
  return {
    path: `/apis/${GROUP}/${v}/namespaces/${enc(ref.namespace)}/${DGD}?${query}`,
    group: GROUP,
    resource: DGD,
    namespace: ref.namespace,
    name: ref.name,
  };
}

export function adapterScaleRequest(v: DgdApiVersion, ref: ObjectRef) {
  return {
    path: `/apis/${GROUP}/${v}/namespaces/${enc(ref.namespace)}/${DGDSA}/${enc(ref.name)}/scale`,
    group: GROUP,
    resource: `${DGDSA}/scale`,
    namespace: ref.namespace,
    name: ref.name,
  };
}

/** Picks, per resource, the newest version the API server serves (2 discovery calls, once). */
export async function discoverVersions(client: KubeClient, configured?: DgdApiVersion): Promise<ApiVersions> {
  if (configured) return { dgd: configured, adapter: configured };
  const served = new Map<DgdApiVersion, Set<string>>();
  for (const v of CANDIDATES) {
    try {
      const list = await client.json<{ resources?: { name: string }[] }>({
        method: "GET",
        path: `/apis/${GROUP}/${v}`,
        verb: "get",
        group: GROUP,
        resource: `(discovery ${v})`,
      });
      served.set(v, new Set((list.resources ?? []).map((r) => r.name)));
    } catch (error) {
      if ((error as { detail?: { status?: number } }).detail?.status !== 404) throw error;
    }
  }
  const pick = (resource: string) => CANDIDATES.find((v) => served.get(v)?.has(resource));
  const dgd = pick(DGD);
  if (!dgd) {
    throw new Error(`the API server serves no ${DGD}.${GROUP} (is the Dynamo operator's CRD installed?)`);
  }
  return { dgd, adapter: pick(DGDSA) ?? dgd };
}
