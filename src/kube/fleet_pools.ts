/**
 * The budget's pools over the DGD views it counts, kept across decisions: a view's pools are
 * derived once per view object (a changed DGD is a new object), and the snapshot is the last
 * one while no view changed, or the last one with only the changed views' pools replaced. At
 * 1,000 DGDs, rebuilding 2,000 pools on every decision that follows a write would dominate it;
 * so would even walking every view to find the one that changed, so a caller that knows which
 * participants changed hands just those to `update`.
 */
import {
  makeSnapshot,
  type ParticipantId,
  type Pool,
  poolKey,
  type Snapshot,
} from "../service/budget/mod.ts";
import { GpuCountUnknown } from "../errors.ts";
import type { TargetReplica } from "../service/contract.ts";
import { type DgdView, resolveTargets } from "./dgd.ts";
import { type PoolSnapshot, snapshotPools, type UnknownPool } from "./participants.ts";

export interface DerivedPools {
  pools: Pool[];
  unknown: UnknownPool[];
  /** The snapshot of `pools` plus `extra` (a requester's fallback pools); reused when it can be. */
  snapshot(extra: readonly Pool[]): Snapshot;
}

/** The snapshot of an `update`, and each changed participant's GPUs (for metrics). */
export interface UpdatedPools {
  snapshot: Snapshot;
  gpusByDgd: Record<ParticipantId, number>;
}

export class FleetPools {
  #mapped = new WeakMap<DgdView, PoolSnapshot>();
  #last?: { views: DgdView[]; mapped: PoolSnapshot[]; snapshot: Snapshot };
  /** Where each participant is in `#last.views`; `undefined` while a participant is there twice. */
  #index?: Map<ParticipantId, number>;

  derive(views: DgdView[]): DerivedPools {
    const mapped: PoolSnapshot[] = [];
    const pools: Pool[] = [];
    const unknown: UnknownPool[] = [];
    for (const view of views) {
      const m = this.#map(view);
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
          this.#index = undefined;
          return makeSnapshot([...pools, ...extra]);
        }
        const snapshot = this.#patched(views, mapped) ?? makeSnapshot(pools);
        this.#last = { views: [...views], mapped, snapshot };
        this.#index = _index(views);
        return snapshot;
      },
    };
  }

  /**
   * The last plain snapshot (`derive(…).snapshot([])`) with the views of `changed` participants
   * replaced: what `derive` over every view would give. `undefined` when only a full `derive` can
   * tell: no such snapshot, a participant added or gone, other roles, or a count unknown.
   */
  update(changed: ReadonlyMap<ParticipantId, DgdView | undefined>): UpdatedPools | undefined {
    const last = this.#last;
    const index = this.#index;
    if (!last || !index) return undefined;
    const moved: { i: number; view: DgdView; mapped: PoolSnapshot }[] = [];
    for (const [participant, view] of changed) {
      const i = index.get(participant);
      if (i === undefined || view === undefined) return undefined;
      if (last.views[i] === view) continue;
      const mapped = this.#map(view);
      const before = last.mapped[i].pools;
      if (mapped.unknown.length > 0 || !_sameKeys(before, mapped.pools)) return undefined;
      moved.push({ i, view, mapped });
    }
    if (moved.length === 0) return { snapshot: last.snapshot, gpusByDgd: {} };
    const byKey = new Map(last.snapshot.pools);
    let total = last.snapshot.totalGpus;
    const gpusByDgd: Record<ParticipantId, number> = {};
    for (const { i, view, mapped } of moved) {
      // Validated as a full build would (bad counts throw).
      const fresh = makeSnapshot(mapped.pools);
      total += fresh.totalGpus - makeSnapshot(last.mapped[i].pools).totalGpus;
      for (const [key, pool] of fresh.pools) byKey.set(key, pool);
      gpusByDgd[`${view.namespace}/${view.name}`] = fresh.totalGpus;
    }
    const snapshot = { pools: byKey, totalGpus: total };
    // Kept for the next update (the arrays are this class's own, never handed out).
    for (const { i, view, mapped } of moved) {
      last.views[i] = view;
      last.mapped[i] = mapped;
    }
    last.snapshot = snapshot;
    return { snapshot, gpusByDgd };
  }

  #map(view: DgdView): PoolSnapshot {
    let m = this.#mapped.get(view);
    if (!m) {
      m = snapshotPools([view], (v) => `${v.namespace}/${v.name}`);
      this.#mapped.set(view, m);
    }
    return m;
  }

  /** The last snapshot with the changed views' pools replaced; `undefined` when not possible. */
  #patched(views: DgdView[], mapped: PoolSnapshot[]): Snapshot | undefined {
    const last = this.#last;
    if (!last || last.views.length !== views.length) return undefined;
    const changed: number[] = [];
    for (let i = 0; i < views.length; i++) {
      if (last.views[i] === views[i]) continue;
      // Another DGD in this place, or other roles: the pool order would change.
      if (!_sameKeys(last.mapped[i].pools, mapped[i].pools)) return undefined;
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

function _sameKeys(before: readonly Pool[], after: readonly Pool[]): boolean {
  if (before.length !== after.length) return false;
  for (let p = 0; p < after.length; p++) {
    if (poolKey(before[p].participant, before[p].role) !== poolKey(after[p].participant, after[p].role)) {
      return false;
    }
  }
  return true;
}

function _index(views: readonly DgdView[]): Map<ParticipantId, number> | undefined {
  const index = new Map<ParticipantId, number>();
  for (let i = 0; i < views.length; i++) {
    const id = `${views[i].namespace}/${views[i].name}`;
    if (index.has(id)) return undefined;
    index.set(id, i);
  }
  return index;
}

/**
 * A requester's pools served by a `component_name` fallback (a role its DGD has no component
 * for, served by the named one): pools too, as they hold GPUs; `pools` are the fleet's.
 */
export function fallbackPools(
  own: DgdView,
  requester: ParticipantId,
  targets: readonly TargetReplica[],
  pools: readonly Pool[],
): Pool[] {
  const extra: Pool[] = [];
  for (const resolved of resolveTargets(own, targets)) {
    if (resolved.component.role === resolved.role) continue;
    if (pools.some((p) => poolKey(p.participant, p.role) === poolKey(requester, resolved.role))) continue;
    if (resolved.component.gpus.kind === "unknown") {
      throw new GpuCountUnknown(
        `GPU budget cannot be checked: DynamoGraphDeployment '${requester}' component '${resolved.component.name}': ${resolved.component.gpus.reason}`,
      );
    }
    extra.push({
      participant: requester,
      role: resolved.role,
      replicas: resolved.component.replicas,
      gpuPerReplica: resolved.component.gpus.perReplica,
    });
  }
  return extra;
}

/** GPUs per participant over `pools` (the metrics' picture). */
export function gpusByDgd(pools: Iterable<Pool>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of pools) out[p.participant] = (out[p.participant] ?? 0) + p.replicas * p.gpuPerReplica;
  return out;
}
