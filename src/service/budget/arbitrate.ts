/**
 * Budget arbitration, as a pure decision: no I/O, the clock is a parameter. The
 * caller holds whatever lock serialises requests, builds the snapshot, calls `arbitrate`, then
 * applies `writes` in order.
 *
 * The one side effect is on the intent cache passed in: the request's intents are recorded
 * before deciding (so a rejected request still leaves them behind, as the spec requires) and
 * expired entries are swept now and then. Partner selection never modifies intents.
 *
 * Where the spec is ambiguous, this implementation chose as follows. The overall rule: it
 * keeps the hard ceiling strict and never leaves the fleet half-applied (a packing either
 * lands the whole write set in band or is dropped entirely).
 *
 * 1. Clock: `now`, `ttl` and `last_seen_at` are in SECONDS (the unit of
 *    `intent_cache_ttl_seconds`). Fresh means `now − last_seen_at ≤ ttl`, inclusive.
 * 2. A request naming the same role twice: the last target wins for the intent and the delta;
 *    every target is still written, as given (the connector resolves them).
 * 3. Targets whose pool is not in the snapshot are skipped for intents, deltas and tolerance
 *    but stay in the request's own write (the connector reports an unknown role). The
 *    snapshot must contain only pools with KNOWN GPU counts: failing closed when a count
 *    cannot be determined is the caller's job, before calling.
 * 4. Pools with 0 GPUs per replica: ignored by totals and deltas, never partners, and their
 *    moves do not make a request `internally_paired` (a free pool moving up does not pair
 *    with a GPU pool moving down, so it earns no floor tolerance). Their intents are recorded.
 * 5. Candidate order: same-participant first, cross-participant next, each group in snapshot
 *    order, then a STABLE sort by |delta| ascending (spec literal; not PR #14036/#14038).
 * 6. Rule 3 computes K against the running total with the candidate at its current count
 *    (which is that running total itself). `K ≠ current` always holds for a valid K.
 * 7. Post-loop repair: "out of band" is `in_band(total, T)`; the last accepted partner (full
 *    or partial) is recomputed against the total without it; when no valid K exists its
 *    previous count is kept, and the final check then drops the whole partner set if the total
 *    is still out of band. An approved partner set therefore always satisfies the ceiling
 *    strictly and the floor within T.
 * 8. A partner set may use tolerance T on the floor even when the request itself is not
 *    internally paired: the pairing is what makes the transfer (spec literal). The ceiling is
 *    never relaxed.
 * 9. Apply order: writes sorted by net GPU delta ascending with a stable sort; on ties the
 *    request's own participant comes first, then partners in acceptance order. A partner in
 *    the request's own DGD joins the request's write (one write per participant), and that
 *    write's delta is the sum. Applying scale-downs first keeps every intermediate total at or
 *    below max(initial, final), so an in-band fleet never crosses the ceiling mid-apply.
 * 10. Budget off (`max < 0` and `min < 0`): approve standalone without looking at partners;
 *    intents are still recorded.
 * 11. Literal consequences kept: packing takes EVERY candidate that keeps the total in band
 *    (not just enough to fit), so one request can carry many partners; a request whose
 *    standalone total is out of band is rejected even when it moves toward the band (e.g. a
 *    scale-down while the fleet is over a lowered ceiling) unless partners fix it; a request
 *    with no known pool (net delta 0) is judged on the current fleet total. Bounds are
 *    validated by configuration, so `min > max` is not handled here beyond the
 *    ceiling being checked first.
 * 12. Writes in flight (`inFlight`; src/service/budget/in_flight.ts): the snapshot counts them
 *    as landed. An approval (standalone or with partners) stands only when its total is in band
 *    at both ends of their spread, so no outcome of them can breach the band; otherwise the
 *    decision is `settle`: the caller decides again as the writes in flight are answered (with
 *    none left, the decision is never `settle`). A rejection writes nothing, so it is judged on
 *    the fleet with them landed (the one outcome that is not a failure): should one of them
 *    fail, the rejected planner's next request sees that.
 */
import { bandBreach, type BudgetBounds, budgetBreachMessage, budgetEnabled, inBand } from "./band.ts";
import { type InFlightSpread, NO_SPREAD } from "./in_flight.ts";
import type { IntentCache } from "./intents.ts";
import { packPartners, type PartnerBounds, partnerCandidates } from "./partners.ts";
import { type ParticipantId, type Pool, type PoolKey, poolKey, type Snapshot } from "./pool.ts";
import { type ParticipantWrite, planWrites, type WriteTarget } from "./writes.ts";

/** What a planner asked for, for one participant DGD. */
export interface ArbitrationRequest {
  readonly participant: ParticipantId;
  readonly targets: readonly WriteTarget[];
}

export interface ArbitrationInput {
  readonly snapshot: Snapshot;
  readonly request: ArbitrationRequest;
  /** Mutated: the request's intents are recorded into it. */
  readonly intents: IntentCache;
  readonly bounds: BudgetBounds;
  /** Intent freshness window, seconds. */
  readonly ttl: number;
  /** Current time, seconds (same clock as the intents' `last_seen_at`). */
  readonly now: number;
  /** Partners' own policy (pause, min/max); absent = every partner may move to its intent. */
  readonly partnerBounds?: PartnerBounds;
  /** What writes in flight may still change in the snapshot's total; absent = nothing in flight. */
  readonly inFlight?: InFlightSpread;
}

export type Decision =
  | {
    readonly kind: "approve";
    /** Apply in this order; the request's own participant is always present. */
    readonly writes: ParticipantWrite[];
    /** True when no partner is used. */
    readonly standalone: boolean;
    /** Fleet total once every write is applied. */
    readonly totalGpus: number;
  }
  | {
    readonly kind: "reject";
    /** `GPU budget breach: <reason>; no feasible pair packing`. */
    readonly message: string;
    /** The standalone total that breached the band. */
    readonly totalGpus: number;
  };

/** With writes in flight, `settle`: their outcome decides; wait for them and arbitrate again. */
export type InFlightDecision = Decision | { readonly kind: "settle" };

const SETTLE: InFlightDecision = Object.freeze({ kind: "settle" });

export function arbitrate(input: ArbitrationInput & { readonly inFlight?: undefined }): Decision;
export function arbitrate(input: ArbitrationInput): InFlightDecision;
export function arbitrate(input: ArbitrationInput): InFlightDecision {
  const { snapshot, request, intents, bounds, ttl, now } = input;
  const requestPools = _requestPools(snapshot, request);
  for (const [key, { desired }] of requestPools) intents.record(key, desired, now);
  intents.pruneIfDue(now, ttl);

  const shape = _requestShape(requestPools.values());
  const standaloneTotal = snapshot.totalGpus + shape.netDelta;
  const approveStandalone = (): InFlightDecision => ({
    kind: "approve",
    writes: planWrites(request.participant, request.targets, shape.netDelta, []),
    standalone: true,
    totalGpus: standaloneTotal,
  });
  if (!budgetEnabled(bounds)) return approveStandalone();

  const candidates = partnerCandidates(
    snapshot,
    new Set(requestPools.keys()),
    request.participant,
    shape.netDelta,
    intents,
    now,
    ttl,
    input.partnerBounds,
  );
  let tolerance = shape.changingTolerance;
  for (const candidate of candidates) tolerance = Math.max(tolerance, candidate.pool.gpuPerReplica);
  const packing = packPartners({
    candidates,
    standaloneTotal,
    netDelta: shape.netDelta,
    tolerance,
    bounds,
  });
  const spread = input.inFlight ?? NO_SPREAD;
  /** `total` stays in band whichever writes in flight fail. */
  const holds = (total: number, tol: number): boolean =>
    inBand(total + spread.raise, tol, bounds) && inBand(total - spread.lower, tol, bounds);
  if (packing.partners.length > 0) {
    if (!holds(packing.total, tolerance)) return SETTLE;
    return {
      kind: "approve",
      writes: planWrites(request.participant, request.targets, shape.netDelta, packing.partners),
      standalone: false,
      totalGpus: packing.total,
    };
  }

  const standaloneTolerance = shape.internallyPaired ? shape.changingTolerance : 0;
  const breach = bandBreach(standaloneTotal, standaloneTolerance, bounds);
  if (breach === null) return holds(standaloneTotal, standaloneTolerance) ? approveStandalone() : SETTLE;
  return { kind: "reject", message: budgetBreachMessage(breach), totalGpus: standaloneTotal };
}

interface _RequestPool {
  readonly pool: Pool;
  readonly desired: number;
}

interface _RequestShape {
  /** Σ (desired − current) × gpu over the request's known pools with gpu > 0. */
  readonly netDelta: number;
  /** At least one GPU pool moves up and one moves down. */
  readonly internallyPaired: boolean;
  /** `tol(changing)`: the largest gpu_per_replica among the request's moving GPU pools. */
  readonly changingTolerance: number;
}

/** The request's targets whose pool is in the snapshot, by key (last target per role wins). */
function _requestPools(snapshot: Snapshot, request: ArbitrationRequest): Map<PoolKey, _RequestPool> {
  const pools = new Map<PoolKey, _RequestPool>();
  for (const target of request.targets) {
    const key = poolKey(request.participant, target.role);
    const pool = snapshot.pools.get(key);
    if (pool !== undefined) pools.set(key, { pool, desired: target.desired });
  }
  return pools;
}

function _requestShape(requestPools: Iterable<_RequestPool>): _RequestShape {
  let netDelta = 0;
  let movesUp = false;
  let movesDown = false;
  let changingTolerance = 0;
  for (const { pool, desired } of requestPools) {
    if (pool.gpuPerReplica <= 0 || desired === pool.replicas) continue;
    netDelta += (desired - pool.replicas) * pool.gpuPerReplica;
    if (desired > pool.replicas) movesUp = true;
    else movesDown = true;
    changingTolerance = Math.max(changingTolerance, pool.gpuPerReplica);
  }
  return { netDelta, internallyPaired: movesUp && movesDown, changingTolerance };
}
