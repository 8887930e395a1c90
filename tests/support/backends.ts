/**
 * The one definition of what a test runs a service and its callers on: the discovery backends
 * that need no cluster (kubernetes discovery: tests/support/kube_discovery.ts) and the request
 * planes.
 */
import { startEtcd } from "./etcd.ts";
import { type NatsServer, type NatsServerOptions, startNats } from "./nats.ts";

export interface DiscoveryBackend {
  name: "etcd" | "file";
  /** Environment for the service and its callers. */
  env: Record<string, string>;
  cleanup: () => Promise<void>;
}

export async function etcdBackend(): Promise<DiscoveryBackend> {
  const etcd = await startEtcd();
  return {
    name: "etcd",
    env: { DYN_DISCOVERY_BACKEND: "etcd", ETCD_ENDPOINTS: etcd.endpoint },
    cleanup: etcd.stop,
  };
}

export async function fileBackend(): Promise<DiscoveryBackend> {
  const dir = await Deno.makeTempDir({ prefix: "gp-kv-" });
  return {
    name: "file",
    env: { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: dir },
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
}

/** The request planes a service and its callers can use; the matrix runs every pair. */
export interface RequestPlaneSetup {
  name: "tcp" | "nats";
  /** Environment for the service and its callers (1.6.1 callers read the same variables). */
  env: Record<string, string>;
  /** The private nats-server of the `nats` plane. */
  nats?: NatsServer;
  cleanup: () => Promise<void>;
}

export function tcpPlane(): Promise<RequestPlaneSetup> {
  return Promise.resolve({
    name: "tcp",
    env: { DYN_REQUEST_PLANE: "tcp" },
    cleanup: () => Promise.resolve(),
  });
}

export async function natsPlane(options: NatsServerOptions = {}): Promise<RequestPlaneSetup> {
  const nats = await startNats(options);
  return {
    name: "nats",
    env: { DYN_REQUEST_PLANE: "nats", NATS_SERVER: nats.url },
    nats,
    cleanup: nats.stop,
  };
}

export const REQUEST_PLANES: (() => Promise<RequestPlaneSetup>)[] = [tcpPlane, natsPlane];
