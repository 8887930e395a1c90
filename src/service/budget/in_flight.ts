/**
 * Writes the budget planner has issued and not yet seen answered. The planner stops holding its
 * decision queue once a standalone write is issued, so a later decision may run while earlier
 * writes are on the wire. It decides on the fleet as if each of them had landed (what it would see
 * by waiting), and `spread` says how far the total moves if some of them fail instead, so the band
 * can be checked against every outcome (src/service/budget/arbitrate.ts).
 *
 * One write is one API call per DGD: it lands whole or not at all, so each write's uncertainty is
 * its net GPU change, not the sum of its pools' moves.
 */
import { type ParticipantId, type Pool, poolGpus, type PoolKey, poolKey, type Snapshot } from "./pool.ts";
import type { ParticipantWrite } from "./writes.ts";

/** GPUs the fleet total may still gain (`raise`) or lose (`lower`) when in-flight writes fail. */
export interface InFlightSpread {
  readonly raise: number;
  readonly lower: number;
}

export const NO_SPREAD: InFlightSpread = Object.freeze({ raise: 0, lower: 0 });

interface _Entry {
  /** The write's pools as they are once it lands. */
  readonly landed: readonly Pool[];
  /** Net GPU change of the write (`landed` − the pools as the decision counted them). */
  readonly gpuDelta: number;
  readonly done: Promise<void>;
}

export class InFlightWrites {
  #entries = new Map<ParticipantId, _Entry>();

  get size(): number {
    return this.#entries.size;
  }

  has(participant: ParticipantId): boolean {
    return this.#entries.has(participant);
  }

  /**
   * Records `write` as issued, its pools taken from the snapshot the decision counted (pools the
   * snapshot does not hold are unknown to the budget and change nothing). Returns `settle`, to be
   * called once the write is answered, either way, and after the fleet's copy shows its outcome.
   */
  begin(snapshot: Snapshot, write: ParticipantWrite): () => void {
    if (this.#entries.has(write.participant)) {
      throw new Error(`a write of ${write.participant} is already in flight`);
    }
    const landed: Pool[] = [];
    let gpuDelta = 0;
    for (const target of write.targets) {
      const pool = snapshot.pools.get(poolKey(write.participant, target.role));
      if (pool === undefined) continue;
      landed.push({ ...pool, replicas: target.desired });
      gpuDelta += poolGpus(pool, target.desired) - poolGpus(pool);
    }
    const done = Promise.withResolvers<void>();
    const entry: _Entry = { landed, gpuDelta, done: done.promise };
    this.#entries.set(write.participant, entry);
    return () => {
      if (this.#entries.get(write.participant) === entry) this.#entries.delete(write.participant);
      done.resolve();
    };
  }

  /**
   * `snapshot` with every in-flight write counted as landed, and the spread their failures leave.
   * With nothing in flight, the snapshot itself (no copy).
   */
  view(snapshot: Snapshot): { snapshot: Snapshot; spread: InFlightSpread } {
    if (this.#entries.size === 0) return { snapshot, spread: NO_SPREAD };
    const pools = new Map<PoolKey, Pool>(snapshot.pools);
    let total = snapshot.totalGpus;
    let raise = 0;
    let lower = 0;
    for (const entry of this.#entries.values()) {
      for (const pool of entry.landed) {
        const key = poolKey(pool.participant, pool.role);
        const counted = pools.get(key);
        if (counted === undefined) continue;
        total += poolGpus(pool) - poolGpus(counted);
        pools.set(key, pool);
      }
      if (entry.gpuDelta > 0) lower += entry.gpuDelta;
      else raise -= entry.gpuDelta;
    }
    return { snapshot: { pools, totalGpus: total }, spread: { raise, lower } };
  }

  /** Resolves once every write in flight now has settled (writes issued later are not waited for). */
  settled(): Promise<void> {
    return Promise.all([...this.#entries.values()].map((e) => e.done)).then(() => {});
  }
}
