/**
 * The budget's pools over the DGD views it counts, kept across decisions: a view's pools are
 * derived once per view object (a changed DGD is a new object), and the snapshot is the last
 * one while no view changed, or the last one with only the changed views' pools replaced. At
 * 1,000 DGDs, rebuilding 2,000 pools on every decision that follows a write would dominate it.
 */
import { makeSnapshot, type Pool, poolKey, type Snapshot } from "../service/budget/mod.ts";
import type { DgdView } from "./dgd.ts";
import { type PoolSnapshot, snapshotPools, type UnknownPool } from "./participants.ts";

export interface DerivedPools {
  pools: Pool[];
  unknown: UnknownPool[];
  /** The snapshot of `pools` plus `extra` (a requester's fallback pools); reused when it can be. */
  snapshot(extra: readonly Pool[]): Snapshot;
}

export class FleetPools {
  #mapped = new WeakMap<DgdView, PoolSnapshot>();
  #last?: { views: DgdView[]; mapped: PoolSnapshot[]; snapshot: Snapshot };

  derive(views: DgdView[]): DerivedPools {
    const mapped: PoolSnapshot[] = [];
    const pools: Pool[] = [];
    const unknown: UnknownPool[] = [];
    for (const view of views) {
      let m = this.#mapped.get(view);
      if (!m) {
        m = snapshotPools([view], (v) => `${v.namespace}/${v.name}`);
        this.#mapped.set(view, m);
      }
      mapped.push(m);
      for (const pool of m.pools) pools.push(pool);
      for (const u of m.unknown) unknown.push(u);
    }
    return {
      pools,
      unknown,
      snapshot: (extra) => {
        if (extra.length > 0) {
          // Not kept: the fallback pools belong to this request only.
          this.#last = undefined;
          return makeSnapshot([...pools, ...extra]);
        }
        const snapshot = this.#patched(views, mapped) ?? makeSnapshot(pools);
        this.#last = { views, mapped, snapshot };
        return snapshot;
      },
    };
  }

  /** The last snapshot with the changed views' pools replaced; `undefined` when not possible. */
  #patched(views: DgdView[], mapped: PoolSnapshot[]): Snapshot | undefined {
    const last = this.#last;
    if (!last || last.views.length !== views.length) return undefined;
    const changed: number[] = [];
    for (let i = 0; i < views.length; i++) {
      if (last.views[i] === views[i]) continue;
      const before = last.mapped[i].pools;
      const after = mapped[i].pools;
      // Another DGD in this place, or other roles: the pool order would change.
      if (before.length !== after.length) return undefined;
      for (let p = 0; p < after.length; p++) {
        if (poolKey(before[p].participant, before[p].role) !== poolKey(after[p].participant, after[p].role)) {
          return undefined;
        }
      }
      changed.push(i);
    }
    if (changed.length === 0) return last.snapshot;
    const byKey = new Map(last.snapshot.pools);
    let total = last.snapshot.totalGpus;
    for (const i of changed) {
      // Validated as a full build would (bad counts throw).
      const fresh = makeSnapshot(mapped[i].pools);
      total += fresh.totalGpus - makeSnapshot(last.mapped[i].pools).totalGpus;
      for (const [key, pool] of fresh.pools) byKey.set(key, pool);
    }
    return { pools: byKey, totalGpus: total };
  }
}
