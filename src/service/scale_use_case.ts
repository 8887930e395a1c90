/**
 * Scaling one DGD without a GPU budget, as a pure use case over a port: read the DGD (the port
 * may answer from a cache), refuse when it is not Ready, resolve every target before any write,
 * write the targets guarded by the resourceVersion they were decided on; a conflict means the
 * decision's basis moved, so read again and decide again (bounded). Requests for one DGD are
 * applied in arrival order; a blocking wait happens after the DGD's turn, so it delays nobody.
 *
 * The port owns how a target is written (a scaling adapter's `/scale` or one patch of the DGD)
 * and skips a target already at its count: for adapter-owned targets that count is only known
 * once the adapter is read, inside the write.
 */
import { errorText, NotReady, Paused, StaleRequest, WriteConflict } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import {
  type ScaleRequest,
  type ScaleResponse,
  scaleResponse,
  tagReason,
  type TargetReplica,
} from "./contract.ts";
import {
  adjustmentText,
  ANNOTATION,
  applyPolicy,
  pausedMessage,
  type PolicyOutcome,
  readPolicy,
  Recommendations,
} from "./dgd_policy.ts";
import type { Scaler } from "./handlers.ts";
import { DecisionTimer, type DecisionTiming } from "./decision_timer.ts";
import { scaledMessage } from "./messages.ts";
import { KeyedSerializer } from "./serial.ts";
import {
  formatLastRequest,
  judgeRequest,
  type LastRequest,
  parseLastRequest,
  RecentAnswers,
  requestKey,
  staleMessage,
} from "./stale_guard.ts";

export const DEFAULT_BLOCKING_TIMEOUT_SECONDS = 1800;
export const MAX_CONFLICT_RETRIES = 3;

export interface DgdRef {
  namespace: string;
  name: string;
}

/** What the core needs to know of a DGD it decides on. */
export interface ScaleView {
  ready: boolean;
  annotations: Readonly<Record<string, string>>;
}

/** One target mapped onto one component of the DGD. */
export interface PlannedTarget {
  role: string;
  desired: number;
  readonly component: { name: string; replicas: number };
}

/** What one write did. */
export interface AppliedTargets {
  /** Component name → replicas written (skipped targets are absent). */
  written: Map<string, number>;
  /** `{prefill: n, decode: m}` as the answer reports them. */
  replicas: Record<string, number>;
}

export interface WriteOptions {
  /** Send every write with Kubernetes server-side dry run (nothing is persisted). */
  dryRun?: boolean;
  /** Annotations to set on the DGD in the same write (our stale-request state). */
  annotations?: Record<string, string>;
}

/** The Kubernetes side of a scale; the core never sees HTTP. */
export interface ScalePort<V extends ScaleView, T extends PlannedTarget, A extends AppliedTargets> {
  /**
   * The DGD to decide on. `fresh: false` lets the port answer from a cache (a stale copy costs
   * a conflict and one fresh read, never a lost update).
   */
  read(ref: DgdRef, fresh: boolean, signal: AbortSignal): Promise<V>;
  /** Maps every target onto a component; throws `TargetResolutionError`. */
  resolve(view: V, targets: readonly TargetReplica[]): T[];
  /** `{prefill: n, decode: m}` as the DGD shows them. */
  replicas(view: V): Record<string, number>;
  /** Writes the targets guarded by `view`'s resourceVersion; throws `WriteConflict` when it moved. */
  write(ref: DgdRef, view: V, targets: T[], signal: AbortSignal, options?: WriteOptions): Promise<A>;
  /** `blocking: true`: resolves once the DGD has taken in what was written and is Ready. */
  waitApplied(ref: DgdRef, applied: A, timeoutMs: number, signal: AbortSignal): Promise<void>;
  /** Called with what a (persisted) write did, to keep a cache current. */
  onApplied?(ref: DgdRef, applied: A): void;
}

/** Reasons of the Kubernetes Events recorded for decisions. */
export type DecisionReason = "Scaled" | "ScaleRejected" | "ScaleFailed" | "Clamped" | "Stale" | "Paused";

export interface DecisionEvent<V> {
  ref: DgdRef;
  /** The DGD as read for the decision (what the event is about). */
  view: V;
  reason: DecisionReason;
  warning: boolean;
  note: string;
}

/** Where decisions are recorded; never fails a scale (the adapter logs its own failures). */
export interface DecisionEvents<V> {
  emit(event: DecisionEvent<V>): void;
}

export interface ScaleUseCaseOptions<V extends ScaleView, T extends PlannedTarget, A extends AppliedTargets> {
  port: ScalePort<V, T, A>;
  logger: Logger;
  blockingTimeoutMs?: number;
  /** `--reject-stale`: refuse requests older than the DGD's last applied one. */
  rejectStale?: boolean;
  /** `--dry-run`: decide, send the writes with server-side dry run, persist nothing. */
  dryRun?: boolean;
  events?: DecisionEvents<V>;
  /** Seconds since the epoch (stabilization windows, retry window). */
  clock?: () => number;
  /** Test seam: runs between the read and the writes of each attempt. */
  beforeWrite?: (ref: DgdRef, attempt: number) => Promise<void>;
  /** How long each `scale` took to decide (receipt → write issued, or answer known). */
  decisions?: DecisionTiming;
}

/** One request's decision on one DGD. */
interface Decision<A> {
  applied?: A;
  before: Record<string, number>;
  replicas: Record<string, number>;
  outcomes: PolicyOutcome[];
  duplicate?: LastRequest;
}

export class ScaleUseCase<
  V extends ScaleView = ScaleView,
  T extends PlannedTarget = PlannedTarget,
  A extends AppliedTargets = AppliedTargets,
> implements Scaler {
  #options: ScaleUseCaseOptions<V, T, A>;
  #serial = new KeyedSerializer();
  #shutdown = new AbortController();
  #history = new Recommendations();
  #recent = new RecentAnswers<ScaleResponse>();
  #clock: () => number;

  constructor(options: ScaleUseCaseOptions<V, T, A>) {
    this.#options = options;
    this.#clock = options.clock ?? (() => Date.now() / 1000);
  }

  /** Ends every blocking wait at once (they answer `error`); writes in progress complete. */
  cancelWaits(reason: string): void {
    this.#shutdown.abort(reason);
  }

  async scale(request: ScaleRequest, signal: AbortSignal): Promise<ScaleResponse> {
    const ref = { namespace: request.k8s_namespace, name: request.graph_deployment_name };
    const guarded = this.#options.rejectStale === true && request.timestamp !== null;
    const me: LastRequest | undefined = guarded
      ? {
        timestamp: request.timestamp!,
        caller: request.caller_namespace,
        targets: Object.fromEntries(
          request.target_replicas.map((t) => [t.sub_component_type, t.desired_replicas]),
        ),
      }
      : undefined;
    const key = me ? requestKey(`${ref.namespace}/${ref.name}`, me) : undefined;
    const timer = new DecisionTimer(this.#options.decisions ?? {});
    let decision;
    try {
      decision = await this.#serial.run(`${ref.namespace}/${ref.name}`, async () => {
        timer.turn();
        // Inside the DGD's turn, so a retry racing its original waits for the first answer.
        const first = key ? this.#recent.get(key, this.#clock()) : undefined;
        if (first) return first;
        return await this.#decide(ref, request, me, signal, timer);
      });
    } finally {
      // Every answer decided without a write (refusals, duplicates, failures) ends here.
      timer.decided();
    }
    // An identical retry: the first answer, without a second write.
    if ("status" in decision) return tagReason({ ...decision }, "duplicate");
    const { applied } = decision;
    if (applied && !this.#options.dryRun) this.#options.port.onApplied?.(ref, applied);
    if (applied && request.blocking && !this.#options.dryRun) await this.waitApplied(ref, applied, signal);
    const response = scaleResponse("success", this.#message(ref, decision), decision.replicas);
    if (decision.duplicate) tagReason(response, "duplicate");
    if (key && !this.#options.dryRun) this.#recent.put(key, response, this.#clock());
    return response;
  }

  /**
   * Applies targets to one DGD as they are (the budget's writes, decided by the budget planner
   * with the DGD's policy already applied), in arrival order per DGD.
   */
  async apply(
    ref: DgdRef,
    targets: readonly TargetReplica[],
    signal: AbortSignal,
    options: WriteOptions = {},
  ): Promise<A> {
    const applied = await this.#serial.run(
      `${ref.namespace}/${ref.name}`,
      () => this.#apply(ref, targets, signal, options),
    );
    // A dry run persisted nothing: the caches keep what the DGD really shows.
    if (!options.dryRun) this.#options.port.onApplied?.(ref, applied);
    return applied;
  }

  /** Waits for what `apply` wrote (nothing written: nothing to wait for). */
  async waitApplied(ref: DgdRef, applied: A, signal: AbortSignal): Promise<void> {
    if (applied.written.size === 0) return;
    await this.#options.port.waitApplied(
      ref,
      applied,
      this.#options.blockingTimeoutMs ?? DEFAULT_BLOCKING_TIMEOUT_SECONDS * 1000,
      AbortSignal.any([signal, this.#shutdown.signal]),
    );
  }

  async #apply(
    ref: DgdRef,
    targets: readonly TargetReplica[],
    signal: AbortSignal,
    options: WriteOptions,
  ): Promise<A> {
    return await this.#attempts(ref, signal, async (view, attempt) => {
      const planned = this.#options.port.resolve(view, targets);
      await this.#options.beforeWrite?.(ref, attempt);
      return await this.#options.port.write(ref, view, planned, signal, options);
    });
  }

  /**
   * Read → Ready → `attempt` (decide and write); a `WriteConflict` means the decision's basis
   * moved: read fresh and decide again, at most `MAX_CONFLICT_RETRIES` times.
   */
  async #attempts<R>(
    ref: DgdRef,
    signal: AbortSignal,
    attempt: (view: V, attempt: number) => Promise<R>,
    onView?: (view: V) => void,
  ): Promise<R> {
    for (let n = 0;; n++) {
      const view = await this.#options.port.read(ref, n > 0, signal);
      onView?.(view);
      if (!view.ready) throw new NotReady(notReadyMessage(ref));
      try {
        return await attempt(view, n);
      } catch (error) {
        if (!(error instanceof WriteConflict) || n >= MAX_CONFLICT_RETRIES) throw error;
        this.#options.logger.info("write conflict; re-reading and deciding again", {
          dgd: ref.name,
          attempt: n,
        });
      }
    }
  }

  /** Pause, stale guard and policy on each fresh view, then the guarded write. */
  async #decide(
    ref: DgdRef,
    request: ScaleRequest,
    me: LastRequest | undefined,
    signal: AbortSignal,
    timer: DecisionTimer,
  ): Promise<Decision<A>> {
    const { port } = this.#options;
    const label = `${ref.namespace}/${ref.name}`;
    let last: V | undefined;
    try {
      return await this.#attempts(ref, signal, async (view, attempt) => {
        const planned = port.resolve(view, request.target_replicas);
        const policy = readPolicy(view.annotations, label);
        const before = port.replicas(view);
        if (policy.paused) {
          throw new Paused(pausedMessage(label), before);
        }
        if (me) {
          const verdict = judgeRequest(parseLastRequest(view.annotations[ANNOTATION.lastRequest]), me);
          if (verdict.kind === "stale") throw new StaleRequest(staleMessage(label, me, verdict.last), before);
          if (verdict.kind === "duplicate") {
            return { before, replicas: before, outcomes: [], duplicate: verdict.last };
          }
        }
        const outcomes = applyPolicy(
          policy,
          planned.map((t) => ({ role: t.role, current: t.component.replicas, requested: t.desired })),
          { dgd: label, now: this.#clock(), history: this.#history },
        );
        const adjusted = planned.map((t, i) => ({ ...t, desired: outcomes[i].desired }));
        await this.#options.beforeWrite?.(ref, attempt);
        timer.decided();
        const applied = await port.write(ref, view, adjusted, signal, {
          dryRun: this.#options.dryRun,
          annotations: me ? { [ANNOTATION.lastRequest]: formatLastRequest(me) } : undefined,
        });
        const decision = { applied, before, replicas: applied.replicas, outcomes };
        this.#record(ref, view, request, decision);
        return decision;
      }, (view) => (last = view));
    } catch (error) {
      if (last) this.#recordRefusal(ref, last, request, error);
      throw error;
    }
  }

  #message(ref: DgdRef, decision: Decision<A>): string {
    if (decision.duplicate) {
      return `${scaledMessage(ref.name)} (a retry of the request applied at timestamp ` +
        `${decision.duplicate.timestamp}; nothing written again)`;
    }
    const adjusted = adjustmentText(decision.outcomes);
    if (this.#options.dryRun) {
      return `Would scale ${ref.name}: ${_changes(decision)}${
        adjusted ? `; adjusted by policy: ${adjusted}` : ""
      }` +
        " (nothing persisted)";
    }
    return scaledMessage(ref.name) + (adjusted ? `; adjusted by policy: ${adjusted}` : "");
  }

  #record(ref: DgdRef, view: V, request: ScaleRequest, decision: Decision<A>): void {
    const events = this.#options.events;
    const adjusted = adjustmentText(decision.outcomes);
    // A decision that changed nothing is not recorded, unless the policy is why.
    const changed = (decision.applied?.written.size ?? 0) > 0;
    if (!events || this.#options.dryRun || (!changed && !adjusted)) return;
    events.emit({
      ref,
      view,
      reason: adjusted ? "Clamped" : "Scaled",
      warning: false,
      note: `caller ${request.caller_namespace}: ${_changes(decision)}${
        adjusted ? `; adjusted by policy: ${adjusted}` : ""
      }; budget: not configured`,
    });
  }

  #recordRefusal(ref: DgdRef, view: V, request: ScaleRequest, error: unknown): void {
    const events = this.#options.events;
    if (!events || this.#options.dryRun) return;
    const reason: DecisionReason = error instanceof Paused
      ? "Paused"
      : error instanceof StaleRequest
      ? "Stale"
      : error instanceof NotReady
      ? "ScaleRejected"
      : "ScaleFailed";
    events.emit({
      ref,
      view,
      reason,
      warning: reason !== "Paused",
      note: `caller ${request.caller_namespace}: ${
        request.target_replicas.map((t) => `${t.sub_component_type} → ${t.desired_replicas}`).join(", ")
      } refused: ${errorText(error)}; budget: not configured`,
    });
  }
}

/** `prefill 1 → 3, decode 2 → 2`: what the DGD showed and what it has (or would have) now. */
function _changes(decision: Decision<unknown>): string {
  return Object.entries(decision.replicas).map(([role, n]) =>
    `${role} ${decision.before[role] ?? "?"} → ${n}`
  )
    .join(", ");
}

/** Upstream's text for a DGD whose `Ready` condition is not `True`. */
export function notReadyMessage(ref: DgdRef): string {
  return `DynamoGraphDeployment is not ready (name: '${ref.name}' in namespace '${ref.namespace}')`;
}
