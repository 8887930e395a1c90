/**
 * The Kubernetes side of the GPU budget: pools come from the DGD watch cache (no API call on
 * the decision path), plus DGDs outside the cache that joined by sending a request (read once,
 * then kept current from our own writes). Writes go through the scaler, deciding on the cached
 * view and guarded by its resourceVersion.
 *
 * Adapter-owned pools: the operator copies an adapter's replicas into the DGD asynchronously, so
 * right after such a write the DGD (and the cache) still shows the old count. Until the DGD
 * catches up, the pool counts with the value written — otherwise the next decision would
 * arbitrate against a total that no longer exists.
 */
import { GpuCountUnknown } from "../errors.ts";
import type { BudgetPort } from "../service/budget_planner.ts";
import {
  makeSnapshot,
  type ParticipantId,
  type Pool,
  poolKey,
  type Snapshot,
} from "../service/budget/mod.ts";
import type { TargetReplica } from "../service/contract.ts";
import type { DgdCache } from "./cache.ts";
import type { KubeClient } from "./client.ts";
import { type DgdView, resolveTargets, viewDgd } from "./dgd.ts";
import { snapshotPools } from "./participants.ts";
import { dgdRequest, type ObjectRef } from "./resources.ts";
import type { Applied, KubeScaler } from "./scaler.ts";
import type { DgdApiVersion } from "./dgd.ts";

export interface KubeBudgetPortOptions {
  cache: DgdCache;
  scaler: KubeScaler;
  client: KubeClient;
  version: () => Promise<DgdApiVersion>;
  /** Called whenever the per-DGD GPU picture changes (metrics). */
  onPools?: (gpusByDgd: Record<string, number>) => void;
}

export class KubeBudgetPort implements BudgetPort<Applied> {
  #options: KubeBudgetPortOptions;
  /** Participants outside the cache (other namespaces, or not derived from managed namespaces). */
  #joined = new Map<ParticipantId, DgdView>();
  /** `participant/component` → replicas written through an adapter, until the DGD shows them. */
  #pendingAdapter = new Map<string, number>();

  constructor(options: KubeBudgetPortOptions) {
    this.#options = options;
  }

  /** The view the scaler decides on: the cache's, or a joined participant's. */
  viewOf(ref: ObjectRef): DgdView | undefined {
    return this.#options.cache.get(ref.namespace, ref.name) ?? this.#joined.get(_id(ref));
  }

  /** Keeps joined participants and pending adapter values current after a write. */
  recordApplied(ref: ObjectRef, applied: Applied): void {
    const id = _id(ref);
    if (this.#options.cache.get(ref.namespace, ref.name)) this.#options.cache.upsert(applied.view);
    else this.#joined.set(id, applied.view);
    for (const component of applied.viaAdapter) {
      this.#pendingAdapter.set(`${id}/${component}`, applied.written.get(component)!);
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
    let own = this.viewOf({ namespace, name });
    if (!own) {
      // Joins on its first request: the one read on this path, once per participant.
      const version = await this.#options.version();
      own = viewDgd(
        await this.#options.client.json({
          method: "GET",
          verb: "get",
          ...dgdRequest(version, { namespace, name }),
          signal,
        }),
      );
      this.#joined.set(requester, own);
    }
    const views = [...this.#options.cache.views(), ...this.#joined.values()].map((v) => this.#withPending(v));
    const { pools, unknown } = snapshotPools(views, (v) => `${v.namespace}/${v.name}`);
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
    const ownPools = this.#fallbackPools(this.#withPending(own), requester, targets, pools);
    const all = [...pools, ...ownPools];
    this.#options.onPools?.(_gpusByDgd(all));
    return makeSnapshot(all);
  }

  async apply(participant: ParticipantId, targets: readonly TargetReplica[], signal: AbortSignal) {
    const [namespace, name] = _ref(participant);
    const applied = await this.#options.scaler.apply({ namespace, name }, targets, signal);
    return { replicas: applied.replicas, applied };
  }

  waitApplied(participant: ParticipantId, applied: Applied, signal: AbortSignal): Promise<void> {
    const [namespace, name] = _ref(participant);
    return this.#options.scaler.waitApplied({ namespace, name }, applied, signal);
  }

  #withPending(view: DgdView): DgdView {
    if (this.#pendingAdapter.size === 0) return view;
    const id = `${view.namespace}/${view.name}`;
    let changed = false;
    const components = view.components.map((c) => {
      const key = `${id}/${c.name}`;
      const pending = this.#pendingAdapter.get(key);
      if (pending === undefined) return c;
      if (pending === c.replicas) {
        this.#pendingAdapter.delete(key); // the operator caught up
        return c;
      }
      changed = true;
      return { ...c, replicas: pending };
    });
    return changed ? { ...view, components } : view;
  }

  #fallbackPools(
    own: DgdView,
    requester: ParticipantId,
    targets: readonly TargetReplica[],
    pools: Pool[],
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
}

function _id(ref: ObjectRef): ParticipantId {
  return `${ref.namespace}/${ref.name}`;
}

function _ref(participant: ParticipantId): [string, string] {
  const slash = participant.indexOf("/");
  return [participant.slice(0, slash), participant.slice(slash + 1)];
}

function _gpusByDgd(pools: Pool[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of pools) out[p.participant] = (out[p.participant] ?? 0) + p.replicas * p.gpuPerReplica;
  return out;
}
