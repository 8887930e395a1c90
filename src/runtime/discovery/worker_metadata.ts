/**
 * The DynamoWorkerMetadata object the Kubernetes discovery backend publishes, and the small
 * port through which it reaches the API server (implemented in src/kube/worker_metadata.ts),
 * so this directory never sees an HTTP client or credentials.
 */
import type { KubeIdentity } from "../../config/env.ts";
import { instanceHex } from "../codec/json.ts";
import type { EndpointRecord } from "./discovery.ts";

export const DWM_API_VERSION = "nvidia.com/v1alpha1";
export const DWM_KIND = "DynamoWorkerMetadata";
/** The field manager and mode of the runtime's server-side apply (1.6.1: `dynamo-worker`, force). */
export const DWM_FIELD_MANAGER = "dynamo-worker";

export interface WorkerMetadataObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    ownerReferences?: Record<string, unknown>[];
    [key: string]: unknown;
  };
  spec?: { data?: Record<string, unknown> };
}

export interface WatchedChange {
  type: string;
  object: unknown;
}

/** What the backend needs from the Kubernetes API: apply its one object, and watch it. */
export interface WorkerMetadataApi {
  /** Server-side apply with `DWM_FIELD_MANAGER` and force; resolves to the object as stored. */
  apply(object: WorkerMetadataObject, signal?: AbortSignal): Promise<WorkerMetadataObject>;
  /**
   * Empties the endpoints of an existing object (a patch, never a create); resolves to whether
   * there was an object to empty.
   */
  clearEndpoints(namespace: string, name: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * Watch events of the object `name` from `resourceVersion` until the server ends the watch or
   * `signal` aborts. Rejects with an error carrying `detail.status` on an HTTP failure.
   */
  watch(
    namespace: string,
    name: string,
    resourceVersion: string,
    signal: AbortSignal,
  ): AsyncIterable<WatchedChange>;
}

/**
 * The endpoint record inside the CR. Unlike the etcd/file records, both optional fields are
 * written, as 1.6.1 writes them here, but with our values: we serve JSON (`request_plane_codec`)
 * and use no GPU (`device_type`).
 */
function _record(record: EndpointRecord): Record<string, unknown> {
  return {
    type: "Endpoint",
    component: record.component,
    endpoint: record.endpoint,
    namespace: record.namespace,
    // 53 bits (see instance_id.ts): exact as a JSON number.
    instance_id: Number(record.instanceId),
    transport: record.transport,
    device_type: "cpu",
    request_plane_codec: "json",
  };
}

/** The whole object as we apply it: every endpoint so far, the runtime's four maps, the Pod owner. */
export function workerMetadataObject(
  identity: KubeIdentity,
  records: readonly EndpointRecord[],
): WorkerMetadataObject {
  const endpoints: Record<string, unknown> = {};
  for (const r of records) {
    endpoints[`${r.namespace}/${r.component}/${r.endpoint}/${instanceHex(r.instanceId)}`] = _record(r);
  }
  return {
    apiVersion: DWM_API_VERSION,
    kind: DWM_KIND,
    metadata: {
      name: identity.crName,
      namespace: identity.podNamespace,
      ownerReferences: [{
        apiVersion: "v1",
        kind: "Pod",
        name: identity.podName,
        uid: identity.podUid,
        controller: identity.controller,
        blockOwnerDeletion: false,
      }],
    },
    spec: { data: { endpoints, model_cards: {}, event_channels: {}, event_sources: {} } },
  };
}

/** What a foreign edit can break: the published data and the owner references. */
export function publishedState(object: unknown): string {
  const o = object as WorkerMetadataObject | undefined;
  return _canonical({ owners: o?.metadata?.ownerReferences ?? null, data: o?.spec?.data ?? null });
}

function _canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(_canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${_canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
