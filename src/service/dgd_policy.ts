/**
 * Per-DGD scaling policy, read from annotations on the DGD (ours, opt-in: a DGD without any of
 * them is scaled exactly as upstream scales it). Pure: the clock is passed in.
 *
 * Order of the rules, per role: the request → min/max → scale-down stabilization (HPA: the
 * highest recommendation within the window wins, never above the current count) → rate limit
 * (at most N replicas more or fewer per request) → min/max again, so that the bounds always
 * hold even when the current count lies outside them.
 */
import { PolicyAnnotationError } from "../errors.ts";

export const POLICY_PREFIX = "globalplanner.dynamo.example/";
export const ANNOTATION = {
  paused: `${POLICY_PREFIX}paused`,
  stabilization: `${POLICY_PREFIX}scale-down-stabilization-seconds`,
  scaleUpLimit: `${POLICY_PREFIX}scale-up-limit`,
  scaleDownLimit: `${POLICY_PREFIX}scale-down-limit`,
  /** Written by us with each applied request (`--reject-stale`). */
  lastRequest: `${POLICY_PREFIX}last-request`,
} as const;
export const minAnnotation = (role: string): string => `${POLICY_PREFIX}${role}-min-replicas`;
export const maxAnnotation = (role: string): string => `${POLICY_PREFIX}${role}-max-replicas`;

/** The `rejected` message for a paused DGD (KEDA's paused annotation, ours). */
export function pausedMessage(dgd: string): string {
  return `Scaling of DynamoGraphDeployment '${dgd}' is paused (annotation ${ANNOTATION.paused}: "true"); ` +
    "nothing was changed";
}

/** Longest stabilization window accepted (HPA's own limit is one hour). */
export const MAX_STABILIZATION_SECONDS = 3600;
/** Recommendations kept per DGD role (a planner asks every few seconds; the window is bounded). */
export const MAX_RECOMMENDATIONS = 4096;

export interface DgdPolicy {
  paused: boolean;
  min: Record<string, number>;
  max: Record<string, number>;
  stabilizationSeconds: number;
  scaleUpLimit?: number;
  scaleDownLimit?: number;
}

export const NO_POLICY: DgdPolicy = { paused: false, min: {}, max: {}, stabilizationSeconds: 0 };

/** Reads the policy annotations; a malformed value fails the request instead of being ignored. */
export function readPolicy(annotations: Readonly<Record<string, string>>, dgd: string): DgdPolicy {
  const get = (key: string) => Object.hasOwn(annotations, key) ? annotations[key] : undefined;
  const count = (key: string, max = Number.MAX_SAFE_INTEGER) => {
    const raw = get(key);
    if (raw === undefined) return undefined;
    const text = raw.trim();
    if (!/^\d+$/.test(text) || Number(text) > max) {
      throw new PolicyAnnotationError(
        `DynamoGraphDeployment '${dgd}' annotation ${key}: expected a whole number ` +
          `${max < Number.MAX_SAFE_INTEGER ? `from 0 to ${max}` : ">= 0"}, got ${JSON.stringify(raw)}; ` +
          "nothing was changed",
      );
    }
    return Number(text);
  };
  const pausedRaw = get(ANNOTATION.paused)?.trim().toLowerCase();
  if (pausedRaw !== undefined && pausedRaw !== "true" && pausedRaw !== "false") {
    throw new PolicyAnnotationError(
      `DynamoGraphDeployment '${dgd}' annotation ${ANNOTATION.paused}: expected "true" or "false", got ` +
        `${JSON.stringify(get(ANNOTATION.paused))}; nothing was changed`,
    );
  }
  const policy: DgdPolicy = {
    paused: pausedRaw === "true",
    min: {},
    max: {},
    stabilizationSeconds: count(ANNOTATION.stabilization, MAX_STABILIZATION_SECONDS) ?? 0,
    scaleUpLimit: count(ANNOTATION.scaleUpLimit),
    scaleDownLimit: count(ANNOTATION.scaleDownLimit),
  };
  for (const role of ["prefill", "decode"]) {
    const min = count(minAnnotation(role));
    const max = count(maxAnnotation(role));
    if (min !== undefined) policy.min[role] = min;
    if (max !== undefined) policy.max[role] = max;
    if (min !== undefined && max !== undefined && min > max) {
      throw new PolicyAnnotationError(
        `DynamoGraphDeployment '${dgd}' annotations: ${minAnnotation(role)} (${min}) exceeds ` +
          `${maxAnnotation(role)} (${max}); nothing was changed`,
      );
    }
  }
  return policy;
}

/**
 * Scale-down recommendations per DGD role, with the time each was made (seconds). Bounded: old
 * entries leave on every access, and each key keeps at most `MAX_RECOMMENDATIONS`.
 */
export class Recommendations {
  #byKey = new Map<string, { at: number; value: number }[]>();

  /**
   * Records `value` at `now` and returns the highest recommendation since `now - window`. A key
   * seen for the first time starts with `current` as a recommendation made now (as the HPA
   * starts), so a fresh process does not scale down at once.
   */
  highest(key: string, value: number, now: number, windowSeconds: number, current = value): number {
    const since = now - windowSeconds;
    const known = this.#byKey.get(key);
    const kept = known ? known.filter((r) => r.at > since) : [{ at: now, value: current }];
    kept.push({ at: now, value });
    if (kept.length > MAX_RECOMMENDATIONS) kept.splice(0, kept.length - MAX_RECOMMENDATIONS);
    this.#byKey.set(key, kept);
    return Math.max(...kept.map((r) => r.value));
  }

  /** Keys currently holding recommendations (for tests). */
  get size(): number {
    return this.#byKey.size;
  }
}

export interface PolicyTarget {
  role: string;
  current: number;
  requested: number;
}

export interface PolicyOutcome extends PolicyTarget {
  desired: number;
  /** Why `desired` differs from `requested` (empty when it does not). */
  why: string[];
}

/** Applies min/max, stabilization and rate limits to one DGD's targets. */
export function applyPolicy(
  policy: DgdPolicy,
  targets: readonly PolicyTarget[],
  context: { dgd: string; now: number; history: Recommendations },
): PolicyOutcome[] {
  return targets.map((target) => {
    const why: string[] = [];
    const { role, current, requested } = target;
    const min = policy.min[role];
    const max = policy.max[role];
    const bound = (value: number) => {
      if (max !== undefined && value > max) {
        why.push(`${maxAnnotation(role)} ${max}`);
        return max;
      }
      if (min !== undefined && value < min) {
        why.push(`${minAnnotation(role)} ${min}`);
        return min;
      }
      return value;
    };
    let desired = bound(requested);
    if (policy.stabilizationSeconds > 0) {
      const highest = context.history.highest(
        `${context.dgd}/${role}`,
        desired,
        context.now,
        policy.stabilizationSeconds,
        current,
      );
      const stabilized = Math.min(current, highest);
      if (desired < current && stabilized > desired) {
        why.push(
          `scale-down stabilization: highest recommendation in the last ${policy.stabilizationSeconds} s is ${highest}`,
        );
        desired = stabilized;
      }
    }
    if (policy.scaleUpLimit !== undefined && desired > current + policy.scaleUpLimit) {
      desired = current + policy.scaleUpLimit;
      why.push(`${ANNOTATION.scaleUpLimit} ${policy.scaleUpLimit} per request`);
    }
    if (policy.scaleDownLimit !== undefined && desired < current - policy.scaleDownLimit) {
      desired = current - policy.scaleDownLimit;
      why.push(`${ANNOTATION.scaleDownLimit} ${policy.scaleDownLimit} per request`);
    }
    desired = bound(desired);
    return { ...target, desired, why: desired === requested ? [] : _unique(why) };
  });
}

/** `prefill 5 → 3 (globalplanner…/prefill-max-replicas 3)`, for every adjusted target. */
export function adjustmentText(outcomes: readonly PolicyOutcome[]): string | undefined {
  const adjusted = outcomes.filter((o) => o.desired !== o.requested);
  if (adjusted.length === 0) return undefined;
  return adjusted.map((o) => `${o.role} ${o.requested} → ${o.desired} (${o.why.join("; ")})`).join(", ");
}

function _unique(items: string[]): string[] {
  return [...new Set(items)];
}
