/**
 * What a budgeted decision says: its success message, and its Kubernetes Events
 * (`--record-events`): one on the requester when something changed or its policy adjusted the
 * request, one on every partner the budget moved, and one on a refused request. Pure: the events
 * port does the I/O.
 */
import { BudgetBreach, errorText, NotReady, Paused, StaleRequest } from "../errors.ts";
import type { ParticipantId } from "./budget/mod.ts";
import { changesText, type ParticipantState } from "./budget_policy.ts";
import type { ScaleRequest } from "./contract.ts";
import { adjustmentText, type PolicyOutcome } from "./dgd_policy.ts";
import { scaledMessage } from "./messages.ts";
import type { LastRequest } from "./stale_guard.ts";
import type { DecisionEvents, DecisionReason } from "./scale_use_case.ts";

/** A partner the arbitration moved. */
export interface Moved {
  participant: ParticipantId;
  before: Record<string, number>;
  after: Record<string, number>;
}

/** What an applied decision changed, as its Events tell it. */
export interface AppliedDecision {
  replicas: Record<string, number>;
  before: Record<string, number>;
  outcomes: PolicyOutcome[];
  verdict: string;
  moved: Moved[];
}

/** The `success` message: upstream's text, then what the policy adjusted and partners that failed. */
export function successMessage(
  name: string,
  outcome: AppliedDecision & { partnerFailures: string[]; duplicate?: LastRequest },
  dryRun: boolean,
): string {
  if (outcome.duplicate) {
    return `${scaledMessage(name)} (a retry of the request applied at timestamp ` +
      `${outcome.duplicate.timestamp}; nothing written again)`;
  }
  const adjusted = adjustmentText(outcome.outcomes);
  const policy = adjusted ? `; adjusted by policy: ${adjusted}` : "";
  const failures = outcome.partnerFailures.length
    ? `; partner scaling failed (it will be retried by the partner's next request): ${
      outcome.partnerFailures.join("; ")
    }`
    : "";
  if (dryRun) {
    const partners = outcome.moved.map((m) =>
      `; would also move ${m.participant}: ${changesText(m.before, m.after)}`
    )
      .join("");
    return `Would scale ${name}: ${changesText(outcome.before, outcome.replicas)}${policy}; ` +
      `${outcome.verdict}${partners}${failures} (nothing persisted)`;
  }
  return scaledMessage(name) + policy + failures;
}

export function recordDecision<V>(
  events: DecisionEvents<V>,
  stateOf: (participant: ParticipantId) => ParticipantState<V> | undefined,
  participant: ParticipantId,
  state: ParticipantState<V>,
  request: ScaleRequest,
  decision: AppliedDecision,
): void {
  const adjusted = adjustmentText(decision.outcomes);
  const changed = Object.entries(decision.replicas).some(([role, n]) => decision.before[role] !== n);
  if (changed || adjusted) {
    events.emit({
      ref: refOf(participant),
      view: state.view,
      reason: adjusted ? "Clamped" : "Scaled",
      warning: false,
      note: `caller ${request.caller_namespace}: ${changesText(decision.before, decision.replicas)}${
        adjusted ? `; adjusted by policy: ${adjusted}` : ""
      }; ${decision.verdict}`,
    });
  }
  for (const m of decision.moved) {
    const partner = stateOf(m.participant);
    if (!partner) continue;
    events.emit({
      ref: refOf(m.participant),
      view: partner.view,
      reason: "Scaled",
      warning: false,
      note: `moved by the GPU budget for the request of caller ${request.caller_namespace} on ` +
        `${participant}: ${changesText(m.before, m.after)}; ${decision.verdict}`,
    });
  }
}

export function recordRefusal<V>(
  events: DecisionEvents<V>,
  participant: ParticipantId,
  state: ParticipantState<V>,
  request: ScaleRequest,
  error: unknown,
  verdict: string,
): void {
  const reason: DecisionReason = error instanceof Paused
    ? "Paused"
    : error instanceof StaleRequest
    ? "Stale"
    : error instanceof NotReady || error instanceof BudgetBreach
    ? "ScaleRejected"
    : "ScaleFailed";
  const asked = request.target_replicas.map((t) => `${t.sub_component_type} → ${t.desired_replicas}`)
    .join(", ");
  // A budget rejection's text is the verdict itself; say it once.
  const why = error instanceof BudgetBreach ? "" : `: ${errorText(error)}`;
  events.emit({
    ref: refOf(participant),
    view: state.view,
    reason,
    warning: reason !== "Paused",
    note: `caller ${request.caller_namespace}: ${asked} refused${why}; ${verdict}`,
  });
}

export function refOf(participant: ParticipantId): { namespace: string; name: string } {
  const slash = participant.indexOf("/");
  return { namespace: participant.slice(0, slash), name: participant.slice(slash + 1) };
}
