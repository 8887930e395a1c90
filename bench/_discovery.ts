/**
 * The discovery backends a no-op cell can run on, each giving every process start the environment
 * its server and its caller need. Private to bench/.
 *
 * Kubernetes: no controller-manager runs on the test cluster, so the bench plays the EndpointSlice
 * controller: before each start it creates the slice a discovery-labelled Service would get
 * (ready, `targetRef` = the pod name and uid the process is given). kube-apiserver refuses
 * loopback addresses in slices, so the slice carries a documentation-range address; callers
 * route by the address in the DynamoWorkerMetadata CR's transport, which is loopback.
 */
import { startEtcd } from "../tests/support/etcd.ts";
import { type KubeCluster, startKubeCluster, upstreamDwmCrd } from "../tests/support/kube_cluster.ts";

export type DiscoveryName = "file" | "etcd" | "kubernetes";
export const DISCOVERY_NAMES: readonly DiscoveryName[] = ["file", "etcd", "kubernetes"];

/** One process start: what the server and its caller get, and what to undo afterwards. */
export interface Start {
  server: Record<string, string>;
  driver: Record<string, string>;
  /** Just before the server is spawned (the stand-in EndpointSlice controller). */
  beforeSpawn(): Promise<void>;
  cleanup(): Promise<void>;
}

export interface Discovery {
  readonly name: DiscoveryName;
  start(key: string): Promise<Start>;
  stop(): Promise<void>;
}

const nothing = (): Promise<void> => Promise.resolve();

export async function startDiscovery(name: DiscoveryName, scratch: string): Promise<Discovery> {
  if (name === "file") {
    // A fresh directory per start: a previous start's registrations cannot answer for it.
    return {
      name,
      async start(key) {
        const kv = await Deno.makeTempDir({ dir: scratch, prefix: `kv-${key}-` });
        const env = { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: kv };
        return { server: env, driver: env, beforeSpawn: nothing, cleanup: nothing };
      },
      stop: nothing,
    };
  }
  if (name === "etcd") {
    const etcd = await startEtcd();
    const env = { DYN_DISCOVERY_BACKEND: "etcd", ETCD_ENDPOINTS: etcd.endpoint };
    return {
      name,
      start: () => Promise.resolve({ server: env, driver: env, beforeSpawn: nothing, cleanup: nothing }),
      stop: () => etcd.stop(),
    };
  }
  return await kubernetesDiscovery(scratch);
}

const K8S_NS = "bench-kd";
const DWM_PATH = `/apis/nvidia.com/v1alpha1/namespaces/${K8S_NS}/dynamoworkermetadatas`;
const SLICE_PATH = `/apis/discovery.k8s.io/v1/namespaces/${K8S_NS}/endpointslices`;
/** TEST-NET-1: the API server refuses loopback in slices, and nothing routes by it. */
const SLICE_ADDRESS = "192.0.2.10";

interface Pod {
  name: string;
  uid: string;
}

function pod(prefix: string): Pod {
  const uid = crypto.randomUUID();
  return { name: `${prefix}-${uid.slice(0, 8)}`, uid };
}

async function createSlice(cluster: KubeCluster, p: Pod): Promise<void> {
  const r = await cluster.request("POST", SLICE_PATH, {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: p.name,
      labels: {
        "kubernetes.io/service-name": p.name,
        "nvidia.com/dynamo-discovery-backend": "kubernetes",
        "nvidia.com/dynamo-discovery-enabled": "true",
      },
    },
    addressType: "IPv4",
    endpoints: [{
      addresses: [SLICE_ADDRESS],
      conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: "Pod", namespace: K8S_NS, name: p.name, uid: p.uid },
    }],
    ports: [{ name: "system", port: 9090, protocol: "TCP" }],
  });
  if (!r.ok) throw new Error(`create EndpointSlice ${p.name}: HTTP ${r.status} ${r.text}`);
}

/** Removes what a pod leaves behind (upstream keeps its CR after SIGTERM; no GC runs here). */
async function removePod(cluster: KubeCluster, p: Pod): Promise<void> {
  for (const path of [`${SLICE_PATH}/${p.name}`, `${DWM_PATH}/${p.name}`]) {
    const r = await cluster.request("DELETE", path);
    if (!r.ok && r.status !== 404) throw new Error(`DELETE ${path}: HTTP ${r.status} ${r.text}`);
  }
}

async function kubernetesDiscovery(scratch: string): Promise<Discovery> {
  const cluster = await startKubeCluster({ dgdCrd: "none", dgdsaCrd: false });
  try {
    await cluster.installCrdFile(upstreamDwmCrd());
    await cluster.createNamespace(K8S_NS);
    // Under the scratch space in /tmp: the service's permission set reads /tmp.
    const kubeconfig = `${scratch}/kd-kubeconfig`;
    await cluster.kubeconfig(kubeconfig, cluster.adminToken, K8S_NS);
    const kube = { DYN_DISCOVERY_BACKEND: "kubernetes", KUBECONFIG: kubeconfig, POD_NAMESPACE: K8S_NS };
    return {
      name: "kubernetes",
      start(key) {
        const caller = pod(`bench-caller-${key}`);
        const server = pod(`bench-${key}`);
        return Promise.resolve({
          server: { ...kube, POD_NAME: server.name, POD_UID: server.uid },
          driver: { ...kube, POD_NAME: caller.name, POD_UID: caller.uid },
          beforeSpawn: () => createSlice(cluster, server),
          cleanup: () => removePod(cluster, server),
        });
      },
      stop: () => cluster.stop(),
    };
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}
