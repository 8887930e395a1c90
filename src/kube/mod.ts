/**
 * The Kubernetes port: credentials → one client → the scaler the core talks to; with a GPU
 * budget, also the DGD watch cache and the budget planner on top of it.
 */
import type { BudgetSettings, KubeSettings } from "../config/config.ts";
import type { KubeTimeouts } from "../config/env.ts";
import type { Logger } from "../ops/log.ts";
import { BudgetPlanner } from "../service/budget_planner.ts";
import type { Scaler } from "../service/handlers.ts";
import { KubeBudgetPort } from "./budget_port.ts";
import { DgdCache, type DgdCacheState } from "./cache.ts";
import { KubeClient } from "./client.ts";
import { loadCredentials } from "./credentials.ts";
import { managedDgdNames } from "./participants.ts";
import { type ApiVersions, discoverVersions } from "./resources.ts";
import { KubeScaler } from "./scaler.ts";
import { pause } from "../timing.ts";

export { KubeClient } from "./client.ts";
export { KubeScaler } from "./scaler.ts";

export interface BudgetWiring {
  settings: BudgetSettings;
  podNamespace: string;
  managedNamespaces: readonly string[] | null;
  onPools?: (gpusByDgd: Record<string, number>) => void;
}

export interface KubeConnector {
  client: KubeClient;
  /** What scale requests go to: the budget planner when a budget is on, else the scaler. */
  scaler: Scaler;
  kubeScaler: KubeScaler;
  cache?: DgdCache;
  source: string;
  cacheState(): DgdCacheState | undefined;
  close(): Promise<void>;
}

/** How long start-up waits for the first DGD list before serving (the cache keeps retrying). */
const FIRST_LIST_WAIT_MS = 10_000;

export async function connectKubernetes(
  settings: KubeSettings & KubeTimeouts,
  getEnv: (name: string) => string | undefined,
  logger: Logger,
  budget?: BudgetWiring,
): Promise<KubeConnector> {
  const credentials = await loadCredentials({ serviceAccountDir: settings.serviceAccountDir, getEnv });
  const client = new KubeClient(credentials, logger, {
    requestTimeoutMs: settings.requestTimeoutMs,
    watchIdleMs: settings.watchIdleMs,
  });
  let versions: Promise<ApiVersions> | undefined;
  // Discovered once, on first use; a failure is not cached so the next request retries.
  const apiVersions = () =>
    versions ??= discoverVersions(client, settings.dgdApiVersion).catch((error) => {
      versions = undefined;
      throw error;
    });

  let port: KubeBudgetPort | undefined;
  const kubeScaler = new KubeScaler({
    client,
    logger,
    blockingTimeoutMs: settings.blockingTimeoutSeconds * 1000,
    versions: apiVersions,
    cachedView: (ref) => port?.viewOf(ref),
    onApplied: (ref, applied) => port?.recordApplied(ref, applied),
  });
  let scaler: Scaler = kubeScaler;
  let cache: DgdCache | undefined;
  if (budget) {
    cache = new DgdCache({
      client,
      version: async () => (await apiVersions()).dgd,
      namespace: budget.podNamespace,
      filter: managedDgdNames(budget.managedNamespaces, budget.podNamespace, logger),
      logger,
    });
    port = new KubeBudgetPort({
      cache,
      scaler: kubeScaler,
      client,
      version: async () => (await apiVersions()).dgd,
      onPools: budget.onPools,
    });
    scaler = new BudgetPlanner({
      port,
      bounds: { max: budget.settings.maxTotalGpus, min: budget.settings.minTotalGpus },
      intentTtlSeconds: budget.settings.intentCacheTtlSeconds,
      logger,
    });
    await _firstList(cache, logger);
  }
  return {
    client,
    scaler,
    kubeScaler,
    cache,
    source: credentials.source,
    cacheState: () => cache?.state(),
    async close() {
      await cache?.stop();
      client.close();
    },
  };
}

/** Upstream logs a failed start-up listing and continues; so do we, while the cache retries. */
async function _firstList(cache: DgdCache, logger: Logger) {
  const done = new AbortController();
  const waited = pause(FIRST_LIST_WAIT_MS, done.signal).then(() => "timeout" as const);
  try {
    const result = await Promise.race([cache.start().then(() => "synced" as const), waited]);
    if (result === "timeout") {
      logger.warn("DGD cache not synced yet; budget decisions fail until it is", { state: cache.state() });
    } else logger.info("DGD cache synced", { dgds: cache.state().dgds });
  } catch (error) {
    logger.error("DGD cache cannot list DynamoGraphDeployments; retrying in the background", {
      error: String(error),
    });
  } finally {
    done.abort();
  }
}
