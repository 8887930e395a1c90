/**
 * The Kubernetes side of the GPU budget: pools come from the DGD watch cache (no API call on
 * the decision path), plus DGDs outside the cache that joined by sending a request (read once,
 * then kept current from our own writes). Writes go through the scaler, deciding on the cached
 * view and guarded by its resourceVersion.
 *
 * Adapter-owned pools: the operator copies an adapter's replicas into the DGD asynchronously, so
 * right after such a write the DGD (and the cache) still shows the old count. Until the DGD
 * catches up, the pool counts with the value written — otherwise the next decision would
 * arbitrate against a total that no longer exists. The override ends when the DGD shows the
 * value written, or when it shows a count that is neither that value nor the one it had at the
 * write (someone else changed the replicas since: theirs is the truth now).
 *
 * Joined participants are also watched (`watched`, the watch caches of the DGDs requests touch):
 * while a watch holds one, its copy is the one counted and no read is needed. An unwatched one
 * (no such cache, or its namespace evicted) is read again once its copy is older than
 * `joinedRefreshMs` (on the next decision); one that is gone (404) leaves the budget.
 */
import { GpuCountUnknown, KubeError } from "../errors.ts";
import type { BudgetPort, ParticipantState } from "../service/budget_planner.ts";
import type { ParticipantId, Snapshot } from "../service/budget/mod.ts";
import type { TargetReplica } from "../service/contract.ts";
import type { DgdCache } from "./cache.ts";
import type { KubeClient } from "./client.ts";
import { currentReplicas, type DgdView, viewDgd } from "./dgd.ts";
import { fallbackPools, FleetPools, gpusByDgd } from "./fleet_pools.ts";
import { dgdRequest, type ObjectRef } from "./resources.ts";
import type { Applied } from "./scaler.ts";
import type { ScaleUseCase, WriteOptions } from "../service/scale_use_case.ts";
import type { ResolvedTarget } from "./dgd.ts";
import type { DgdApiVersion } from "./dgd.ts";

/** Watched copies of DGDs outside the budget's own cache (src/kube/touched_cache.ts). */
export interface WatchedDgds {
  /** A request's DGD: kept and watched from now on; its copy once the watch has it. */
  viewOf(ref: ObjectRef): DgdView | undefined;
  /** The watched copy, without counting a request. */
  peek(ref: ObjectRef): DgdView | undefined;
  /** True while a connected watch holds the DGD's copy. */
  watching(ref: ObjectRef): boolean;
  /** Takes in a copy read or written (for a DGD `viewOf` was asked for). */
  record(view: DgdView): void;
  /** Changes whenever any watched copy may have changed. */
  revision(): string;
  /** Calls `listener` with each DGD whose copy may have changed; `undefined`: any may have. */
  onChange(listener: (ref: ObjectRef | undefined) => void): () => void;
}

export interface KubeBudgetPortOptions {
  cache: DgdCache;
  /** The core's scaling use case over the Kubernetes port: how one participant's write is applied. */
  scaler: ScaleUseCase<DgdView, ResolvedTarget, Applied>;
  client: KubeClient;
  version: () => Promise<DgdApiVersion>;
  /**
   * Called whenever the per-DGD GPU picture changes (metrics): with every DGD (`replace`), or
   * with just the DGDs whose GPUs may have changed since the last call (the others as they were).
   */
  onPools?: (gpusByDgd: Record<string, number>, replace: boolean) => void;
  /** How old a joined participant's copy may get before a decision reads it again (default 30 s). */
  joinedRefreshMs?: number;
  /** Milliseconds since the epoch (injectable for tests). */
  clock?: () => number;
  /** Watches joined participants, so the decisions count their current copies without reads. */
  watched?: WatchedDgds;
}

export const DEFAULT_JOINED_REFRESH_MS = 30_000;

interface Joined {
  ref: ObjectRef;
  view: DgdView;
  /** Clock time the copy was read or written. */
  at: number;
}

interface PendingAdapter {
  /** Replicas written through the adapter. */
  value: number;
  /** What the DGD showed when we wrote. */
  before: number;
}

export class KubeBudgetPort implements BudgetPort<Applied, DgdView> {
  #options: KubeBudgetPortOptions;
  /** Participants outside the cache (other namespaces, or not derived from managed namespaces). */
  #joined = new Map<ParticipantId, Joined>();
  /** `participant/component` → replicas written through an adapter, until the DGD shows them. */
  #pendingAdapter = new Map<string, PendingAdapter>();
  #clock: () => number;
  #refreshMs: number;
  #fleet = new FleetPools();
  /** The last decision's snapshot and the revision of what it came from; `plain` = no fallback pools. */
  #last?: { snapshot: Snapshot; plain: boolean; revision: string };
  /** Grows with every change of `#joined` or `#pendingAdapter`. */
  #ownRevision = 0;
  /**
   * Participants whose counted view may have changed since the last snapshot (`all`: any may
   * have), so a decision after a write maps one DGD, not the fleet.
   */
  #dirty = { all: true, ids: new Set<ParticipantId>() };
  #states = new WeakMap<DgdView, ParticipantState<DgdView>>();
  /** No joined copy is due for a refresh before this clock time. */
  #nextRefreshAt = Infinity;

  constructor(options: KubeBudgetPortOptions) {
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
    this.#refreshMs = options.joinedRefreshMs ?? DEFAULT_JOINED_REFRESH_MS;
    const namespace = options.cache.namespace;
    options.cache.onChange((name) => this.#touched(name === undefined ? undefined : `${namespace}/${name}`));
    options.watched?.onChange((ref) => this.#touched(ref && _id(ref)));
  }

  /** Participants outside the cache currently counted (for tests and metrics). */
  get joined(): number {
    return this.#joined.size;
  }

  /** The view the scaler decides on: the cache's, or a joined participant's (watched first). */
  viewOf(ref: ObjectRef): DgdView | undefined {
    return this.#options.cache.get(ref.namespace, ref.name) ?? this.#joinedView(ref);
  }

  /** True when the view `viewOf` gives is kept current by a connected watch. */
  watching(ref: ObjectRef): boolean {
    if (this.#options.cache.get(ref.namespace, ref.name)) return this.#options.cache.state().watching;
    return this.#options.watched?.watching(ref) ?? false;
  }

  /**
   * `metadata.generation` of the DGD a pool key (`namespace/dgd/role`) belongs to, as this
   * replica sees it; `undefined` when it sees no such DGD.
   */
  generationOf(key: string): number | undefined {
    const [namespace, name] = key.split("/");
    if (namespace === undefined || name === undefined) return undefined;
    return this.viewOf({ namespace, name })?.generation;
  }

  /** Keeps joined participants and pending adapter values current after a write. */
  recordApplied(ref: ObjectRef, applied: Applied): void {
    const id = _id(ref);
    if (this.#options.cache.get(ref.namespace, ref.name)) this.#options.cache.upsert(applied.view);
    else {
      this.#setJoined(id, ref, applied.view, this.#clock());
      this.#options.watched?.record(applied.view);
    }
    for (const component of applied.viaAdapter) {
      const before = applied.view.components.find((c) => c.name === component)?.replicas ?? 0;
      this.#pendingAdapter.set(`${id}/${component}`, { value: applied.written.get(component)!, before });
      this.#ownRevision++;
      this.#touched(id);
    }
  }

  async snapshot(
    requester: ParticipantId,
    targets: readonly TargetReplica[],
    signal: AbortSignal,
  ): Promise<Snapshot> {
    const state = this.#options.cache.state();
    if (!state.synced) {
      // Deciding against an empty fleet would let anything through: fail closed instead.
      throw new GpuCountUnknown(
        `GPU budget cannot be checked: the DynamoGraphDeployment cache has not listed ` +
          `namespace '${this.#options.cache.namespace}' yet${state.lastError ? ` (${state.lastError})` : ""}`,
      );
    }
    const [namespace, name] = _ref(requester);
    await this.#refreshJoined(signal);
    const ref = { namespace, name };
    // Outside the budget's cache, the request keeps its DGD watched (and its namespace's watch alive).
    let own = this.#options.cache.get(namespace, name) ??
      this.#options.watched?.viewOf(ref) ?? this.#joined.get(requester)?.view;
    if (!own) {
      // Joins on its first request: the one read on this path; then its watch keeps it current
      // (without one, it is read again once per refresh interval). A missing DGD fails here
      // with the API's 404.
      own = (await this.#read(requester, signal, false))!;
      this.#setJoined(requester, ref, own, this.#clock());
      this.#options.watched?.record(own);
    }
    const revision = this.#revision();
    // Nothing can have moved since the last decision: its snapshot (immutable) as it was.
    if (this.#last?.plain && this.#last.revision === revision && this.#requestsNoFallback(own, targets)) {
      return this.#last.snapshot;
    }
    if (this.#last?.plain && this.#requestsNoFallback(own, targets)) {
      const updated = this.#updated();
      if (updated) return updated;
    }
    // Every view is read now; until this snapshot is built, only a full derive may follow.
    this.#dirty = { all: true, ids: new Set() };
    const { pools, unknown, snapshot: snapshotWith } = this.#fleet.derive(this.#views());
    const unreadable = this.#options.cache.unreadable();
    if (unknown.length > 0 || unreadable.length > 0) {
      const first = unknown[0] ?? { dgd: unreadable[0].dgd, component: "-", reason: unreadable[0].reason };
      throw new GpuCountUnknown(
        `GPU budget cannot be checked: DynamoGraphDeployment '${first.dgd}' component '${first.component}': ` +
          `${first.reason}` + (unknown.length + unreadable.length > 1
            ? ` (and ${unknown.length + unreadable.length - 1} more)`
            : ""),
      );
    }
    // A requested role served by a `component_name` fallback is a pool too (it holds GPUs).
    const ownPools = fallbackPools(this.#withPending(own), requester, targets, pools);
    const snapshot = snapshotWith(ownPools);
    // The same snapshot as the last decision's: nothing moved, no metrics update.
    if (snapshot !== this.#last?.snapshot) this.#options.onPools?.(gpusByDgd(snapshot.pools.values()), true);
    // Read again: mapping the views may have ended pending adapter values.
    this.#last = { snapshot, plain: ownPools.length === 0, revision: this.#revision() };
    this.#dirty.all = false;
    return snapshot;
  }

  /**
   * The last plain snapshot with only the changed participants' views mapped again; `undefined`
   * when a full derive must tell (see `FleetPools.update`).
   */
  #updated(): Snapshot | undefined {
    const dirty = this.#dirty;
    if (dirty.all || this.#options.cache.unreadable().length > 0) return undefined;
    // A pending adapter value can end on any read of its view: those are looked at every time.
    for (const key of this.#pendingAdapter.keys()) dirty.ids.add(key.slice(0, key.lastIndexOf("/")));
    const changed = new Map<ParticipantId, DgdView | undefined>();
    for (const id of dirty.ids) changed.set(id, this.#counted(id));
    const updated = this.#fleet.update(changed);
    if (!updated) return undefined;
    this.#dirty = { all: false, ids: new Set() };
    const { snapshot, gpusByDgd } = updated;
    if (snapshot !== this.#last?.snapshot) this.#options.onPools?.(gpusByDgd, false);
    this.#last = { snapshot, plain: true, revision: this.#revision() };
    return snapshot;
  }

  /** The view `#views` counts for one participant (`undefined`: none). */
  #counted(id: ParticipantId): DgdView | undefined {
    const [namespace, name] = _ref(id);
    const cached = this.#options.cache.get(namespace, name);
    if (cached) return this.#withPending(cached);
    const joined = this.#joined.get(id);
    return joined && this.#withPending(this.#options.watched?.peek(joined.ref) ?? joined.view);
  }

  /** `id`'s counted view may have changed (`undefined`: any participant's may have). */
  #touched(id: ParticipantId | undefined): void {
    if (id === undefined) this.#dirty.all = true;
    else this.#dirty.ids.add(id);
  }

  /** Every view the budget counts: the cache's, then the joined participants' (pending values in). */
  #views(): DgdView[] {
    const views: DgdView[] = [];
    for (const view of this.#options.cache.views()) views.push(this.#withPending(view));
    for (const j of this.#joined.values()) {
      views.push(this.#withPending(this.#options.watched?.peek(j.ref) ?? j.view));
    }
    return views;
  }

  async apply(
    participant: ParticipantId,
    targets: readonly TargetReplica[],
    signal: AbortSignal,
    options?: WriteOptions,
  ): Promise<{ replicas: Record<string, number>; applied: Applied }> {
    const [namespace, name] = _ref(participant);
    const applied = await this.#options.scaler.apply({ namespace, name }, targets, signal, options);
    return { replicas: applied.replicas, applied };
  }

  /**
   * The participant's copy the decision counts (pending adapter values included). One object
   * per copy: partner bounds ask this of every pool with an open intent, on every decision.
   */
  state(participant: ParticipantId): ParticipantState<DgdView> | undefined {
    const [namespace, name] = _ref(participant);
    const view = this.viewOf({ namespace, name });
    if (!view) return undefined;
    const counted = this.#withPending(view);
    let state = this.#states.get(counted);
    if (!state) {
      const replicas = Object.freeze(currentReplicas(counted));
      state = { view: counted, annotations: counted.annotations, replicas };
      this.#states.set(counted, state);
    }
    return state;
  }

  waitApplied(participant: ParticipantId, applied: Applied, signal: AbortSignal): Promise<void> {
    const [namespace, name] = _ref(participant);
    return this.#options.scaler.waitApplied({ namespace, name }, applied, signal);
  }

  /** Reads a participant's DGD; `undefined` when it does not exist (and `missingOk`). */
  async #read(
    participant: ParticipantId,
    signal: AbortSignal,
    missingOk = true,
  ): Promise<DgdView | undefined> {
    const [namespace, name] = _ref(participant);
    const version = await this.#options.version();
    try {
      return viewDgd(
        await this.#options.client.json({
          method: "GET",
          verb: "get",
          ...dgdRequest(version, { namespace, name }),
          signal,
        }),
      );
    } catch (error) {
      if (missingOk && error instanceof KubeError && error.detail.status === 404) return undefined;
      throw error;
    }
  }

  /**
   * Re-reads joined copies older than the refresh interval; a deleted DGD leaves the budget.
   * A failed read keeps the last copy: a transient API error must not drop GPUs from the
   * count, nor block every decision.
   */
  async #refreshJoined(signal: AbortSignal): Promise<void> {
    const now = this.#clock();
    if (now < this.#nextRefreshAt) return;
    this.#nextRefreshAt = Infinity;
    const stale: ParticipantId[] = [];
    for (const [id, j] of this.#joined) {
      if (now - j.at < this.#refreshMs) {
        this.#nextRefreshAt = Math.min(this.#nextRefreshAt, j.at + this.#refreshMs);
        continue;
      }
      const ref = j.ref;
      const watched = this.#options.watched?.watching(ref) ? this.#options.watched.peek(ref) : undefined;
      // A connected watch holds it: that copy is as fresh as a read.
      if (watched) this.#setJoined(id, j.ref, watched, now);
      else {
        stale.push(id);
        // Read again on the next decision, should this read fail.
        this.#nextRefreshAt = now;
      }
    }
    await Promise.all(stale.map(async (id) => {
      try {
        const view = await this.#read(id, signal);
        if (view) this.#setJoined(id, _refOf(id), view, now);
        else this.#forget(id);
      } catch { /* kept; read again on the next decision */ }
    }));
  }

  #revision(): string {
    return `${this.#options.cache.revision}|${this.#options.watched?.revision() ?? ""}|${this.#ownRevision}`;
  }

  /** True when every target names a role the DGD has a component for (no fallback pool). */
  #requestsNoFallback(own: DgdView, targets: readonly TargetReplica[]): boolean {
    return targets.every((t) =>
      (t.component_name ?? null) === null && own.components.some((c) => c.role === t.sub_component_type)
    );
  }

  #joinedView(ref: ObjectRef): DgdView | undefined {
    const joined = this.#joined.get(_id(ref));
    return joined ? this.#options.watched?.peek(ref) ?? joined.view : undefined;
  }

  #setJoined(id: ParticipantId, ref: ObjectRef, view: DgdView, at: number): void {
    const was = this.#joined.get(id);
    this.#joined.set(id, { ref, view, at });
    this.#nextRefreshAt = Math.min(this.#nextRefreshAt, at + this.#refreshMs);
    if (was?.view !== view) {
      this.#ownRevision++;
      this.#touched(was ? id : undefined);
    }
  }

  #forget(id: ParticipantId): void {
    this.#joined.delete(id);
    this.#ownRevision++;
    this.#touched(undefined);
    for (const key of [...this.#pendingAdapter.keys()]) {
      if (key.startsWith(`${id}/`)) this.#pendingAdapter.delete(key);
    }
  }

  #withPending(view: DgdView): DgdView {
    if (this.#pendingAdapter.size === 0) return view;
    const id = `${view.namespace}/${view.name}`;
    let changed = false;
    const components = view.components.map((c) => {
      const key = `${id}/${c.name}`;
      const pending = this.#pendingAdapter.get(key);
      if (pending === undefined) return c;
      if (pending.value === c.replicas || pending.before !== c.replicas) {
        // The operator caught up, or someone else changed the count since our write.
        this.#pendingAdapter.delete(key);
        this.#ownRevision++;
        this.#touched(id);
        return c;
      }
      changed = true;
      return { ...c, replicas: pending.value };
    });
    return changed ? { ...view, components } : view;
  }
}

function _id(ref: ObjectRef): ParticipantId {
  return `${ref.namespace}/${ref.name}`;
}

function _refOf(participant: ParticipantId): ObjectRef {
  const [namespace, name] = _ref(participant);
  return { namespace, name };
}

function _ref(participant: ParticipantId): [string, string] {
  const slash = participant.indexOf("/");
  return [participant.slice(0, slash), participant.slice(slash + 1)];
}
