/**
 * Partner selection: which other pools' cached intents can be applied together
 * with a request so that the fleet total lands in band, and by how much (full or partial K).
 *
 * Everything here is O(n) over the snapshot plus O(k log k) for the k candidates.
 */
import { type BudgetBounds, inBand } from "./band.ts";
import { type IntentCache, isFresh } from "./intents.ts";
import type { ParticipantId, Pool, PoolKey, Snapshot } from "./pool.ts";

/**
 * What a partner's own policy allows the arbitration to do with one of its pools: `fixed` (its
 * DGD is paused, or its policy cannot be read) means never moved; `min`/`max` bound the count
 * it may be moved to. Absent = no bound (upstream's behaviour).
 */
export interface PartnerBound {
  readonly fixed?: boolean;
  readonly min?: number;
  readonly max?: number;
}

/** The bound of a candidate pool; must be pure (same pool → same answer within one decision). */
export type PartnerBounds = (pool: Pool) => PartnerBound | undefined;

/**
 * The count a partner may be moved to: its intent, shortened by its bounds (a move up stops at
 * its max, a move down at its min), or `null` when the bounds leave no move toward the intent.
 * Bounds only ever shorten a move: a partner is never moved past what it asked for, nor away
 * from it.
 */
export function boundedDesired(pool: Pool, desired: number, bound: PartnerBound | undefined): number | null {
  if (bound?.fixed) return null;
  const current = pool.replicas;
  let target = desired;
  if (desired > current && bound?.max !== undefined) target = Math.min(desired, bound.max);
  if (desired < current && bound?.min !== undefined) target = Math.max(desired, bound.min);
  return Math.sign(target - current) === Math.sign(desired - current) && target !== current ? target : null;
}

/** A pool whose fresh, unsatisfied intent moves GPUs the opposite way to the request. */
export interface PartnerCandidate {
  readonly pool: Pool;
  /** The intent's `last_desired`, clamped into the partner's own bounds. */
  readonly desired: number;
  /** `(desired − current) × gpu`, never 0, sign opposite to the request's net delta. */
  readonly gpuDelta: number;
}

/** A candidate taken into the write set at `replicas` (its `last_desired`, or a partial K). */
export interface AcceptedPartner {
  readonly pool: Pool;
  /** The intent's `last_desired` (what a full acceptance would write). */
  readonly desired: number;
  /** What will be written: `desired`, or a partial K between current and `desired`. */
  readonly replicas: number;
  readonly gpuDelta: number;
}

export interface PackingInput {
  /** Candidates in the order `partnerCandidates` returns them. */
  readonly candidates: readonly PartnerCandidate[];
  /** Snapshot total with the request's desired counts substituted. */
  readonly standaloneTotal: number;
  /** The request's net GPU delta (≠ 0, or there would be no candidates). */
  readonly netDelta: number;
  /** `T = tol(changing ∪ candidates)`, computed once by the caller. */
  readonly tolerance: number;
  readonly bounds: BudgetBounds;
}

export interface Packing {
  /** Empty when no packing lands in band. */
  readonly partners: AcceptedPartner[];
  /** Fleet total with the request and the partners applied. */
  readonly total: number;
}

/**
 * Fresh (`now − last_seen_at ≤ ttl`), unsatisfied (`last_desired ≠ current`) intents of pools
 * outside the request, with gpu > 0 and a GPU delta of strictly opposite sign to `netDelta`.
 * Same-participant candidates are listed first (snapshot order within each group), then the
 * whole list is STABLY sorted by |delta| ascending, so the participant preference only breaks
 * ties (kept literal). With `bounds`, a fixed pool is no candidate and an intent beyond the
 * pool's min/max is taken as the bound (so a partial K lies within them too).
 */
export function partnerCandidates(
  snapshot: Snapshot,
  requestKeys: ReadonlySet<PoolKey>,
  participant: ParticipantId,
  netDelta: number,
  intents: IntentCache,
  now: number,
  ttlSeconds: number,
  bounds?: PartnerBounds,
): PartnerCandidate[] {
  if (netDelta === 0) return [];
  const sameParticipant: PartnerCandidate[] = [];
  const otherParticipants: PartnerCandidate[] = [];
  const against = -Math.sign(netDelta);
  // One pass over every pool on every decision: the cheapest tests come first.
  for (const [key, pool] of snapshot.pools) {
    if (pool.gpuPerReplica <= 0) continue;
    const intent = intents.get(key);
    if (intent === undefined || intent.lastDesired === pool.replicas) continue;
    // Bounds only shorten a move, never turn it: a pool moving the request's way is no
    // candidate whatever they say, so its policy is not asked for (most open intents, at scale).
    if (Math.sign(intent.lastDesired - pool.replicas) !== against) continue;
    if (!isFresh(intent, now, ttlSeconds) || requestKeys.has(key)) continue;
    const desired = bounds ? boundedDesired(pool, intent.lastDesired, bounds(pool)) : intent.lastDesired;
    if (desired === null) continue;
    const gpuDelta = (desired - pool.replicas) * pool.gpuPerReplica;
    if (Math.sign(gpuDelta) !== against) continue;
    const candidate = { pool, desired, gpuDelta };
    (pool.participant === participant ? sameParticipant : otherParticipants).push(candidate);
  }
  // Array.prototype.sort is stable (ES2019).
  return sameParticipant.concat(otherParticipants).sort((a, b) =>
    Math.abs(a.gpuDelta) - Math.abs(b.gpuDelta)
  );
}

/**
 * Greedy packing: walk the candidates, taking each fully while the total is in band or still
 * on the side the request started from; at the first one that would cross the band, take a
 * partial K for it and stop. If the result is out of band, retry the last accepted partner as a
 * partial against the total without it; if still out of band, no partner is used at all.
 */
export function packPartners(input: PackingInput): Packing {
  const { candidates, standaloneTotal, netDelta, tolerance, bounds } = input;
  const partners: AcceptedPartner[] = [];
  let total = standaloneTotal;
  for (const candidate of candidates) {
    const full = total + candidate.gpuDelta;
    if (inBand(full, tolerance, bounds) || _stillOnStartingSide(full, netDelta, tolerance, bounds)) {
      partners.push(_accept(candidate, candidate.desired));
      total = full;
      continue;
    }
    const partial = partialReplicas(candidate, total, tolerance, bounds);
    if (partial !== null) {
      const accepted = _accept(candidate, partial);
      partners.push(accepted);
      total += accepted.gpuDelta;
    }
    break;
  }
  if (partners.length > 0 && !inBand(total, tolerance, bounds)) {
    const last = partners[partners.length - 1];
    const baseline = total - last.gpuDelta;
    const partial = partialReplicas(last, baseline, tolerance, bounds);
    if (partial !== null) {
      partners[partners.length - 1] = _accept(last, partial);
      total = baseline + partners[partners.length - 1].gpuDelta;
    }
    if (!inBand(total, tolerance, bounds)) return { partners: [], total: standaloneTotal };
  }
  return { partners, total };
}

/**
 * Partial K for a candidate against `baseline` (the total with the candidate at
 * its current count). Returns `null` when no K strictly between current and target (or the
 * target itself when the relevant bound is off) exists.
 */
export function partialReplicas(
  candidate: Pick<PartnerCandidate, "pool" | "desired">,
  baseline: number,
  tolerance: number,
  bounds: BudgetBounds,
): number | null {
  const current = candidate.pool.replicas;
  const target = candidate.desired;
  const gpu = candidate.pool.gpuPerReplica;
  if (target > current) {
    if (bounds.max < 0) return target;
    const headroom = bounds.max - baseline;
    if (headroom <= 0) return null;
    const k = Math.min(target, current + Math.floor(headroom / gpu));
    return k > current ? k : null;
  }
  if (target < current) {
    if (bounds.min < 0) return target;
    const shortfall = (bounds.min - tolerance) - baseline;
    if (shortfall > 0) return null;
    const k = Math.max(target, current + Math.ceil(shortfall / gpu));
    return k < current ? k : null;
  }
  return null;
}

/**
 * Rule 2: even with the candidate, the total is still past the bound the request pushes
 * against (over the ceiling for a scale-up request, under the floor for a scale-down).
 */
function _stillOnStartingSide(
  full: number,
  netDelta: number,
  tolerance: number,
  bounds: BudgetBounds,
): boolean {
  return (netDelta > 0 && bounds.max >= 0 && full > bounds.max) ||
    (netDelta < 0 && bounds.min >= 0 && full < bounds.min - tolerance);
}

function _accept(candidate: Pick<PartnerCandidate, "pool" | "desired">, replicas: number): AcceptedPartner {
  const { pool, desired } = candidate;
  return { pool, desired, replicas, gpuDelta: (replicas - pool.replicas) * pool.gpuPerReplica };
}
