/** Builds the running service from a validated `Config`: handlers → endpoints → host. */
import type { Config } from "./config/mod.ts";
import { connectKubernetes, type KubeConnector } from "./kube/mod.ts";
import type { Logger } from "./ops/log.ts";
import { type EndpointHost, startEndpointHost } from "./runtime/host.ts";
import {
  COMPONENT,
  createHealthHandler,
  createScaleRequestHandler,
  HEALTH_CHECK_PAYLOAD,
  HEALTH_ENDPOINT,
  SCALE_ENDPOINT,
  type Scaler,
} from "./service/handlers.ts";

export interface GlobalPlanner {
  host: EndpointHost;
  stop(graceMs?: number): Promise<void>;
}

export const DEFAULT_GRACE_MS = 25_000;

export async function startGlobalPlanner(
  config: Config,
  logger: Logger,
  getEnv: (name: string) => string | undefined,
): Promise<GlobalPlanner> {
  let kube: KubeConnector | undefined;
  if (!config.noOperation) {
    kube = await connectKubernetes(config.kube, getEnv, logger);
    logger.info("Kubernetes connector ready", { server: kube.client.server, credentials: kube.source });
  }
  const scaler: Scaler | undefined = kube?.scaler;
  const endpoints = [
    {
      name: SCALE_ENDPOINT,
      handler: createScaleRequestHandler({
        managedNamespaces: config.managedNamespaces,
        noOperation: config.noOperation,
        scaler,
        logger,
      }),
    },
    {
      name: HEALTH_ENDPOINT,
      handler: createHealthHandler({
        namespace: config.dynNamespace,
        managedNamespaces: config.managedNamespaces,
      }),
      healthCheckPayload: HEALTH_CHECK_PAYLOAD,
    },
  ];
  const host = await startEndpointHost({
    namespace: config.dynNamespace,
    component: COMPONENT,
    endpoints,
    runtime: config.runtime,
    logger,
  });
  logger.info("Global Planner ready", {
    namespace: config.dynNamespace,
    endpoints: host.records.map((r) => `${r.namespace}.${r.component}.${r.endpoint}`),
    instance_id: host.instanceId.toString(16),
    address: host.address,
    discovery: config.runtime.discovery,
    request_plane: config.runtime.requestPlane,
    managed_namespaces: config.managedNamespaces ?? "all",
    no_operation: config.noOperation,
    pod_namespace: config.podNamespace,
  });
  return {
    host,
    async stop(graceMs = DEFAULT_GRACE_MS) {
      await host.stop(graceMs);
      kube?.close();
    },
  };
}
