/**
 * The leader election's port on the one API client: one `coordination.k8s.io/v1` Lease, read,
 * created and replaced with optimistic concurrency on its resourceVersion (RBAC: `get`,
 * `create`, `update` on `leases` in the pod's namespace).
 */
import { KubeError } from "../../errors.ts";
import type { KubeClient } from "../client.ts";

export const LEASES = "leases";
export const COORDINATION_GROUP = "coordination.k8s.io";

/** The fields of a Lease's spec that leader election reads and writes. */
export interface LeaseRecord {
  /** Empty when nobody holds it (released). */
  holderIdentity: string;
  leaseDurationSeconds: number;
  /** Milliseconds since the epoch (MicroTime on the wire). */
  acquireTime?: number;
  renewTime?: number;
  leaseTransitions: number;
  /** State the leader keeps on the Lease for its successor (see `ElectorOptions.state`). */
  annotations?: Record<string, string>;
}

export interface StoredLease {
  record: LeaseRecord;
  resourceVersion: string;
  /** The spec as stored, to notice any change (a renewal by another holder included). */
  raw: string;
}

export interface LeaseApi {
  /** `undefined` when the Lease does not exist. */
  get(signal: AbortSignal): Promise<StoredLease | undefined>;
  create(record: LeaseRecord, signal: AbortSignal): Promise<StoredLease>;
  /** Fails (HTTP 409) when the Lease changed since `resourceVersion`. */
  update(record: LeaseRecord, resourceVersion: string, signal: AbortSignal): Promise<StoredLease>;
  /** Namespace and name, for logs. */
  readonly where: string;
}

interface LeaseObject {
  metadata?: { resourceVersion?: string; annotations?: Record<string, string> };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** MicroTime: RFC 3339 with six fractional digits (the API server refuses fewer on update). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

function _record(object: LeaseObject): StoredLease {
  const spec = object.spec ?? {};
  const time = (text?: string) => (text ? Date.parse(text) : undefined);
  return {
    record: {
      holderIdentity: spec.holderIdentity ?? "",
      leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
      acquireTime: time(spec.acquireTime),
      renewTime: time(spec.renewTime),
      leaseTransitions: spec.leaseTransitions ?? 0,
      annotations: object.metadata?.annotations,
    },
    resourceVersion: object.metadata?.resourceVersion ?? "",
    raw: JSON.stringify(spec) + JSON.stringify(object.metadata?.annotations ?? {}),
  };
}

const enc = encodeURIComponent;

export class KubeLeaseApi implements LeaseApi {
  readonly where: string;
  #client: KubeClient;
  #namespace: string;
  #name: string;

  constructor(client: KubeClient, namespace: string, name: string) {
    this.#client = client;
    this.#namespace = namespace;
    this.#name = name;
    this.where = `${namespace}/${name}`;
  }

  async get(signal: AbortSignal): Promise<StoredLease | undefined> {
    try {
      return _record(await this.#client.json<LeaseObject>({ ...this.#target("GET", "get"), signal }));
    } catch (error) {
      if (error instanceof KubeError && error.detail.status === 404) return undefined;
      throw error;
    }
  }

  async create(record: LeaseRecord, signal: AbortSignal): Promise<StoredLease> {
    const object = this.#object(record);
    return _record(
      await this.#client.json<LeaseObject>({
        ...this.#target("POST", "create"),
        path: `/apis/${COORDINATION_GROUP}/v1/namespaces/${enc(this.#namespace)}/${LEASES}`,
        body: object,
        signal,
      }),
    );
  }

  async update(record: LeaseRecord, resourceVersion: string, signal: AbortSignal): Promise<StoredLease> {
    const object = this.#object(record, resourceVersion);
    return _record(
      await this.#client.json<LeaseObject>({ ...this.#target("PUT", "update"), body: object, signal }),
    );
  }

  #target(method: "GET" | "POST" | "PUT", verb: string) {
    return {
      method,
      verb,
      group: COORDINATION_GROUP,
      resource: LEASES,
      namespace: this.#namespace,
      name: this.#name,
      path: `/apis/${COORDINATION_GROUP}/v1/namespaces/${enc(this.#namespace)}/${LEASES}/${enc(this.#name)}`,
    };
  }

  #object(record: LeaseRecord, resourceVersion?: string): Record<string, unknown> {
    return {
      apiVersion: `${COORDINATION_GROUP}/v1`,
      kind: "Lease",
      metadata: {
        name: this.#name,
        namespace: this.#namespace,
        ...(resourceVersion ? { resourceVersion } : {}),
        ...(record.annotations ? { annotations: record.annotations } : {}),
      },
      spec: {
        holderIdentity: record.holderIdentity,
        leaseDurationSeconds: record.leaseDurationSeconds,
        ...(record.acquireTime !== undefined ? { acquireTime: microTime(record.acquireTime) } : {}),
        ...(record.renewTime !== undefined ? { renewTime: microTime(record.renewTime) } : {}),
        leaseTransitions: record.leaseTransitions,
      },
    };
  }
}
