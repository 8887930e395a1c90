/**
 * The Global Planner's own metrics (prefix `dynamo_global_planner_`), behind a typed facade so
 * callers cannot invent label values: every label set is bounded, which keeps the series count
 * of a long-running planner flat.
 */
import type { ScaleStatus } from "../errors.ts";
import { type MetricsSource, Registry } from "./metrics.ts";

export const METRIC_PREFIX = "dynamo_global_planner_";

/** Why a scale request ended as it did; the `reason` label of `scale_requests_total`. */
export const SCALE_REASONS = [
  "success",
  "no_operation",
  "not_authorized",
  "rejected_budget",
  "rejected_not_ready",
  "invalid_request",
  "kubernetes_error",
  "unavailable",
  "blocking_timeout",
  "gpu_count_unknown",
  "internal_error",
  "caller_not_bound",
  "namespace_not_managed",
  "rejected_paused",
  "rejected_stale",
  "invalid_policy",
  "duplicate",
  "dry_run",
] as const;
export type ScaleReason = typeof SCALE_REASONS[number];

export function isScaleReason(value: string): value is ScaleReason {
  return (SCALE_REASONS as readonly string[]).includes(value);
}

/**
 * The response status each reason normally comes with (mirrors `outcomeOf` in errors.ts). These
 * pairs are created at 0 on start, so dashboards and `rate()` see them before the first event.
 */
export const USUAL_RESULT: Readonly<Record<ScaleReason, ScaleStatus>> = {
  success: "success",
  no_operation: "success",
  not_authorized: "error",
  rejected_budget: "rejected",
  rejected_not_ready: "rejected",
  invalid_request: "error",
  kubernetes_error: "error",
  unavailable: "error",
  blocking_timeout: "error",
  gpu_count_unknown: "error",
  internal_error: "error",
  caller_not_bound: "error",
  namespace_not_managed: "error",
  rejected_paused: "rejected",
  rejected_stale: "rejected",
  invalid_policy: "error",
  duplicate: "success",
  dry_run: "success",
};

/**
 * Seconds. A blocking scale waits for the DGD to become Ready again, which takes minutes, so the
 * buckets reach 10 minutes; the short end resolves authorization/budget denials.
 */
export const SCALE_DURATION_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
  600,
] as const;

/**
 * Seconds. A decision (the request's receipt to its write being issued, or its answer being
 * known without a write) is sub-millisecond to a few; the steps around 1–2 ms are fine enough to
 * tell a 2 ms p99 from a miss exactly. The long tail reaches seconds: waiting behind other
 * decisions' writes counts from the receipt.
 */
export const DECISION_DURATION_BUCKETS = [
  0.0001,
  0.00025,
  0.0005,
  0.00075,
  0.001,
  0.00125,
  0.0015,
  0.00175,
  0.002,
  0.0025,
  0.003,
  0.004,
  0.005,
  0.0075,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  1,
  2.5,
  5,
  10,
  30,
] as const;

export interface GpuBudget {
  /** Absent = no upper limit (rendered as `+Inf`). */
  max?: number;
  /** Absent = no floor (rendered as 0). */
  min?: number;
}

export interface GlobalPlannerMetrics extends MetricsSource {
  readonly registry: Registry;
  /** One finished scale request: its response status, why, and how long it took. */
  recordScale(result: ScaleStatus, reason: ScaleReason, seconds: number): void;
  /**
   * One decision: from the request's receipt to its write being issued (or its answer known),
   * and the part of it after its turn came (the decisions and writes ahead of it done).
   */
  recordDecision(seconds: number, inTurnSeconds: number): void;
  /**
   * Replaces the whole per-DGD GPU picture (DGDs absent from `byDgd` disappear) and sets the
   * total. Key DGDs uniquely, e.g. `<k8s_namespace>/<name>`.
   */
  setManagedGpus(byDgd: Readonly<Record<string, number>>): void;
  /** One budget arbitration: `approve`, `reject`, or `settle` (left open by writes in flight). */
  countBudgetDecision(decision: string): void;
  /** DGDs with a budgeted write issued and not yet answered. */
  setBudgetWritesInFlight(writes: number): void;
  /** Sets the DGDs in `byDgd` (the others as they were) and moves the total with them. */
  updateManagedGpus(byDgd: Readonly<Record<string, number>>): void;
  setGpuBudget(budget: GpuBudget): void;
  setDiscoveryRegistered(registered: boolean): void;
  setDgdWatchUp(up: boolean): void;
  /** Counts one request in flight; call the returned function once it ends (extra calls are no-ops). */
  trackInflight(): () => void;
  /** Kubernetes API calls made so far (a running total from the client). */
  setKubeApiCalls(total: number): void;
  /** With leader election: 1 while this replica leads, else 0. */
  setLeader(leading: boolean): void;
  /** With leader election: one more change of role (became leader, or stopped leading). */
  countLeaderTransition(): void;
}

export interface GlobalPlannerMetricsOptions {
  /** The service version (deno.json `version`). */
  version: string;
  /** Defaults to the running Deno's version. */
  denoVersion?: string;
  /** Exposes `leader` and `leader_transitions_total` (only with `--leader-elect`). */
  leaderElection?: boolean;
}

export function createGlobalPlannerMetrics(options: GlobalPlannerMetricsOptions): GlobalPlannerMetrics {
  const registry = new Registry();
  const name = (suffix: string) => METRIC_PREFIX + suffix;

  const scaleRequests = registry.counter({
    name: name("scale_requests_total"),
    help: "Scale requests handled, by response status (result) and why (reason).",
    labelNames: ["result", "reason"],
  });
  const scaleDuration = registry.histogram({
    name: name("scale_request_duration_seconds"),
    help: "Time from receiving a scale request to answering it, by response status.",
    labelNames: ["result"],
    buckets: SCALE_DURATION_BUCKETS,
  });
  const decisionDuration = registry.histogram({
    name: name("scale_decision_duration_seconds"),
    help: "Time to decide a scale request (the write issued, or the answer known without a write; " +
      "the write itself not included): span=receipt from receiving it (waiting for the decisions " +
      "and writes ahead of it included), span=turn from the start of its own turn.",
    labelNames: ["span"],
    buckets: DECISION_DURATION_BUCKETS,
  });
  const managedGpus = registry.gauge({
    name: name("managed_gpus"),
    help: "GPUs used by each managed DynamoGraphDeployment (replicas x GPUs per replica).",
    labelNames: ["dgd"],
  });
  let shownGpus = new Map<string, number>();
  const budgetDecisions = registry.counter({
    name: name("budget_decisions_total"),
    help: "GPU budget arbitrations by decision: approve, reject, or settle (left open by writes in " +
      "flight; decided again as they are answered).",
    labelNames: ["decision"],
  });
  const budgetWritesInFlight = registry.gauge({
    name: name("budget_writes_in_flight"),
    help: "DynamoGraphDeployments with a budgeted write issued and not yet answered.",
  });
  let shownTotal = 0;
  const managedGpusTotal = registry.gauge({
    name: name("managed_gpus_total"),
    help: "GPUs used by all managed DynamoGraphDeployments together.",
  });
  const budgetMax = registry.gauge({
    name: name("gpu_budget_max"),
    help: "Upper limit on managed GPUs (+Inf when unlimited).",
  });
  const budgetMin = registry.gauge({
    name: name("gpu_budget_min"),
    help: "Lower limit on managed GPUs (0 when there is none).",
  });
  const discoveryRegistered = registry.gauge({
    name: name("discovery_registered"),
    help: "1 while the Global Planner's endpoints are registered in Dynamo discovery, else 0.",
  });
  const dgdWatchUp = registry.gauge({
    name: name("dgd_watch_up"),
    help: "1 while the DynamoGraphDeployment watch on Kubernetes is connected, else 0.",
  });
  const buildInfo = registry.gauge({
    name: name("build_info"),
    help: "Always 1; labels carry the Global Planner version and the Deno version running it.",
    labelNames: ["version", "deno"],
  });
  const kubeApiCalls = registry.counter({
    name: name("kube_api_calls_total"),
    help: "Kubernetes API calls made (reads, writes, watches, discovery).",
  });
  let kubeApiCallsSeen = 0;
  const inflight = registry.gauge({
    name: name("inflight_requests"),
    help: "Scale requests currently being handled.",
  });

  const leader = options.leaderElection
    ? registry.gauge({
      name: name("leader"),
      help: "1 while this replica holds the leader Lease (serves and writes), 0 while standby.",
    })
    : undefined;
  const leaderTransitions = options.leaderElection
    ? registry.counter({
      name: name("leader_transitions_total"),
      help: "Changes of this replica's role: became leader, or stopped leading.",
    })
    : undefined;
  leader?.set(0);
  leaderTransitions?.add(0);

  for (const reason of SCALE_REASONS) scaleRequests.touch({ result: USUAL_RESULT[reason], reason });
  budgetMax.set(Infinity);
  budgetWritesInFlight.set(0);
  buildInfo.set(1, { version: options.version, deno: options.denoVersion ?? Deno.version.deno });

  return {
    registry,
    render: () => registry.render(),
    recordScale(result, reason, seconds) {
      scaleRequests.inc({ result, reason });
      scaleDuration.observe(seconds, { result });
    },
    recordDecision(seconds, inTurnSeconds) {
      decisionDuration.observe(seconds, { span: "receipt" });
      decisionDuration.observe(inTurnSeconds, { span: "turn" });
    },
    setManagedGpus(byDgd) {
      // Called on every budget decision that saw a change, with every DGD (1,000s): only the
      // series whose value moved are touched, as setting one costs a label-key serialization.
      const next = new Map<string, number>();
      let total = 0;
      for (const [dgd, gpus] of Object.entries(byDgd)) {
        next.set(dgd, gpus);
        total += gpus;
        if (shownGpus.get(dgd) !== gpus) managedGpus.set(gpus, { dgd });
      }
      for (const dgd of shownGpus.keys()) if (!next.has(dgd)) managedGpus.remove({ dgd });
      shownGpus = next;
      shownTotal = total;
      managedGpusTotal.set(total);
    },
    countBudgetDecision: (decision) => budgetDecisions.inc({ decision }),
    setBudgetWritesInFlight: (writes) => budgetWritesInFlight.set(writes),
    updateManagedGpus(byDgd) {
      for (const [dgd, gpus] of Object.entries(byDgd)) {
        const was = shownGpus.get(dgd);
        if (was === gpus) continue;
        shownTotal += gpus - (was ?? 0);
        shownGpus.set(dgd, gpus);
        managedGpus.set(gpus, { dgd });
      }
      managedGpusTotal.set(shownTotal);
    },
    setGpuBudget(budget) {
      budgetMax.set(budget.max ?? Infinity);
      budgetMin.set(budget.min ?? 0);
    },
    setDiscoveryRegistered: (registered) => discoveryRegistered.set(registered ? 1 : 0),
    setDgdWatchUp: (up) => dgdWatchUp.set(up ? 1 : 0),
    setKubeApiCalls(total) {
      if (total > kubeApiCallsSeen) kubeApiCalls.add(total - kubeApiCallsSeen);
      kubeApiCallsSeen = Math.max(kubeApiCallsSeen, total);
    },
    setLeader: (leading) => leader?.set(leading ? 1 : 0),
    countLeaderTransition: () => leaderTransitions?.add(1),
    trackInflight() {
      inflight.add(1);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        inflight.add(-1);
      };
    },
  };
}
