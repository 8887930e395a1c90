/**
 * The write plan of an approved decision: one write per participant, ordered so
 * GPUs are freed before they are claimed.
 */
import type { AcceptedPartner } from "./partners.ts";
import type { ParticipantId, Role } from "./pool.ts";

/** One replica change; `componentName` is passed through from the request (partners: null). */
export interface WriteTarget {
  readonly role: Role;
  readonly desired: number;
  readonly componentName?: string | null;
}

export interface ParticipantWrite {
  readonly participant: ParticipantId;
  readonly targets: readonly WriteTarget[];
  /** Net GPU change this write makes (pools with 0 GPUs per replica count 0). */
  readonly gpuDelta: number;
}

/**
 * Groups the request's own targets (first, exactly as given) and the partners (appended as
 * `{role, K}` without a component name) by participant, then orders the writes by net GPU
 * delta ascending. The sort is stable, so on equal deltas the request's own participant comes
 * first and partners keep their acceptance order.
 */
export function planWrites(
  participant: ParticipantId,
  ownTargets: readonly WriteTarget[],
  ownGpuDelta: number,
  partners: readonly AcceptedPartner[],
): ParticipantWrite[] {
  const byParticipant = new Map<ParticipantId, { targets: WriteTarget[]; gpuDelta: number }>();
  byParticipant.set(participant, { targets: [...ownTargets], gpuDelta: ownGpuDelta });
  for (const partner of partners) {
    const id = partner.pool.participant;
    let write = byParticipant.get(id);
    if (write === undefined) {
      write = { targets: [], gpuDelta: 0 };
      byParticipant.set(id, write);
    }
    write.targets.push({ role: partner.pool.role, desired: partner.replicas, componentName: null });
    write.gpuDelta += partner.gpuDelta;
  }
  return [...byParticipant].map(([id, write]) => ({ participant: id, ...write }))
    .sort((a, b) => a.gpuDelta - b.gpuDelta);
}
