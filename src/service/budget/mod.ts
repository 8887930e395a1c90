/** GPU budget arbitration: pure core. */
export {
  arbitrate,
  type ArbitrationInput,
  type ArbitrationRequest,
  type Decision,
  type InFlightDecision,
} from "./arbitrate.ts";
export { bandBreach, type BudgetBounds, budgetBreachMessage, budgetEnabled, inBand } from "./band.ts";
export { type InFlightSpread, InFlightWrites, type IssuedWrites, NO_SPREAD } from "./in_flight.ts";
export { type Intent, IntentCache, isFresh, type RestoredIntents } from "./intents.ts";
export {
  type AcceptedPartner,
  boundedDesired,
  packPartners,
  partialReplicas,
  type PartnerBound,
  type PartnerBounds,
  type PartnerCandidate,
  partnerCandidates,
} from "./partners.ts";
export {
  makeSnapshot,
  type ParticipantId,
  participantId,
  type Pool,
  poolGpus,
  type PoolKey,
  poolKey,
  type Role,
  type Snapshot,
  totalGpus,
} from "./pool.ts";
export { type ParticipantWrite, planWrites, type WriteTarget } from "./writes.ts";
