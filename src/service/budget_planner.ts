/**
 * Scale requests under a GPU budget (spec §10): observe the fleet from the port's cache,
 * arbitrate (pure), then apply the approved writes in order — scale-downs first — through the
 * port. Decisions and their writes are serialized (every pool shares the one total, so any two
 * budgeted requests overlap); blocking waits happen after, so they delay nobody.
 *
 * Failures while applying: the first write failing answers for the whole request (`error`, or
 * `rejected` when not Ready) and nothing else is attempted; the requester's own write failing
 * after partners were applied is also an `error` (the partners only moved toward their own
 * fresh requests); a partner failing later is logged and named in the success message — never
 * hidden.
 */
import { BudgetBreach, errorText, TargetResolutionError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import {
  arbitrate,
  type BudgetBounds,
  IntentCache,
  type ParticipantId,
  participantId,
  type ParticipantWrite,
  type Snapshot,
} from "./budget/mod.ts";
import type { WriteTarget } from "./budget/writes.ts";
import { type ScaleRequest, type ScaleResponse, scaleResponse, type TargetReplica } from "./contract.ts";
import type { Scaler } from "./handlers.ts";
import { scaledMessage } from "./messages.ts";

/** What the planner needs from Kubernetes; the core never sees HTTP. */
export interface BudgetPort<Applied = unknown> {
  /** All known pools (cache + participants that joined by request), failing closed on unknown GPU counts. */
  snapshot(
    requester: ParticipantId,
    targets: readonly TargetReplica[],
    signal: AbortSignal,
  ): Promise<Snapshot>;
  /** One write call for one participant; resolves to the replicas map read back. */
  apply(
    participant: ParticipantId,
    targets: readonly TargetReplica[],
    signal: AbortSignal,
  ): Promise<{ replicas: Record<string, number>; applied: Applied }>;
  waitApplied(participant: ParticipantId, applied: Applied, signal: AbortSignal): Promise<void>;
}

export interface BudgetPlannerOptions {
  port: BudgetPort;
  bounds: BudgetBounds;
  intentTtlSeconds: number;
  logger: Logger;
  /** Seconds (the unit of the intent TTL). */
  clock?: () => number;
}

export class BudgetPlanner implements Scaler {
  #options: BudgetPlannerOptions;
  #intents = new IntentCache();
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: BudgetPlannerOptions) {
    this.#options = options;
  }

  get intents(): IntentCache {
    return this.#intents;
  }

  async scale(request: ScaleRequest, signal: AbortSignal): Promise<ScaleResponse> {
    if (request.target_replicas.length === 0) {
      throw new TargetResolutionError("target_replicas cannot be empty");
    }
    const participant = participantId(request.k8s_namespace, request.graph_deployment_name);
    const outcome = await this.#serialized(() => this.#decideAndApply(participant, request, signal));
    if (request.blocking) {
      await Promise.all(
        outcome.applied.map(({ participant, applied }) =>
          this.#options.port.waitApplied(participant, applied, signal)
        ),
      );
    }
    const message = scaledMessage(request.graph_deployment_name) +
      (outcome.partnerFailures.length
        ? `; partner scaling failed (it will be retried by the partner's next request): ${
          outcome.partnerFailures.join("; ")
        }`
        : "");
    return scaleResponse("success", message, outcome.replicas);
  }

  async #decideAndApply(participant: ParticipantId, request: ScaleRequest, signal: AbortSignal) {
    const { port, logger } = this.#options;
    const snapshot = await port.snapshot(participant, request.target_replicas, signal);
    const targets: WriteTarget[] = request.target_replicas.map((t) => ({
      role: t.sub_component_type,
      desired: t.desired_replicas,
      componentName: t.component_name,
    }));
    const now = (this.#options.clock ?? (() => Date.now() / 1000))();
    const decision = arbitrate({
      snapshot,
      request: { participant, targets },
      intents: this.#intents,
      bounds: this.#options.bounds,
      ttl: this.#options.intentTtlSeconds,
      now,
    });
    logger.info("budget decision", {
      participant,
      decision: decision.kind,
      total_gpus_before: snapshot.totalGpus,
      total_gpus_after: decision.totalGpus,
      writes: decision.kind === "approve" ? decision.writes.map(_describe) : undefined,
    });
    if (decision.kind === "reject") throw new BudgetBreach(decision.message);

    const applied: { participant: ParticipantId; applied: unknown }[] = [];
    const partnerFailures: string[] = [];
    let replicas: Record<string, number> = {};
    for (const [index, write] of decision.writes.entries()) {
      const own = write.participant === participant;
      const writeTargets: TargetReplica[] = own ? request.target_replicas : write.targets.map((t) => ({
        sub_component_type: t.role,
        desired_replicas: t.desired,
        component_name: null,
      }));
      // The requester's own targets stay as requested; partners get only their roles' counts.
      try {
        const result = await port.apply(
          write.participant,
          own ? [...writeTargets, ..._extra(write, request)] : writeTargets,
          signal,
        );
        applied.push({ participant: write.participant, applied: result.applied });
        if (own) replicas = result.replicas;
      } catch (error) {
        if (index === 0 || own) throw error;
        const text = `${write.participant}: ${errorText(error)}`;
        partnerFailures.push(text);
        logger.warn("partner write failed; will self-correct on its next request", {
          participant: write.participant,
          error: errorText(error),
        });
      }
    }
    return { applied, replicas, partnerFailures };
  }

  #serialized<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task, task);
    this.#tail = result.catch(() => {});
    return result;
  }
}

/** Partner targets for the requester's own DGD (same-DGD pairing) beyond the request's roles. */
function _extra(write: ParticipantWrite, request: ScaleRequest): TargetReplica[] {
  const requested = new Set(request.target_replicas.map((t) => t.sub_component_type));
  return write.targets.filter((t) => !requested.has(t.role)).map((t) => ({
    sub_component_type: t.role,
    desired_replicas: t.desired,
    component_name: null,
  }));
}

function _describe(write: ParticipantWrite) {
  return {
    participant: write.participant,
    gpu_delta: write.gpuDelta,
    targets: Object.fromEntries(write.targets.map((t) => [t.role, t.desired])),
  };
}
