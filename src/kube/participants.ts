/**
 * Budget participants seen from the DGD cache: which DGDs of POD_NAMESPACE take part (the cache's
 * name filter) and the GPU pools they hold. The pool mapping is pure: one pool
 * per component that has a role, plus a list of what could not be counted, because the budget
 * must fail closed on an unknown GPU count instead of counting the pool as 0 (as upstream once did).
 */
import type { Logger } from "../ops/log.ts";
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

/**
 * The name filter for the cache. Implicit mode (no managed namespaces) keeps every DGD
 * of `podNamespace`; explicit mode keeps the DGDs whose Dynamo namespace
 * `"{podNamespace}-{dgd}"` is managed. Entries without that prefix name no DGD in
 * `podNamespace`: they are warned about once, here, since upstream drops them silently.
 */
export function managedDgdNames(
  managedNamespaces: readonly string[] | null,
  podNamespace: string,
  logger: Logger,
): (name: string) => boolean {
  if (!managedNamespaces || managedNamespaces.length === 0) return () => true;
  const prefix = `${podNamespace}-`;
  const names = new Set<string>();
  for (const entry of managedNamespaces) {
    if (entry.startsWith(prefix) && entry.length > prefix.length) {
      names.add(entry.slice(prefix.length));
    } else {
      logger.warn(
        `managed namespace '${entry}' does not start with '${prefix}', so it names no DGD in ` +
          `namespace '${podNamespace}'; it is not part of the GPU budget until it sends a request`,
        { managedNamespace: entry, podNamespace },
      );
    }
  }
  return (name) => names.has(name);
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
