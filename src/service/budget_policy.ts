/**
 * Our per-DGD policy under a GPU budget, pure. The requester's pause switch, stale guard and
 * annotation policy run BEFORE arbitration, so the budget arbitrates the targets the DGD's own
 * policy allows (and records those as the request's intents). Partners keep their own policy
 * too: a paused partner, or one whose annotations cannot be read, is never moved; a partner is
 * moved at most to its min/max. Stabilization and rate limits of a partner are not applied
 * again: its intent is the target its own request had after its own policy.
 */
import { Paused, PolicyAnnotationError, StaleRequest } from "../errors.ts";
import type { BudgetBounds, PartnerBound, PartnerBounds, Pool } from "./budget/mod.ts";
import type { ScaleRequest, TargetReplica } from "./contract.ts";
import {
  ANNOTATION,
  applyPolicy,
  type DgdPolicy,
  pausedMessage,
  type PolicyOutcome,
  readPolicy,
  type Recommendations,
} from "./dgd_policy.ts";
import { judgeRequest, type LastRequest, parseLastRequest, staleMessage } from "./stale_guard.ts";

/** What the budget planner knows of a participant's DGD (as its last snapshot saw it). */
export interface ParticipantState<V> {
  /** What Events are recorded about. */
  view: V;
  annotations: Readonly<Record<string, string>>;
  /** `{prefill: n, decode: m}` as the DGD shows them. */
  replicas: Record<string, number>;
}

export type RequesterGate =
  /** The request is a retry of the one the DGD's `last-request` annotation records. */
  | { kind: "duplicate"; last: LastRequest }
  /** Arbitrate `targets` (the request after the DGD's policy). */
  | { kind: "arbitrate"; targets: TargetReplica[]; outcomes: PolicyOutcome[] };

export interface GateInput {
  /** `namespace/name`. */
  dgd: string;
  annotations: Readonly<Record<string, string>>;
  replicas: Record<string, number>;
  targets: readonly TargetReplica[];
  /** With `--reject-stale` and a timestamped request. */
  me?: LastRequest;
  now: number;
  history: Recommendations;
}

/**
 * Pause → stale guard → min/max, stabilization, rate limits, in that order (as without a
 * budget). Throws `Paused`, `StaleRequest` (both carrying the DGD's replicas) or
 * `PolicyAnnotationError`.
 */
export function gateRequester(input: GateInput): RequesterGate {
  const policy = readPolicy(input.annotations, input.dgd);
  if (policy.paused) throw new Paused(pausedMessage(input.dgd), input.replicas);
  if (input.me) {
    const verdict = judgeRequest(parseLastRequest(input.annotations[ANNOTATION.lastRequest]), input.me);
    if (verdict.kind === "stale") {
      throw new StaleRequest(staleMessage(input.dgd, input.me, verdict.last), input.replicas);
    }
    if (verdict.kind === "duplicate") return { kind: "duplicate", last: verdict.last };
  }
  const outcomes = applyPolicy(
    policy,
    input.targets.map((t) => ({
      role: t.sub_component_type,
      // A role the DGD does not have fails at the write; the policy leaves it as asked.
      current: input.replicas[t.sub_component_type] ?? t.desired_replicas,
      requested: t.desired_replicas,
    })),
    { dgd: input.dgd, now: input.now, history: input.history },
  );
  return {
    kind: "arbitrate",
    targets: input.targets.map((t, i) => ({ ...t, desired_replicas: outcomes[i].desired })),
    outcomes,
  };
}

/** The request as the stale guard keeps it (`undefined`: not guarded). */
export function lastRequestOf(request: ScaleRequest, rejectStale: boolean): LastRequest | undefined {
  if (!rejectStale || request.timestamp === null) return undefined;
  return {
    timestamp: request.timestamp,
    caller: request.caller_namespace,
    targets: Object.fromEntries(
      request.target_replicas.map((t) => [t.sub_component_type, t.desired_replicas]),
    ),
  };
}

/** A partner pool's bound from its DGD's policy; `null` = its annotations cannot be read. */
export function partnerBound(policy: DgdPolicy | null, role: string): PartnerBound {
  if (policy === null || policy.paused) return { fixed: true };
  return { min: policy.min[role], max: policy.max[role] };
}

/**
 * Bounds for one decision: each participant's policy is read once, on first need (only pools
 * with a fresh opposite intent are asked about). A participant the planner knows nothing of is
 * fixed: moving a DGD whose policy was never seen could break it.
 */
export function partnerBounds(
  annotationsOf: (participant: string) => Readonly<Record<string, string>> | undefined,
): PartnerBounds {
  const policies = new Map<string, DgdPolicy | null>();
  return (pool: Pool) => {
    let policy = policies.get(pool.participant);
    if (policy === undefined) {
      const annotations = annotationsOf(pool.participant);
      policy = annotations === undefined ? null : _policyOf(annotations, pool.participant);
      policies.set(pool.participant, policy);
    }
    return partnerBound(policy, pool.role);
  };
}

/** `budget: approved, total 12 → 14 GPUs (max 16)`, for messages and Events. */
export function approvedVerdict(before: number, after: number, bounds: BudgetBounds): string {
  const limits = [
    ...(bounds.max >= 0 ? [`max ${bounds.max}`] : []),
    ...(bounds.min >= 0 ? [`min ${bounds.min}`] : []),
  ];
  return `budget: approved, total ${before} → ${after} GPUs${limits.length ? ` (${limits.join(", ")})` : ""}`;
}

/** `budget: rejected: GPU budget breach: …` (upstream's breach message). */
export function rejectedVerdict(message: string): string {
  return `budget: rejected: ${message}`;
}

/** `prefill 1 → 3, decode 2 → 2`: what the DGD showed and what it has (or would have) now. */
export function changesText(before: Record<string, number>, after: Record<string, number>): string {
  return Object.entries(after).map(([role, n]) => `${role} ${before[role] ?? "?"} → ${n}`).join(", ");
}

/**
 * Policies read, by annotations object: a DGD's copy (and its annotations) is replaced, never
 * changed in place, so one read serves every decision until the DGD changes.
 */
const _policies = new WeakMap<Readonly<Record<string, string>>, DgdPolicy | null>();

/** `_readOrNull`, once per annotations object (the name only shapes error texts, which are dropped). */
function _policyOf(annotations: Readonly<Record<string, string>>, dgd: string): DgdPolicy | null {
  let policy = _policies.get(annotations);
  if (policy === undefined) _policies.set(annotations, policy = _readOrNull(annotations, dgd));
  return policy;
}

function _readOrNull(annotations: Readonly<Record<string, string>>, dgd: string): DgdPolicy | null {
  try {
    return readPolicy(annotations, dgd);
  } catch (error) {
    if (error instanceof PolicyAnnotationError) return null;
    throw error;
  }
}
