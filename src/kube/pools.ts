/**
 * DGD views → GPU budget pools (spec §9). Pure: one pool per component that has a role, and a
 * list of what could not be counted, because the budget must fail closed on an unknown GPU
 * count instead of counting the pool as 0 (upstream's fail-open bug, §13.6).
 */
import type { ParticipantId, Pool } from "../service/budget/pool.ts";
import type { DgdView } from "./dgd.ts";

/** A component whose GPUs cannot be counted; any arbitration touching it must fail closed. */
export interface UnknownPool {
  /** `"{namespace}/{name}"` of the DGD. */
  dgd: string;
  component: string;
  reason: string;
}

export interface PoolSnapshot {
  /** Pools with a known GPU count, in view order (feed to `makeSnapshot`). */
  pools: Pool[];
  unknown: UnknownPool[];
}

export function snapshotPools(
  views: Iterable<DgdView>,
  participantOf: (view: DgdView) => ParticipantId,
): PoolSnapshot {
  const pools: Pool[] = [];
  const unknown: UnknownPool[] = [];
  for (const view of views) {
    const dgd = `${view.namespace}/${view.name}`;
    const participant = participantOf(view);
    for (const role of ["prefill", "decode"] as const) {
      const holders = view.components.filter((component) => component.role === role);
      if (holders.length > 1) {
        // Two components would share one pool key: which replicas count is ambiguous.
        const names = holders.map((component) => component.name).sort().join(", ");
        for (const component of holders) {
          unknown.push({
            dgd,
            component: component.name,
            reason: `DGD '${dgd}' has several components with role '${role}' (${names})`,
          });
        }
        continue;
      }
      const component = holders[0];
      if (!component) continue;
      if (component.gpus.kind === "unknown") {
        unknown.push({ dgd, component: component.name, reason: component.gpus.reason });
        continue;
      }
      pools.push({
        participant,
        role,
        replicas: component.replicas,
        gpuPerReplica: component.gpus.perReplica,
      });
    }
  }
  return { pools, unknown };
}
