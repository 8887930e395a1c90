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
import { NotReady, WriteConflict } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import { type ScaleRequest, type ScaleResponse, scaleResponse, type TargetReplica } from "./contract.ts";
import type { Scaler } from "./handlers.ts";
import { scaledMessage } from "./messages.ts";
import { KeyedSerializer } from "./serial.ts";

export const DEFAULT_BLOCKING_TIMEOUT_SECONDS = 1800;
export const MAX_CONFLICT_RETRIES = 3;

export interface DgdRef {
  namespace: string;
  name: string;
}

/** What the core needs to know of a DGD it decides on. */
export interface ScaleView {
  ready: boolean;
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

/** The Kubernetes side of a scale; the core never sees HTTP. */
export interface ScalePort<V extends ScaleView, T extends PlannedTarget, A extends AppliedTargets> {
  /**
   * The DGD to decide on. `fresh: false` lets the port answer from a cache (a stale copy costs
   * a conflict and one fresh read, never a lost update).
   */
  read(ref: DgdRef, fresh: boolean, signal: AbortSignal): Promise<V>;
  /** Maps every target onto a component; throws `TargetResolutionError`. */
  resolve(view: V, targets: readonly TargetReplica[]): T[];
  /** Writes the targets guarded by `view`'s resourceVersion; throws `WriteConflict` when it moved. */
  write(ref: DgdRef, view: V, targets: T[], signal: AbortSignal): Promise<A>;
  /** `blocking: true`: resolves once the DGD has taken in what was written and is Ready. */
  waitApplied(ref: DgdRef, applied: A, timeoutMs: number, signal: AbortSignal): Promise<void>;
  /** Called with what a write did (to keep a cache current). */
  onApplied?(ref: DgdRef, applied: A): void;
}

export interface ScaleUseCaseOptions<V extends ScaleView, T extends PlannedTarget, A extends AppliedTargets> {
  port: ScalePort<V, T, A>;
  logger: Logger;
  blockingTimeoutMs?: number;
  /** Test seam: runs between the read and the writes of each attempt. */
  beforeWrite?: (ref: DgdRef, attempt: number) => Promise<void>;
}

export class ScaleUseCase<
  V extends ScaleView = ScaleView,
  T extends PlannedTarget = PlannedTarget,
  A extends AppliedTargets = AppliedTargets,
> implements Scaler {
  #options: ScaleUseCaseOptions<V, T, A>;
  #serial = new KeyedSerializer();
  #shutdown = new AbortController();

  constructor(options: ScaleUseCaseOptions<V, T, A>) {
    this.#options = options;
  }

  /** Ends every blocking wait at once (they answer `error`); writes in progress complete. */
  cancelWaits(reason: string): void {
    this.#shutdown.abort(reason);
  }

  async scale(request: ScaleRequest, signal: AbortSignal): Promise<ScaleResponse> {
    const ref = { namespace: request.k8s_namespace, name: request.graph_deployment_name };
    const applied = await this.apply(ref, request.target_replicas, signal);
    if (request.blocking) await this.waitApplied(ref, applied, signal);
    return scaleResponse("success", scaledMessage(ref.name), applied.replicas);
  }

  /** Applies targets to one DGD, in arrival order with other requests for the same DGD. */
  async apply(ref: DgdRef, targets: readonly TargetReplica[], signal: AbortSignal): Promise<A> {
    const applied = await this.#serial.run(
      `${ref.namespace}/${ref.name}`,
      () => this.#apply(ref, targets, signal),
    );
    this.#options.port.onApplied?.(ref, applied);
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

  async #apply(ref: DgdRef, targets: readonly TargetReplica[], signal: AbortSignal): Promise<A> {
    const { port } = this.#options;
    for (let attempt = 0;; attempt++) {
      const view = await port.read(ref, attempt > 0, signal);
      if (!view.ready) throw new NotReady(notReadyMessage(ref));
      const planned = port.resolve(view, targets);
      await this.#options.beforeWrite?.(ref, attempt);
      try {
        return await port.write(ref, view, planned, signal);
      } catch (error) {
        if (!(error instanceof WriteConflict) || attempt >= MAX_CONFLICT_RETRIES) throw error;
        this.#options.logger.info("write conflict; re-reading and deciding again", {
          dgd: ref.name,
          attempt,
        });
      }
    }
  }
}

/** Upstream's text for a DGD whose `Ready` condition is not `True`. */
export function notReadyMessage(ref: DgdRef): string {
  return `DynamoGraphDeployment is not ready (name: '${ref.name}' in namespace '${ref.namespace}')`;
}
