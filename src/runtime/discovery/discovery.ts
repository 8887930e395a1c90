/**
 * Discovery: how callers find this process. Every backend stores the same endpoint record
 * under `v1/instances/{ns}/{comp}/{ep}/{instance hex}`.
 */
import { instanceHex } from "../codec/json.ts";

export interface EndpointRecord {
  namespace: string;
  component: string;
  endpoint: string;
  instanceId: bigint;
  transport: Record<string, string>;
}

/**
 * Builds the records for an instance id. A backend that must re-create its registration under
 * a new id (etcd, after losing its lease) calls it again, and writes nothing before it resolves:
 * the request plane gets to make the new id reachable (a NATS subscription the server has seen)
 * before any caller can read a record naming it.
 */
export type RecordSource = (instanceId: bigint) => EndpointRecord[] | Promise<EndpointRecord[]>;

export interface Discovery {
  /** This process's instance id (etcd lease id, or random for the file backend); etcd's may change. */
  readonly instanceId: bigint;
  /** The records registered now (under `instanceId`). */
  readonly records: EndpointRecord[];
  /** Registers every record; resolves when all are visible to callers. */
  register(records: EndpointRecord[] | RecordSource): Promise<void>;
  /** Removes this process's records (first step of a graceful shutdown). */
  deregister(): Promise<void>;
  /** Rejects when the registration is lost for good (etcd lease expired, with exit-on-loss set). */
  readonly lost: Promise<never>;
  /** True while the registration is known to be alive. */
  readonly healthy: boolean;
  close(): Promise<void>;
}

export const INSTANCES_BUCKET = "v1/instances";

export function recordKey(record: EndpointRecord): string {
  return `${record.namespace}/${record.component}/${record.endpoint}/${instanceHex(record.instanceId)}`;
}

/**
 * The record's JSON text. Written by hand so that `instance_id` keeps all 64 bits: etcd lease
 * ids exceed `Number.MAX_SAFE_INTEGER`.
 */
export function recordJson(record: EndpointRecord): string {
  return `{"type":"Endpoint","component":${JSON.stringify(record.component)},` +
    `"endpoint":${JSON.stringify(record.endpoint)},"namespace":${JSON.stringify(record.namespace)},` +
    `"instance_id":${record.instanceId.toString(10)},"transport":${JSON.stringify(record.transport)}}`;
}

/** A random instance id below 2^63 (file backend). */
export function randomInstanceId(): bigint {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  bytes[0] &= 0x7f;
  let id = 0n;
  for (const b of bytes) id = (id << 8n) | BigInt(b);
  return id === 0n ? 1n : id;
}
