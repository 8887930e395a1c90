/** The budget planner's port in memory, for unit tests of the planner. */
import type { BudgetPort } from "../../src/service/budget_planner.ts";
import { makeSnapshot, type ParticipantId, type Pool } from "../../src/service/budget/mod.ts";
import { parseScaleRequest, type TargetReplica } from "../../src/service/contract.ts";
import type { WriteOptions } from "../../src/service/scale_use_case.ts";

/**
 * A fleet in memory: applying a write changes it (unless a dry run) and sets the annotations it
 * carries; hooks hold writes and waits, and inject failures.
 */
export class FakePort implements BudgetPort<string, string> {
  pools = new Map<string, Pool>();
  annotations = new Map<ParticipantId, Record<string, string>>();
  applied: string[] = [];
  options: WriteOptions[] = [];
  failFor = new Map<ParticipantId, Error>();
  snapshots = 0;
  /** Run inside `apply` / `waitApplied` before they return: a test holds them there. */
  beforeApply?: (participant: ParticipantId) => Promise<void>;
  beforeWaitReturns?: (participant: ParticipantId) => Promise<void>;

  add(participant: string, role: "prefill" | "decode", replicas: number, gpuPerReplica: number) {
    this.pools.set(`${participant}/${role}`, { participant, role, replicas, gpuPerReplica });
  }
  snapshot() {
    this.snapshots++;
    return Promise.resolve(makeSnapshot([...this.pools.values()].map((p) => ({ ...p }))));
  }
  state(participant: ParticipantId) {
    const replicas: Record<string, number> = {};
    for (const p of this.pools.values()) if (p.participant === participant) replicas[p.role] = p.replicas;
    if (Object.keys(replicas).length === 0) return undefined;
    return { view: participant, annotations: this.annotations.get(participant) ?? {}, replicas };
  }
  async apply(
    participant: ParticipantId,
    targets: readonly TargetReplica[],
    _signal: AbortSignal,
    options: WriteOptions = {},
  ) {
    await this.beforeApply?.(participant);
    const failure = this.failFor.get(participant);
    if (failure) throw failure;
    this.options.push(options);
    const replicas: Record<string, number> = {};
    for (const p of this.pools.values()) if (p.participant === participant) replicas[p.role] = p.replicas;
    for (const t of targets) replicas[t.sub_component_type] = t.desired_replicas;
    this.applied.push(
      `${participant}:${targets.map((t) => `${t.sub_component_type}=${t.desired_replicas}`).join(",")}`,
    );
    if (options.dryRun) return { replicas, applied: participant };
    this.annotations.set(participant, { ...this.annotations.get(participant), ...options.annotations });
    for (const t of targets) {
      const key = `${participant}/${t.sub_component_type}`;
      this.pools.set(key, { ...this.pools.get(key)!, replicas: t.desired_replicas });
    }
    return { replicas, applied: participant };
  }
  waited: ParticipantId[] = [];
  async waitApplied(participant: ParticipantId) {
    this.waited.push(participant);
    await this.beforeWaitReturns?.(participant);
  }
}

export const request = (dgd: string, targets: Record<string, number>, blocking = false) =>
  parseScaleRequest({
    caller_namespace: "c",
    graph_deployment_name: dgd,
    k8s_namespace: "ns",
    blocking,
    target_replicas: Object.entries(targets).map(([sub_component_type, desired_replicas]) => ({
      sub_component_type,
      desired_replicas,
    })),
  });

export function fleet(): FakePort {
  const port = new FakePort();
  port.add("ns/a", "prefill", 2, 2); // 4
  port.add("ns/a", "decode", 2, 1); // 2
  port.add("ns/b", "prefill", 1, 1); // 1
  port.add("ns/b", "decode", 2, 2); // 4  → total 11
  return port;
}
