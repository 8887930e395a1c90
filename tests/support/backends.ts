/** The two discovery backends a test can run a service and its callers on. */
import { startEtcd } from "./etcd.ts";

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
