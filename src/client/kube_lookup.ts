/**
 * Finding an endpoint's instances with `DYN_DISCOVERY_BACKEND=kubernetes`, as a 1.6.1 caller
 * does (docs/runtime-1.6.1.md, "Kubernetes discovery"): in the caller's own namespace, the
 * DynamoWorkerMetadata CRs joined with the ready entries of the discovery-labelled
 * EndpointSlices by pod uid (`targetRef.uid` = the CR's Pod owner). Pods are never read. One
 * listing of each, no watch: a one-shot CLI reads what is there now.
 *
 * Loaded only for a kubernetes lookup, so other calls never load the Kubernetes client.
 */
import type { EnvGetter } from "../config/env.ts";
import { DiscoveryError, errorText } from "../errors.ts";
import { KubeClient } from "../kube/client.ts";
import { loadCredentials } from "../kube/credentials.ts";
import { DWM } from "../kube/worker_metadata.ts";
import { createLogger } from "../ops/log.ts";
import { type InstanceRecord, parseInstanceRecord } from "./records.ts";

/** The label a 1.6.1 caller selects slices by (the only one it needs). */
export const DISCOVERY_LABEL = "nvidia.com/dynamo-discovery-enabled=true";

/** What the lookup found, and where it looked (for "not found" messages). */
export interface KubeLookup {
  records: InstanceRecord[];
  where: string;
}

export interface KubeAccess {
  getEnv: EnvGetter;
  /** Where in-cluster credentials live (the service's `--service-account-dir` default). */
  serviceAccountDir: string;
}

interface _Slice {
  endpoints?: { conditions?: { ready?: boolean }; targetRef?: { kind?: string; uid?: string } }[] | null;
}

interface _WorkerMetadata {
  metadata: { name: string; ownerReferences?: { kind?: string; uid?: string }[] };
  spec?: { data?: { endpoints?: Record<string, unknown> | null } };
}

/** Pod uids with a ready entry: only `ready: true` counts, as for a 1.6.1 caller. */
export function readyPodUids(slices: readonly _Slice[]): Set<string> {
  const uids = new Set<string>();
  for (const slice of slices) {
    for (const endpoint of slice.endpoints ?? []) {
      const ref = endpoint.targetRef;
      if (endpoint.conditions?.ready === true && ref?.kind === "Pod" && ref.uid) uids.add(ref.uid);
    }
  }
  return uids;
}

/** The records under `prefix` of every CR whose Pod owner has a ready slice entry. */
export function joinRecords(
  workers: readonly _WorkerMetadata[],
  ready: ReadonlySet<string>,
  prefix: string,
  namespace: string,
): InstanceRecord[] {
  const records: InstanceRecord[] = [];
  for (const cr of workers) {
    const owner = cr.metadata.ownerReferences?.find((o) => o.kind === "Pod")?.uid;
    if (!owner || !ready.has(owner)) continue;
    for (const [key, value] of Object.entries(cr.spec?.data?.endpoints ?? {})) {
      if (!key.startsWith(prefix)) continue;
      const record = parseInstanceRecord(
        JSON.stringify(value),
        `DynamoWorkerMetadata ${namespace}/${cr.metadata.name} key ${key}`,
      );
      if (record) records.push(record);
    }
  }
  return records;
}

export async function lookupKubernetes(
  namespace: string,
  prefix: string,
  access: KubeAccess,
  signal?: AbortSignal,
): Promise<KubeLookup> {
  const credentials = await loadCredentials(access);
  const client = new KubeClient(credentials, createLogger({ level: "error" }));
  const ns = encodeURIComponent(namespace);
  try {
    const [workers, slices] = await Promise.all([
      client.json<{ items?: _WorkerMetadata[] }>({
        method: "GET",
        verb: "list",
        group: "nvidia.com",
        resource: DWM,
        namespace,
        path: `/apis/nvidia.com/v1alpha1/namespaces/${ns}/${DWM}`,
        signal,
      }),
      client.json<{ items?: _Slice[] }>({
        method: "GET",
        verb: "list",
        group: "discovery.k8s.io",
        resource: "endpointslices",
        namespace,
        path: `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices?labelSelector=${
          encodeURIComponent(DISCOVERY_LABEL)
        }`,
        signal,
      }),
    ]);
    return {
      records: joinRecords(workers.items ?? [], readyPodUids(slices.items ?? []), prefix, namespace),
      where: `namespace ${namespace} through ${credentials.server} (DynamoWorkerMetadata with a ready ` +
        `EndpointSlice entry labelled ${DISCOVERY_LABEL})`,
    };
  } catch (error) {
    if (error instanceof DiscoveryError || signal?.aborted) throw error;
    throw new DiscoveryError(`cannot list instances through ${credentials.server}: ${errorText(error)}`, {
      cause: error,
    });
  } finally {
    client.close();
  }
}
