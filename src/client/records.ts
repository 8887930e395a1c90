/**
 * Discovery records as a caller reads them. The JSON text is parsed with `instance_id` taken
 * from its source digits: ids are full-range u64 (file backend ids above 2^63 were seen), which
 * `JSON.parse` alone would round.
 */
import { DiscoveryError } from "../errors.ts";
import { parseSocketAddress } from "../runtime/net.ts";

export interface InstanceRecord {
  namespace: string;
  component: string;
  endpoint: string;
  instanceId: bigint;
  /** The `transport.tcp` string: `<ip:port>/<path>` (an instance on the TCP request plane). */
  tcp?: string;
  /** The `transport.nats_tcp` subject (an instance on the NATS request plane). */
  nats?: string;
  /** `request_plane_codec` as advertised; absent = JSON (1.6.1 callers do the same). */
  codec?: string;
}

/** Where a request goes: the socket address and the path sent verbatim in the frame. */
export interface RequestTarget {
  hostname: string;
  port: number;
  /** Everything after the first `/` of `transport.tcp` (1.6.1 callers do not parse it). */
  path: string;
}

// The third reviver argument (source text access) is not in TypeScript's lib yet.
type _Reviver = (key: string, value: unknown, context?: { source?: string }) => unknown;

const _reviveId: _Reviver = (key, value, context) =>
  key === "instance_id" && typeof value === "number" && context?.source !== undefined
    ? BigInt(context.source)
    : value;

/** Parses one record; `null` for records of another kind (not an endpoint over TCP or NATS). */
export function parseInstanceRecord(text: string, where: string): InstanceRecord | null {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(text, _reviveId as Parameters<typeof JSON.parse>[1]);
  } catch (error) {
    throw new DiscoveryError(`discovery record ${where} is not JSON`, { cause: error });
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new DiscoveryError(`discovery record ${where} is not a JSON object`);
  }
  if (value.type !== undefined && value.type !== "Endpoint") return null;
  const transport = value.transport as Record<string, unknown> | undefined;
  const tcp = typeof transport?.tcp === "string" ? transport.tcp : undefined;
  const nats = typeof transport?.nats_tcp === "string" ? transport.nats_tcp : undefined;
  if (tcp === undefined && nats === undefined) return null;
  const id = value.instance_id;
  if (typeof id !== "bigint" || id < 0n || id >= 1n << 64n) {
    throw new DiscoveryError(`discovery record ${where} has no valid u64 instance_id`);
  }
  for (const field of ["namespace", "component", "endpoint"]) {
    if (typeof value[field] !== "string") {
      throw new DiscoveryError(`discovery record ${where} lacks ${field}`);
    }
  }
  return {
    namespace: value.namespace as string,
    component: value.component as string,
    endpoint: value.endpoint as string,
    instanceId: id,
    ...(tcp !== undefined ? { tcp } : {}),
    ...(nats !== undefined ? { nats } : {}),
    codec: typeof value.request_plane_codec === "string" ? value.request_plane_codec : undefined,
  };
}

/** Splits `transport.tcp` at its first `/` into the socket address and the request path. */
export function requestTarget(record: InstanceRecord): RequestTarget {
  const tcp = record.tcp ?? "";
  const slash = tcp.indexOf("/");
  const address = slash < 0 ? tcp : tcp.slice(0, slash);
  const path = slash < 0 ? "" : tcp.slice(slash + 1);
  const socket = parseSocketAddress(address);
  if (!socket || !path) {
    throw new DiscoveryError(
      `instance ${record.instanceId.toString(16)} advertises an unusable TCP transport: ${record.tcp}`,
    );
  }
  return { ...socket, path };
}

/** Random order, so repeated calls spread over instances as 1.6.1's default (random) router. */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
