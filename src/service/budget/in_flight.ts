/**
 * Writes the budget planner has issued and not yet seen answered. The planner stops holding its
 * decision queue once a decision's writes are issued, so a later decision may run while earlier
 * writes are on the wire. It decides on the fleet as if each of them lands (what it would see by
 * waiting), and `spread` says how far the total moves if some of them fail instead, so an approval
 * can be checked against every outcome (src/service/budget/arbitrate.ts).
 *
 * The outcomes of one decision follow how its writes are applied: one API call per DGD, which
 * lands whole or not at all; the first write failing stops the rest; a later write failing stops
 * nothing. So either nothing lands, or the first does and any subset of the others.
 */
import { type ParticipantId, type Pool, poolGpus, type PoolKey, poolKey, type Snapshot } from "./pool.ts";
import type { ParticipantWrite } from "./writes.ts";

/** GPUs the fleet total may still gain (`raise`) or lose (`lower`) when writes in flight fail. */
export interface InFlightSpread {
  readonly raise: number;
  readonly lower: number;
}

export const NO_SPREAD: InFlightSpread = Object.freeze({ raise: 0, lower: 0 });

interface _Write {
  readonly participant: ParticipantId;
  /** The write's pools as they are once it lands. */
  readonly landed: readonly Pool[];
  /** Net GPU change (`landed` − the pools as the decision counted them). */
  readonly gpuDelta: number;
}

/** One decision's writes still awaited, in apply order; `first` while its first one is among them. */
interface _Group {
  pending: _Write[];
  first: boolean;
  readonly done: PromiseWithResolvers<void>;
}

/** A decision's writes in flight: say when each is answered, and when the decision is over. */
export interface IssuedWrites {
  /** `participant`'s write was answered (landed or failed), and the fleet's copy shows it. */
  answered(participant: ParticipantId): void;
  /** Nothing more will be written for this decision (also when writes were never attempted). */
  end(): void;
}

export class InFlightWrites {
  #groups = new Set<_Group>();
  #byParticipant = new Map<ParticipantId, _Group>();
  #change?: PromiseWithResolvers<void>;
  #onSize?: (size: number) => void;
  /** Grows with every write issued, answered or abandoned: a `view` of an older one is stale. */
  #version = 0;
  /** The last `view`: decisions between two changes see the same fleet, so they share one copy. */
  #lastView?: { observed: Snapshot; version: number; view: { snapshot: Snapshot; spread: InFlightSpread } };

  /** `onSize` hears every change of `size` (a gauge). */
  constructor(onSize?: (size: number) => void) {
    this.#onSize = onSize;
  }

  /** Participants with a write in flight. */
  get size(): number {
    return this.#byParticipant.size;
  }

  has(participant: ParticipantId): boolean {
    return this.#byParticipant.has(participant);
  }

  /**
   * Records a decision's `writes` (in apply order) as issued, their pools taken from the snapshot
   * the decision counted; pools the snapshot does not hold are unknown to the budget.
   */
  begin(snapshot: Snapshot, writes: readonly ParticipantWrite[]): IssuedWrites {
    for (const write of writes) {
      if (this.#byParticipant.has(write.participant)) {
        throw new Error(`a write of ${write.participant} is already in flight`);
      }
    }
    const group: _Group = {
      pending: writes.map((w) => _write(snapshot, w)),
      first: true,
      done: Promise.withResolvers(),
    };
    this.#groups.add(group);
    for (const write of writes) this.#byParticipant.set(write.participant, group);
    this.#version++;
    this.#onSize?.(this.size);
    return {
      answered: (participant) => {
        if (this.#byParticipant.get(participant) !== group) return;
        this.#byParticipant.delete(participant);
        this.#version++;
        this.#onSize?.(this.size);
        if (group.pending[0]?.participant === participant) group.first = false;
        group.pending = group.pending.filter((w) => w.participant !== participant);
        if (group.pending.length === 0) this.#end(group);
        else this.#changed();
      },
      end: () => this.#end(group),
    };
  }

  /**
   * `snapshot` with every write in flight counted as landed, and the spread their failures leave.
   * With nothing in flight, the snapshot itself (no copy); for the same (immutable) snapshot and no
   * write issued, answered or abandoned since, the same view as last time (at 1,000 DGDs the copy
   * of the pools costs about as much as the arbitration itself).
   */
  view(snapshot: Snapshot): { snapshot: Snapshot; spread: InFlightSpread } {
    if (this.#groups.size === 0) return { snapshot, spread: NO_SPREAD };
    const last = this.#lastView;
    if (last?.observed === snapshot && last.version === this.#version) return last.view;
    const view = this.#landed(snapshot);
    this.#lastView = { observed: snapshot, version: this.#version, view };
    return view;
  }

  #landed(snapshot: Snapshot): { snapshot: Snapshot; spread: InFlightSpread } {
    const pools = new Map<PoolKey, Pool>(snapshot.pools);
    let total = snapshot.totalGpus;
    let raise = 0;
    let lower = 0;
    for (const group of this.#groups) {
      for (const write of group.pending) {
        for (const pool of write.landed) {
          const key = poolKey(pool.participant, pool.role);
          const counted = pools.get(key);
          if (counted === undefined) continue;
          total += poolGpus(pool) - poolGpus(counted);
          pools.set(key, pool);
        }
      }
      const spread = _groupSpread(group);
      raise += spread.raise;
      lower += spread.lower;
    }
    return { snapshot: { pools, totalGpus: total }, spread: { raise, lower } };
  }

  /** Resolves once `participant`'s write (if any is in flight now) is answered or abandoned. */
  settledOf(participant: ParticipantId): Promise<void> {
    const group = this.#byParticipant.get(participant);
    return group ? group.done.promise : Promise.resolve();
  }

  /**
   * Resolves at the next answer of any write in flight now (or the end of its decision), once the
   * fleet's copy shows it; at once when nothing is in flight. A decision the writes in flight
   * leave open can then be tried again without waiting for the slowest of them.
   */
  changed(): Promise<void> {
    if (this.#groups.size === 0) return Promise.resolve();
    this.#change ??= Promise.withResolvers();
    return this.#change.promise;
  }

  #end(group: _Group): void {
    if (!this.#groups.delete(group)) return;
    this.#version++;
    // Nothing to share a view with any more: let the snapshot it holds go.
    if (this.#groups.size === 0) this.#lastView = undefined;
    const before = this.size;
    for (const write of group.pending) {
      if (this.#byParticipant.get(write.participant) === group) this.#byParticipant.delete(write.participant);
    }
    group.pending = [];
    if (this.size !== before) this.#onSize?.(this.size);
    group.done.resolve();
    this.#changed();
  }

  #changed(): void {
    const change = this.#change;
    this.#change = undefined;
    change?.resolve();
  }
}

function _write(snapshot: Snapshot, write: ParticipantWrite): _Write {
  const landed: Pool[] = [];
  let gpuDelta = 0;
  for (const target of write.targets) {
    const pool = snapshot.pools.get(poolKey(write.participant, target.role));
    if (pool === undefined) continue;
    landed.push({ ...pool, replicas: target.desired });
    gpuDelta += poolGpus(pool, target.desired) - poolGpus(pool);
  }
  return { participant: write.participant, landed, gpuDelta };
}

/**
 * How far below and above "everything lands" one decision's outcomes reach. With its first write
 * pending: nothing at all, or the first and any subset of the rest. Once the first has landed: any
 * subset of what is pending.
 */
function _groupSpread(group: _Group): InFlightSpread {
  const rest = group.first ? group.pending.slice(1) : group.pending;
  let raise = 0;
  let lower = 0;
  for (const write of rest) {
    if (write.gpuDelta < 0) raise -= write.gpuDelta;
    else lower += write.gpuDelta;
  }
  if (group.first) {
    // Nothing landing undoes the whole decision.
    const all = group.pending.reduce((sum, w) => sum + w.gpuDelta, 0);
    raise = Math.max(raise, -all);
    lower = Math.max(lower, all);
  }
  return { raise, lower };
}
