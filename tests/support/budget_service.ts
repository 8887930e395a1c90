/**
 * A GPU-budgeted Global Planner on a real kube-apiserver, as the budget e2e tests start it:
 * the pool namespace, deploy/rbac.yaml's ServiceAccount mounted as the pod would see it, the
 * caller's DGDs created before the service starts, file discovery for upstream's Python
 * clients, and the service as a process, returned once its DGD cache has listed the pool.
 */
import { type KubeCluster, startKubeCluster } from "./kube_cluster.ts";
import { assertVenv, callConnector, type ConnectorOutcome } from "./python.ts";
import { installRbac, SA_NAMESPACE } from "./rbac.ts";
import { type ServiceProcess, startService } from "./service.ts";

export interface BudgetServiceOptions {
  /** The budget's POD_NAMESPACE, where the DGDs live. */
  pool: string;
  /** The service's DYN_NAMESPACE. */
  gpNamespace: string;
  /** Flags after `--service-account-dir` (the budget's bounds, policies). */
  args: string[];
  /** Creates the fleet (and anything else the API server must hold) before the service starts. */
  seed(cluster: KubeCluster): Promise<void>;
  /** More environment for the service (e.g. its system status server). */
  env?: Record<string, string>;
}

export interface BudgetService {
  cluster: KubeCluster;
  service: ServiceProcess;
  /** The discovery env upstream's clients need to reach the service. */
  discovery: Record<string, string>;
  /** One request of upstream's `GlobalPlannerConnector` for `dgd`, as planner `{pool}-{dgd}`. */
  plan(dgd: string, targets: { prefill?: number; decode?: number }): Promise<ConnectorOutcome>;
  /** Stops the service (SIGTERM), then the cluster, and removes the temp dirs. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function startBudgetService(options: BudgetServiceOptions): Promise<BudgetService> {
  await assertVenv();
  // Under /tmp, whatever TMPDIR says: the service's permission set reads and writes only there.
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: `gp-${options.gpNamespace}-` });
  let cluster: KubeCluster | undefined;
  let service: ServiceProcess | undefined;
  const stop = async (): Promise<void> => {
    await service?.stop("SIGTERM");
    await cluster?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    cluster = await startKubeCluster();
    await cluster.createNamespace(options.pool);
    const token = await installRbac(cluster);
    const saDir = await cluster.writeServiceAccountDir(`${dir}/sa`, SA_NAMESPACE, token);
    await Deno.mkdir(`${dir}/kv`);
    await options.seed(cluster);
    const discovery = { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: `${dir}/kv` };
    service = await startService({
      args: ["--service-account-dir", saDir, ...options.args],
      env: {
        ...discovery,
        ...cluster.inClusterEnv(),
        DYN_NAMESPACE: options.gpNamespace,
        POD_NAMESPACE: options.pool,
        ...options.env,
      },
    });
    await service.waitForLog((l) => l.message === "DGD cache synced");
    const plan = (dgd: string, targets: { prefill?: number; decode?: number }): Promise<ConnectorOutcome> =>
      callConnector(discovery, {
        gpNamespace: options.gpNamespace,
        caller: `${options.pool}-${dgd}`,
        dgd,
        k8sNamespace: options.pool,
        ...targets,
      });
    return { cluster, service, discovery, plan, stop, [Symbol.asyncDispose]: stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
