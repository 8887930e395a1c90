/**
 * Builds the running service from a validated `Config`: Kubernetes port (unless no-operation),
 * metrics, system status server, handlers → endpoints → host. Owns the shutdown order.
 */
import { budgetEnabled } from "./config/config.ts";
import { ConfigError } from "./errors.ts";
import type { Config } from "./config/mod.ts";
import type { KubeConnector, OpenedKubeClient } from "./kube/mod.ts";
import { readStatusSettings } from "./config/status.ts";
import type { LeaderElector } from "./kube/leader/mod.ts";
import { errorText } from "./errors.ts";
import { pause } from "./timing.ts";
import { createGlobalPlannerMetrics, type GlobalPlannerMetrics, isScaleReason } from "./ops/gp_metrics.ts";
import type { Logger } from "./ops/log.ts";
import { type Readiness, startStatusServer, type StatusServer } from "./ops/status_server.ts";
import { type EndpointHost, startEndpointHost } from "./runtime/host.ts";
import type { BudgetPlanner } from "./service/budget_planner.ts";
import {
  COMPONENT,
  createHealthHandler,
  createScaleRequestHandler,
  HEALTH_CHECK_PAYLOAD,
  HEALTH_ENDPOINT,
  MAX_REQUEST_BYTES,
  SCALE_ENDPOINT,
  type Scaler,
} from "./service/handlers.ts";
import { VERSION } from "./version.ts";

export interface GlobalPlanner {
  host: EndpointHost;
  metrics: GlobalPlannerMetrics;
  status?: StatusServer;
  readiness(): Readiness;
  stop(graceMs?: number): Promise<void>;
}

export const DEFAULT_GRACE_MS = 25_000;
/** Where the leader keeps the GPU budget's fresh intents on its Lease. */
export const INTENTS_ANNOTATION = "globalplanner.dynamo.example/intents";
/**
 * How often the API server is probed (`/version`) in the background, so readiness notices an
 * outage even when no request is being served.
 */
const KUBE_PROBE_INTERVAL_MS = 5_000;

export async function startGlobalPlanner(
  config: Config,
  logger: Logger,
  getEnv: (name: string) => string | undefined,
): Promise<GlobalPlanner> {
  const election = config.leaderElection.enabled ? config.leaderElection : undefined;
  const metrics = createGlobalPlannerMetrics({ version: VERSION, leaderElection: election !== undefined });
  let elector: LeaderElector | undefined;
  let budgetPlanner: BudgetPlanner | undefined;
  const statusSettings = readStatusSettings(getEnv);
  let host: EndpointHost | undefined;
  let stopping = false;
  let kube: KubeConnector | undefined;
  /** The one Kubernetes API client: scaling (unless no-operation) and kubernetes discovery share it. */
  let api: OpenedKubeClient | undefined;
  let scaler: Scaler | undefined;
  let lastProbe = 0;
  let probing: Promise<unknown> | undefined;
  let probeTimer: ReturnType<typeof setInterval> | undefined;
  const probe = () => {
    if (!kube || probing) return;
    lastProbe = Date.now();
    const client = kube.client;
    const before = client.reachable;
    probing = client.probe().then((ok) => {
      // Logged once per change, not once per probe.
      if (ok && before === false) logger.info("Kubernetes API reachable again", { server: client.server });
      if (!ok && before !== false) {
        logger.warn("Kubernetes API not reachable", { server: client.server, error: client.lastFailure });
      }
    }).finally(() => (probing = undefined));
  };

  // Role changes run one at a time: registering as a fresh leader, withdrawing as a standby.
  let transitions: Promise<void> = Promise.resolve();
  const transition = (step: () => Promise<void>) => {
    transitions = transitions.then(step).catch((error) =>
      logger.error("leader transition failed", { error: errorText(error) })
    );
  };
  const startElection = async (client: OpenedKubeClient["client"]): Promise<LeaderElector> => {
    // Loaded only with --leader-elect, like the budget planner only with a budget.
    const { KubeLeaseApi, LeaderElector, leaderWriteFence } = await import("./kube/leader/mod.ts");
    const e = new LeaderElector({
      ...election!,
      api: new KubeLeaseApi(client, config.podNamespace, election!.resourceName),
      identity: `${config.podName ?? "global-planner"}_${crypto.randomUUID()}`,
      logger,
      // The budget's fresh intents ride on the Lease, so a successor pairs as this leader would.
      state: budgetPlanner
        ? () => ({
          [INTENTS_ANNOTATION]: budgetPlanner!.intents.exportFresh(
            Date.now() / 1000,
            config.budget.intentCacheTtlSeconds,
            (key) => kube?.budgetPort?.generationOf(key),
          ),
        })
        : undefined,
      onStartedLeading: (term, inherited) => {
        metrics.countLeaderTransition();
        metrics.setLeader(true);
        const intents = inherited[INTENTS_ANNOTATION];
        transition(async () => {
          // Nothing learnt as a standby is trusted: the DGD cache lists again first.
          if (kube?.cache) {
            await Promise.race([kube.cache.relist(), pause(election!.renewDeadlineMs, term)]);
          }
          // Judged against the fresh list: an intent whose DGD moved since its export is dropped.
          if (budgetPlanner && intents) {
            const restored = budgetPlanner.intents.restore(
              intents,
              (key) => kube?.budgetPort?.generationOf(key),
            );
            logger.info("budget intents inherited from the previous leader", {
              intents: restored.taken,
              superseded: restored.superseded,
            });
          }
          // Registration is retried while the term lasts (an etcd or API outage at the handover).
          for (let attempt = 1; !term.aborted; attempt++) {
            try {
              await host!.register();
              break;
            } catch (error) {
              logger.warn("cannot register as the leader; retrying", { attempt, error: errorText(error) });
              await pause(election!.retryPeriodMs, term);
            }
          }
          if (term.aborted) return;
          logger.info("serving as leader", {
            role: "leader",
            identity: e.identity,
            instance_id: host!.instanceId?.toString(16),
          });
        });
      },
      onStoppedLeading: (reason) => {
        metrics.countLeaderTransition();
        metrics.setLeader(false);
        transition(async () => {
          await host?.deregister();
          logger.info("standing by", { role: "standby", identity: e.identity, reason });
        });
      },
    });
    client.setWriteFence(leaderWriteFence(e));
    e.start();
    return e;
  };

  const readiness = (): Readiness => {
    const registered = host !== undefined && host.healthy && !stopping;
    const state = registered ? "ready" : "notready";
    const endpoints = { [SCALE_ENDPOINT]: state, [HEALTH_ENDPOINT]: state } as const;
    metrics.setDiscoveryRegistered(registered);
    // A standby is live and ready (a rollout proceeds) while unregistered; only the leader
    // answers for its registration.
    const role = elector ? (elector.leading ? "leader" : "standby") : undefined;
    if (elector) metrics.setLeader(elector.leading);
    if (stopping) return { ready: false, endpoints, reason: "shutting down", role };
    if (!host) return { ready: false, endpoints, reason: "endpoints not registered yet", role };
    if (role === "standby" || (role === "leader" && !host.registered)) {
      return { ready: true, endpoints, role };
    }
    if (!host.plane.healthy) {
      return {
        ready: false,
        endpoints,
        reason: `request plane (${config.runtime.requestPlane}) is not connected`,
        role,
      };
    }
    if (!registered) {
      return {
        ready: false,
        endpoints,
        reason: `discovery registration (${config.runtime.discovery}) is not alive`,
        role,
      };
    }
    if (kube && kube.client.reachable !== true) {
      if (Date.now() - lastProbe > KUBE_PROBE_INTERVAL_MS) probe();
      return {
        ready: false,
        endpoints,
        reason: `Kubernetes API ${kube.client.server} not reachable: ${
          kube.client.lastFailure ?? "not probed yet"
        }`,
        role,
      };
    }
    return { ready: true, endpoints, role };
  };

  // Gauges that mirror live state are refreshed when scraped.
  const scrape = {
    render: () => {
      readiness();
      const state = kube?.cacheState();
      if (state) metrics.setDgdWatchUp(state.watching);
      if (kube) metrics.setKubeApiCalls(kube.client.calls);
      return metrics.render();
    },
  };
  // The status server comes first, so probes see 503 with a reason instead of a refused port.
  const status = statusSettings
    ? await startStatusServer(statusSettings, readiness, scrape, logger)
    : undefined;
  try {
    // The Kubernetes code is loaded only when the API is used (not with --no-operation,
    // file or etcd discovery and no leader election): modules cost resident memory.
    const kubeModule = !config.noOperation || config.runtime.discovery === "kubernetes" || election
      ? await import("./kube/mod.ts")
      : undefined;
    if (kubeModule) {
      api = await kubeModule.openKubeClient(
        config.kube.serviceAccountDir,
        getEnv,
        logger,
        config.kubeTimeouts,
      ).catch(
        (error) => {
          // With --no-operation only discovery needs the API; say so instead of suggesting the flag.
          if (!config.noOperation || election || !(error instanceof ConfigError)) throw error;
          throw new ConfigError(
            `DYN_DISCOVERY_BACKEND=kubernetes publishes through the Kubernetes API: ${
              error.message.replace(/; run with --no-operation.*$/, "")
            }`,
            { cause: error },
          );
        },
      );
    }
    if (!config.noOperation) {
      const budget = budgetEnabled(config.budget)
        ? {
          podNamespace: config.podNamespace,
          managedNamespaces: config.managedNamespaces,
          onPools: (gpus: Record<string, number>, replace: boolean) =>
            replace ? metrics.setManagedGpus(gpus) : metrics.updateManagedGpus(gpus),
        }
        : undefined;
      if (budget) {
        metrics.setGpuBudget({
          max: config.budget.maxTotalGpus >= 0 ? config.budget.maxTotalGpus : undefined,
          min: config.budget.minTotalGpus >= 0 ? config.budget.minTotalGpus : undefined,
        });
      }
      kube = await kubeModule!.connectKubernetes(config.kube, getEnv, logger, budget, api, {
        rejectStale: config.policy.rejectStale,
        dryRun: config.policy.dryRun,
        eventsInstance: config.policy.recordEvents
          ? config.runtime.kube?.podName ?? `global-planner-${config.dynNamespace}`
          : undefined,
        observeDecision: (seconds, inTurn) => metrics.recordDecision(seconds, inTurn),
      });
      // The core's budget planner on top of the Kubernetes budget port (loaded only with a
      // budget), or the plain scaler.
      if (kube.budgetPort) {
        const { BudgetPlanner } = await import("./service/budget_planner.ts");
        budgetPlanner = new BudgetPlanner({
          port: kube.budgetPort,
          bounds: { max: config.budget.maxTotalGpus, min: config.budget.minTotalGpus },
          intentTtlSeconds: config.budget.intentCacheTtlSeconds,
          logger,
          rejectStale: config.policy.rejectStale,
          dryRun: config.policy.dryRun,
          events: kube.events,
          decisions: { observe: (seconds, inTurn) => metrics.recordDecision(seconds, inTurn) },
          observe: {
            decision: (kind) => metrics.countBudgetDecision(kind),
            writesInFlight: (writes) => metrics.setBudgetWritesInFlight(writes),
          },
        });
        scaler = budgetPlanner;
      } else {
        scaler = kube.kubeScaler;
      }
      lastProbe = Date.now();
      const reachable = await kube.client.probe();
      logger.info("Kubernetes connector ready", {
        server: kube.client.server,
        credentials: kube.source,
        reachable,
      });
      probeTimer = setInterval(probe, KUBE_PROBE_INTERVAL_MS);
    }
    const endpoints = [
      {
        name: SCALE_ENDPOINT,
        maxRequestBytes: MAX_REQUEST_BYTES,
        handler: createScaleRequestHandler({
          managedNamespaces: config.managedNamespaces,
          noOperation: config.noOperation,
          binding: config.policy,
          dryRun: config.policy.dryRun,
          scaler,
          logger,
          observe: (result, reason, seconds) =>
            metrics.recordScale(result, isScaleReason(reason) ? reason : "internal_error", seconds),
          track: () => metrics.trackInflight(),
        }),
      },
      {
        name: HEALTH_ENDPOINT,
        handler: createHealthHandler({
          namespace: config.dynNamespace,
          managedNamespaces: config.managedNamespaces,
          registered: () => host?.healthy,
          role: election ? () => elector?.role : undefined,
          discovery: config.runtime.discovery,
          dgdWatch: () => {
            const state = kube?.cacheState();
            if (state) metrics.setDgdWatchUp(state.watching);
            return state;
          },
        }),
        healthCheckPayload: HEALTH_CHECK_PAYLOAD,
        maxRequestBytes: MAX_REQUEST_BYTES,
      },
    ];
    host = await startEndpointHost({
      namespace: config.dynNamespace,
      component: COMPONENT,
      endpoints,
      runtime: config.runtime,
      logger,
      workerMetadata: api && config.runtime.discovery === "kubernetes"
        ? new kubeModule!.KubeWorkerMetadataApi(api.client)
        : undefined,
      standby: election !== undefined,
    });
    if (election && api) {
      elector = await startElection(api.client);
    }
  } catch (error) {
    clearInterval(probeTimer);
    await kube?.close();
    api?.client.close();
    await status?.close();
    throw error;
  }
  metrics.setDiscoveryRegistered(host.registered);
  // The same line with leader election (tools wait for it); `role` says it is still campaigning.
  logger.info("Global Planner ready", {
    namespace: config.dynNamespace,
    endpoints: host.records.map((r) => `${r.namespace}.${r.component}.${r.endpoint}`),
    instance_id: host.instanceId?.toString(16),
    ...(elector ? { identity: elector.identity, role: elector.role } : {}),
    address: host.address,
    discovery: config.runtime.discovery,
    ...(config.runtime.kube ? { cr_name: config.runtime.kube.crName, pod: config.runtime.kube.podName } : {}),
    request_plane: config.runtime.requestPlane,
    managed_namespaces: config.managedNamespaces ?? "all",
    no_operation: config.noOperation,
    ...(config.policy.callerBinding !== "off" ? { caller_binding: config.policy.callerBinding } : {}),
    ...(config.policy.managedK8sNamespaces
      ? { managed_k8s_namespaces: config.policy.managedK8sNamespaces }
      : {}),
    ...(config.policy.rejectStale ? { reject_stale: true } : {}),
    ...(config.policy.dryRun ? { dry_run: true } : {}),
    ...(config.policy.recordEvents ? { record_events: true } : {}),
    pod_namespace: config.podNamespace,
    system_port: status?.port,
    version: VERSION,
  });
  const running = host;
  return {
    host: running,
    metrics,
    status,
    readiness,
    async stop(graceMs = DEFAULT_GRACE_MS) {
      stopping = true;
      // Deregister first so planners stop routing here; blocking waits end at once with an
      // error; in-flight requests get up to `graceMs` to answer.
      clearInterval(probeTimer);
      await running.stop(graceMs, () => kube?.kubeScaler.cancelWaits("the Global Planner is shutting down"));
      // Released only once nothing of ours runs any more, so the next leader never overlaps.
      await elector?.stop();
      await transitions;
      await kube?.close();
      api?.client.close();
      await status?.close();
    },
  };
}
