/**
 * Applying a budget decision's writes through the port, in the order the arbitration gave
 * (scale-downs first). The first write failing answers for the whole request and nothing else is
 * attempted; the requester's own write failing is also the request's failure; a partner failing
 * later is logged and reported, and the rest still go out (each partner only moves toward its
 * own fresh request, so none depends on another).
 */
import { errorText } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import type { IssuedWrites, ParticipantId, ParticipantWrite } from "./budget/mod.ts";
import type { Moved } from "./budget_records.ts";
import type { TargetReplica } from "./contract.ts";
import { ANNOTATION } from "./dgd_policy.ts";
import type { WriteOptions } from "./scale_use_case.ts";
import { formatLastRequest, type LastRequest } from "./stale_guard.ts";

/** The part of the budget planner's port that writes (src/service/budget_planner.ts). */
export interface WritePort {
  state(participant: ParticipantId): { replicas: Record<string, number> } | undefined;
  apply(
    participant: ParticipantId,
    targets: readonly TargetReplica[],
    signal: AbortSignal,
    options?: WriteOptions,
  ): Promise<{ replicas: Record<string, number>; applied: unknown }>;
}

export interface WritesApplied {
  /** What each write returned, for the blocking wait. */
  applied: { participant: ParticipantId; applied: unknown }[];
  /** The requester's replicas as its write read them back (`{}` when it had no write). */
  replicas: Record<string, number>;
  /** `participant: error` of each partner whose write failed after the first. */
  partnerFailures: string[];
  moved: Moved[];
}

export interface DecisionWrites {
  participant: ParticipantId;
  /** The requester's own targets as its policy left them. */
  own: readonly TargetReplica[];
  me: LastRequest | undefined;
  writes: readonly ParticipantWrite[];
  signal: AbortSignal;
  /** Told as each write is answered (so later decisions see it), when the writes count for them. */
  flight?: IssuedWrites;
}

export async function applyWrites(
  context: { port: WritePort; logger: Logger; dryRun?: boolean },
  decision: DecisionWrites,
): Promise<WritesApplied> {
  const { port, logger, dryRun } = context;
  const { participant, own, me, writes, signal, flight } = decision;
  const applied: WritesApplied["applied"] = [];
  const partnerFailures: string[] = [];
  const moved: Moved[] = [];
  let replicas: Record<string, number> = {};
  for (const [index, write] of writes.entries()) {
    const mine = write.participant === participant;
    // Partners get only their roles' counts.
    const targets: TargetReplica[] = mine ? [...own, ..._extra(write, own)] : write.targets.map((t) => ({
      sub_component_type: t.role,
      desired_replicas: t.desired,
      component_name: null,
    }));
    const options: WriteOptions = {
      dryRun,
      annotations: mine && me ? { [ANNOTATION.lastRequest]: formatLastRequest(me) } : undefined,
    };
    const before = mine ? undefined : port.state(write.participant)?.replicas;
    try {
      const result = await port.apply(write.participant, targets, signal, options);
      applied.push({ participant: write.participant, applied: result.applied });
      if (mine) replicas = result.replicas;
      else moved.push({ participant: write.participant, before: before ?? {}, after: result.replicas });
    } catch (error) {
      if (index === 0 || mine) throw error;
      partnerFailures.push(`${write.participant}: ${errorText(error)}`);
      logger.warn("partner write failed; will self-correct on its next request", {
        participant: write.participant,
        error: errorText(error),
      });
    } finally {
      flight?.answered(write.participant);
    }
  }
  return { applied, replicas, partnerFailures, moved };
}

/** Partner targets for the requester's own DGD (same-DGD pairing) beyond the request's roles. */
function _extra(write: ParticipantWrite, own: readonly TargetReplica[]): TargetReplica[] {
  const requested = new Set(own.map((t) => t.sub_component_type));
  return write.targets.filter((t) => !requested.has(t.role)).map((t) => ({
    sub_component_type: t.role,
    desired_replicas: t.desired,
    component_name: null,
  }));
}
