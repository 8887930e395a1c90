/**
 * GPU accounting for budget arbitration: pools, their keys and an immutable snapshot
 * of every known pool with the fleet total computed once.
 *
 * A snapshot holds only pools whose GPU count is KNOWN. Resolving `gpu_per_replica` (and
 * failing closed when it cannot be determined) is the caller's job and happens before
 * arbitration; this module never guesses a count.
 */
import type { SubComponentType } from "../contract.ts";

export type Role = SubComponentType;

/** `"{k8s_namespace}/{dgd}"`. */
export type ParticipantId = string;

/** `"{participant_id}/{role}"`, i.e. `"{k8s_namespace}/{dgd}/{role}"`. */
export type PoolKey = string;

/** One role of one participant DGD. */
export interface Pool {
  readonly participant: ParticipantId;
  readonly role: Role;
  /** Current replica count (from the DGD spec). */
  readonly replicas: number;
  /** GPUs per replica; 0 = the pool holds no GPUs and is ignored by totals and deltas. */
  readonly gpuPerReplica: number;
}

/** Every known pool at one instant, plus their total GPUs (computed once, in `makeSnapshot`). */
export interface Snapshot {
  /** Pools by key, in the order they were given (the order partner ties are broken in). */
  readonly pools: ReadonlyMap<PoolKey, Pool>;
  readonly totalGpus: number;
}

export function participantId(k8sNamespace: string, dgdName: string): ParticipantId {
  return `${k8sNamespace}/${dgdName}`;
}

export function poolKey(participant: ParticipantId, role: Role): PoolKey {
  return `${participant}/${role}`;
}

/** GPUs a pool holds at `replicas` (defaults to its current count). */
export function poolGpus(pool: Pool, replicas: number = pool.replicas): number {
  return pool.gpuPerReplica > 0 ? replicas * pool.gpuPerReplica : 0;
}

/** Σ replicas × gpu_per_replica over the pools; pools with 0 GPUs per replica count 0. */
export function totalGpus(pools: Iterable<Pool>): number {
  let total = 0;
  for (const pool of pools) total += poolGpus(pool);
  return total;
}

/**
 * Builds a snapshot from pools with known GPU counts. A later pool with the same key replaces
 * an earlier one (a participant is observed once per snapshot).
 */
export function makeSnapshot(pools: Iterable<Pool>): Snapshot {
  const byKey = new Map<PoolKey, Pool>();
  for (const pool of pools) {
    if (!Number.isInteger(pool.replicas) || pool.replicas < 0) {
      throw new RangeError(`pool ${poolKey(pool.participant, pool.role)}: bad replicas ${pool.replicas}`);
    }
    if (!Number.isFinite(pool.gpuPerReplica) || pool.gpuPerReplica < 0) {
      throw new RangeError(
        `pool ${poolKey(pool.participant, pool.role)}: bad gpuPerReplica ${pool.gpuPerReplica}`,
      );
    }
    byKey.set(poolKey(pool.participant, pool.role), pool);
  }
  return { pools: byKey, totalGpus: totalGpus(byKey.values()) };
}
