/**
 * Upstream's Python Global Planner (ai-dynamo 1.6.1, `python -m dynamo.global_planner` WITHOUT
 * --no-operation) against the test cluster, for the phases that run it side by side with ours.
 * Private to bench/.
 */
import type { KubeCluster } from "../tests/support/kube_cluster.ts";
import { type CountingProxy, startCountingProxy } from "../tests/support/tcp_proxy.ts";
import { UPSTREAM_SA } from "../tests/support/upstream_rbac.ts";
import { PYTHON, stopChild } from "./_util.ts";

export { PYTHON } from "./_util.ts";
const SA_NS = "dynamo-system";

/** A started target (ours or upstream): where it serves and how its API traffic is counted. */
export interface Started {
  namespace: string;
  proxy: CountingProxy;
  user: string;
  metricsPort?: number;
  stop(): Promise<void>;
}

export interface UpstreamOptions {
  /** The Kubernetes namespace of its DGDs (POD_NAMESPACE, the kubeconfig's context). */
  k8sNamespace: string;
  /** Its Dynamo namespace: it serves `<namespace>.GlobalPlanner.scale_request`. */
  namespace: string;
}

/**
 * Starts it with KUBECONFIG (server = a counting proxy, token of its own ServiceAccount): its
 * kubernetes client tries load_incluster_config() first, which fails without
 * KUBERNETES_SERVICE_HOST, and falls back to load_kube_config(). Logs go to
 * `<scratch>/upstream.stdout|stderr`; the file KV is `<scratch>/kv-shared-<namespace>`.
 */
export async function startUpstream(
  cluster: KubeCluster,
  scratch: string,
  token: string,
  options: UpstreamOptions,
): Promise<Started> {
  const proxy = startCountingProxy(cluster.port);
  const kubeconfig = `${scratch}/upstream-kubeconfig`;
  await cluster.kubeconfig(kubeconfig, token, options.k8sNamespace);
  const text = await Deno.readTextFile(kubeconfig);
  const direct = `https://127.0.0.1:${cluster.port}`;
  if (!text.includes(direct)) throw new Error(`kubeconfig has no ${direct}`);
  await Deno.writeTextFile(kubeconfig, text.replaceAll(direct, `https://127.0.0.1:${proxy.port}`));
  const kv = `${scratch}/kv-shared-${options.namespace}`;
  await Deno.mkdir(kv, { recursive: true });
  const child = new Deno.Command(PYTHON, {
    args: ["-m", "dynamo.global_planner"],
    env: {
      DYN_NAMESPACE: options.namespace,
      POD_NAMESPACE: options.k8sNamespace,
      DYN_DISCOVERY_BACKEND: "file",
      DYN_REQUEST_PLANE: "tcp",
      DYN_FILE_KV: kv,
      DYN_TCP_RPC_HOST: "127.0.0.1",
      KUBECONFIG: kubeconfig,
      HOME: scratch,
      PATH: "/usr/bin:/bin",
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs = Promise.all([
    Deno.open(`${scratch}/upstream.stdout`, { write: true, create: true }).then((f) =>
      child.stdout.pipeTo(f.writable)
    ),
    Deno.open(`${scratch}/upstream.stderr`, { write: true, create: true }).then((f) =>
      child.stderr.pipeTo(f.writable)
    ),
  ]).catch(() => {});
  return {
    namespace: options.namespace,
    proxy,
    user: `system:serviceaccount:${SA_NS}:${UPSTREAM_SA}`,
    async stop() {
      await stopChild(child);
      await logs;
      await proxy.close();
    },
  };
}
