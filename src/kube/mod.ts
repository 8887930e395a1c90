/**
 * The Kubernetes port: credentials → one client (`openKubeClient`, created once by the wiring
 * and shared by the scaler and the kubernetes discovery backend) → the scaler the core talks
 * to; with a GPU budget, also the DGD watch cache and the budget port the wiring hands to the
 * core's budget planner.
 */
import type { KubeSettings } from "../config/config.ts";
import type { KubeTimeouts } from "../config/env.ts";
import type { Logger } from "../ops/log.ts";
import { KubeBudgetPort } from "./budget_port.ts";
import { DgdCache, type DgdCacheState } from "./cache.ts";
import { KubeClient } from "./client.ts";
import { KubeEventRecorder } from "./events.ts";
import { loadCredentials } from "./credentials.ts";
import { managedDgdNames } from "./participants.ts";
import { type ApiVersions, discoverVersions } from "./resources.ts";
import { type Applied, KubeScaler } from "./scaler.ts";
import type { DgdView, ResolvedTarget } from "./dgd.ts";
import { ScaleUseCase } from "../service/scale_use_case.ts";
import type { DecisionObserver } from "../service/decision_timer.ts";
import { type TouchedCachesOptions, TouchedDgdCaches } from "./touched_cache.ts";
import { pause } from "../timing.ts";

export { KubeClient } from "./client.ts";
export { KubeScaler } from "./scaler.ts";

/** The core's scaling use case over the Kubernetes scale port. */
export type KubeScaleUseCase = ScaleUseCase<DgdView, ResolvedTarget, Applied>;
export { KubeWorkerMetadataApi } from "./worker_metadata.ts";

/** The one API client of the process and where its credentials came from. */
export interface OpenedKubeClient {
  client: KubeClient;
  source: string;
}

/** Loads the credentials once and builds the one client on them. */
export async function openKubeClient(
  serviceAccountDir: string,
  getEnv: (name: string) => string | undefined,
  logger: Logger,
  timeouts: KubeTimeouts = {},
): Promise<OpenedKubeClient> {
  const credentials = await loadCredentials({ serviceAccountDir, getEnv });
  return {
    client: new KubeClient(credentials, logger, {
      requestTimeoutMs: timeouts.requestTimeoutMs,
      watchIdleMs: timeouts.watchIdleMs,
    }),
    source: credentials.source,
  };
}

export interface BudgetWiring {
  podNamespace: string;
  managedNamespaces: readonly string[] | null;
  onPools?: (gpusByDgd: Record<string, number>, replace: boolean) => void;
}

/** Our opt-in policies as the connector applies them. */
export interface PolicyWiring {
  rejectStale: boolean;
  dryRun: boolean;
  /** With `--record-events`: `reportingInstance` of the Events. */
  eventsInstance?: string;
  /** Seconds each scale took to decide (metrics). */
  observeDecision?: DecisionObserver;
}

export interface KubeConnector {
  client: KubeClient;
  /** The core's use case over the Kubernetes port (without a budget, what scale requests go to). */
  kubeScaler: KubeScaleUseCase;
  cache?: DgdCache;
  /** With `--record-events`: the Events written for decisions. */
  events?: KubeEventRecorder;
  /** Watch caches of the DGDs requests touched (unless `watchTouched: false`). */
  touched?: TouchedDgdCaches;
  /** With a budget: what the core's `BudgetPlanner` reads and writes through. */
  budgetPort?: KubeBudgetPort;
  source: string;
  cacheState(): DgdCacheState | undefined;
  close(): Promise<void>;
}

/** How long start-up waits for the first DGD list before serving (the cache keeps retrying). */
const FIRST_LIST_WAIT_MS = 10_000;

/**
 * `shared`: the process's client (from `openKubeClient`); the connector then leaves closing it
 * to its owner. Otherwise (tests) a client is opened from `getEnv` and closed with the connector.
 */
export async function connectKubernetes(
  settings: KubeSettings & KubeTimeouts & { watchTouched?: false | Partial<TouchedCachesOptions> },
  getEnv: (name: string) => string | undefined,
  logger: Logger,
  budget?: BudgetWiring,
  shared?: OpenedKubeClient,
  policy?: PolicyWiring,
): Promise<KubeConnector> {
  const owned = shared === undefined;
  const { client, source } = shared ??
    await openKubeClient(settings.serviceAccountDir, getEnv, logger, settings);
  let versions: Promise<ApiVersions> | undefined;
  // Discovered once, on first use; a failure is not cached so the next request retries.
  const apiVersions = () =>
    versions ??= discoverVersions(client, settings.dgdApiVersion).catch((error) => {
      versions = undefined;
      throw error;
    });

  let port: KubeBudgetPort | undefined;
  // Every mode decides on a watched copy: a steady-state scale is then one call, its write.
  const touched = settings.watchTouched === false ? undefined : new TouchedDgdCaches({
    client,
    logger,
    version: async () => (await apiVersions()).dgd,
    ...settings.watchTouched,
  });
  const recorder = policy?.eventsInstance !== undefined
    ? new KubeEventRecorder({ client, logger, instance: policy.eventsInstance })
    : undefined;
  const kubeScaler: KubeScaleUseCase = new ScaleUseCase({
    port: new KubeScaler({
      client,
      logger,
      versions: apiVersions,
      cachedView: (ref) => port?.viewOf(ref) ?? touched?.viewOf(ref),
      watching: (ref) => port?.viewOf(ref) ? port.watching(ref) : touched?.watching(ref) ?? false,
      onApplied: (ref, applied) => {
        port?.recordApplied(ref, applied);
        touched?.record(applied.view);
      },
      follow: (ref, listener) =>
        (cache?.namespace === ref.namespace ? cache.follow(ref.name, listener) : undefined) ??
          touched?.follow(ref, listener),
    }),
    logger,
    blockingTimeoutMs: settings.blockingTimeoutSeconds * 1000,
    rejectStale: policy?.rejectStale,
    dryRun: policy?.dryRun,
    events: recorder,
    decisions: { observe: policy?.observeDecision },
  });
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
      watched: touched,
    });
    await _firstList(cache, logger);
  }
  return {
    client,
    kubeScaler,
    cache,
    events: recorder,
    touched,
    budgetPort: port,
    source,
    cacheState: () => cache?.state(),
    async close() {
      await Promise.all([cache?.stop(), touched?.close()]);
      await recorder?.flush();
      if (owned) client.close();
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
