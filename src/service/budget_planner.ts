/**
 * Scale requests under a GPU budget: observe the fleet from the port's cache, run the
 * requester's own policy (pause, stale guard, annotations; src/service/budget_policy.ts),
 * arbitrate the adjusted targets (pure, partners bounded by their own policy), then apply the
 * approved writes in order — scale-downs first — through the port. Decisions are serialized
 * (every pool shares the one total, so any two budgeted requests overlap), their writes are not:
 * a decision's writes leave the queue once issued, and later decisions count them as landed; an
 * approval must hold whichever way they end (src/service/budget/in_flight.ts), else it is decided
 * again once the next of them is answered, as is one that would move a DGD being written. While
 * it waits it steps aside, so the decisions queued behind it are not held up, a bounded number of
 * times (`STEP_ASIDE_TURNS`), then holds its turn. Requests for one DGD run one after another,
 * writes included. Blocking waits happen after, so they delay nobody.
 *
 * Failures while applying (src/service/budget_writes.ts): the first write failing answers for
 * the whole request (`error`, or `rejected` when not Ready) and nothing else is attempted; the
 * requester's own write failing after partners were applied is also an `error` (the partners
 * only moved toward their own fresh requests); a partner failing later is logged and named in
 * the success message — never hidden.
 *
 * A dry run arbitrates on a copy of the intents (a dry run must not change later decisions),
 * sends every write with server-side dry run and records no Event. */
import { BudgetBreach, TargetResolutionError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import { abortable } from "../timing.ts";
import {
  arbitrate,
  type BudgetBounds,
  type InFlightDecision,
  InFlightWrites,
  IntentCache,
  type ParticipantId,
  participantId,
  type ParticipantWrite,
  type Snapshot,
} from "./budget/mod.ts";
import {
  approvedVerdict,
  gateRequester,
  lastRequestOf,
  type ParticipantState,
  partnerBounds,
  rejectedVerdict,
  type RequesterGate,
} from "./budget_policy.ts";
import {
  type ScaleRequest,
  type ScaleResponse,
  scaleResponse,
  tagReason,
  type TargetReplica,
} from "./contract.ts";
import { adjustmentText, Recommendations } from "./dgd_policy.ts";
import { type AppliedDecision, recordDecision, recordRefusal, successMessage } from "./budget_records.ts";
import type { Scaler } from "./handlers.ts";
import { DecisionTimer, type DecisionTiming } from "./decision_timer.ts";
import type { DecisionEvents, WriteOptions } from "./scale_use_case.ts";
import { applyWrites, type WritesApplied } from "./budget_writes.ts";
import { KeyedSerializer } from "./serial.ts";
import { type LastRequest, RecentAnswers, requestKey } from "./stale_guard.ts";

export type { ParticipantState };

/** What the planner needs from Kubernetes; the core never sees HTTP. */
export interface BudgetPort<Applied = unknown, V = unknown> {
  /** All known pools (cache + participants that joined by request), failing closed on unknown GPU counts. */
  snapshot(
    requester: ParticipantId,
    targets: readonly TargetReplica[],
    signal: AbortSignal,
  ): Promise<Snapshot>;
  /** A participant's DGD as the last snapshot counted it; `undefined` when not known. */
  state(participant: ParticipantId): ParticipantState<V> | undefined;
  /** One write call for one participant; resolves to the replicas map read back. */
  apply(
    participant: ParticipantId,
    targets: readonly TargetReplica[],
    signal: AbortSignal,
    options?: WriteOptions,
  ): Promise<{ replicas: Record<string, number>; applied: Applied }>;
  waitApplied(participant: ParticipantId, applied: Applied, signal: AbortSignal): Promise<void>;
}

export interface BudgetPlannerOptions<V = unknown> {
  port: BudgetPort<unknown, V>;
  bounds: BudgetBounds;
  intentTtlSeconds: number;
  logger: Logger;
  /** Seconds (the unit of the intent TTL). */
  clock?: () => number;
  /** `--reject-stale`: refuse requests older than the DGD's last applied one. */
  rejectStale?: boolean;
  /** `--dry-run`: arbitrate, send every write with server-side dry run, record no intent. */
  dryRun?: boolean;
  /** `--record-events`. */
  events?: DecisionEvents<V>;
  /** How long each `scale` took to decide (receipt → first write issued, or answer known). */
  decisions?: DecisionTiming;
  /** Each arbitration's decision, and the count of writes in flight as it changes (metrics). */
  observe?: {
    decision?: (kind: InFlightDecision["kind"]) => void;
    writesInFlight?: (writes: number) => void;
  };
}

interface Outcome extends AppliedDecision, WritesApplied {
  duplicate?: LastRequest;
}

/**
 * A decision's turn ends with its outcome, with its write issued and still to be answered, or
 * with the decision left open by writes in flight: `again` resolves when it is worth another turn.
 */
type Turn = Outcome | { writing: () => Promise<Outcome> } | { again: Promise<void> };

/**
 * Turns a decision left open by writes in flight gives up before it holds its turn until it is
 * decided. Stepping aside lets the decisions queued behind it through; the bound keeps a busy
 * fleet from overtaking one request forever (while held, no write can start, so every answer
 * narrows what is open and the last one closes it).
 */
export const STEP_ASIDE_TURNS = 3;

export class BudgetPlanner<V = unknown> implements Scaler {
  #options: BudgetPlannerOptions<V>;
  #intents = new IntentCache();
  #history = new Recommendations();
  #recent = new RecentAnswers<ScaleResponse>();
  #tail: Promise<unknown> = Promise.resolve();
  #perDgd = new KeyedSerializer();
  #inFlight: InFlightWrites;

  constructor(options: BudgetPlannerOptions<V>) {
    this.#options = options;
    this.#inFlight = new InFlightWrites(options.observe?.writesInFlight);
  }

  get intents(): IntentCache {
    return this.#intents;
  }

  /** Writes issued whose answer is still awaited (for tests and metrics). */
  get writesInFlight(): number {
    return this.#inFlight.size;
  }

  async scale(request: ScaleRequest, signal: AbortSignal): Promise<ScaleResponse> {
    if (request.target_replicas.length === 0) {
      throw new TargetResolutionError("target_replicas cannot be empty");
    }
    const { dryRun } = this.#options;
    const participant = participantId(request.k8s_namespace, request.graph_deployment_name);
    const me = lastRequestOf(request, this.#options.rejectStale === true);
    const key = me ? requestKey(participant, me) : undefined;
    const timer = new DecisionTimer(this.#options.decisions ?? {});
    let outcome;
    try {
      // One DGD's requests in arrival order, each with its write answered: a decision never runs
      // while its own DGD's earlier write is still in flight.
      outcome = await this.#perDgd.run(participant, async () => {
        for (let turns = 1;; turns++) {
          const hold = turns > STEP_ASIDE_TURNS;
          const turn = await this.#serialized(async (): Promise<Turn | ScaleResponse> => {
            timer.turn();
            // Inside the decision's turn, so a retry racing its original waits for the first answer.
            const first = key ? this.#recent.get(key, this.#now()) : undefined;
            if (first) return first;
            return await this.#decide(participant, request, me, signal, timer, hold);
          });
          if ("again" in turn) {
            await abortable(turn.again, signal);
            continue;
          }
          return "writing" in turn ? await turn.writing() : turn;
        }
      });
    } finally {
      // Every answer decided without a write (rejections, duplicates, failures) ends here.
      timer.decided();
    }
    // An identical retry: the first answer, without a second write.
    if ("status" in outcome) return tagReason({ ...outcome }, "duplicate");
    if (request.blocking && !dryRun) {
      await Promise.all(
        outcome.applied.map(({ participant, applied }) =>
          this.#options.port.waitApplied(participant, applied, signal)
        ),
      );
    }
    const response = scaleResponse(
      "success",
      successMessage(request.graph_deployment_name, outcome, dryRun === true),
      outcome.replicas,
    );
    if (outcome.duplicate) tagReason(response, "duplicate");
    if (key && !dryRun) this.#recent.put(key, response, this.#now());
    return response;
  }

  /**
   * Runs in the decision's turn; an approval returns its writes, issued once the turn is over
   * (they stay counted as in flight until answered). Left open by writes in flight, it steps
   * aside (`again`) unless told to `hold` its turn.
   */
  async #decide(
    participant: ParticipantId,
    request: ScaleRequest,
    me: LastRequest | undefined,
    signal: AbortSignal,
    timer: DecisionTimer,
    hold: boolean,
  ): Promise<Turn> {
    const { port, dryRun } = this.#options;
    if (this.#inFlight.has(participant)) {
      // Moved as another request's partner: read it once that write is answered.
      this.#options.logger.debug("waiting for the write in flight of this DGD", { participant });
      if (!hold) return { again: this.#inFlight.settledOf(participant) };
      await abortable(this.#inFlight.settledOf(participant), signal);
    }
    const snapshot = await port.snapshot(participant, request.target_replicas, signal);
    const state = port.state(participant);
    if (!state) throw new Error(`budget port knows no state of ${participant} after its snapshot`);
    let verdict = "budget: not consulted";
    const refused = (error: unknown): never => {
      this.#recordRefusal(participant, state, request, error, verdict);
      throw error;
    };
    let gate: RequesterGate;
    let counted: Snapshot;
    let writes: ParticipantWrite[];
    try {
      gate = gateRequester({
        dgd: participant,
        annotations: state.annotations,
        replicas: state.replicas,
        targets: request.target_replicas,
        me,
        now: this.#now(),
        history: this.#history,
      });
      if (gate.kind === "duplicate") {
        return {
          applied: [],
          replicas: state.replicas,
          partnerFailures: [],
          before: state.replicas,
          outcomes: [],
          verdict,
          moved: [],
          duplicate: gate.last,
        };
      }
      let view = this.#arbitrate(participant, gate.targets, snapshot);
      while (view.decision.kind === "settle") {
        if (this.#inFlight.size === 0) {
          throw new Error("budget decision still unsettled with no write in flight");
        }
        if (!hold) return { again: this.#inFlight.changed() };
        // Holding the turn: no write can start meanwhile, so this ends with the last answer.
        await abortable(this.#inFlight.changed(), signal);
        view = this.#arbitrate(
          participant,
          gate.targets,
          await port.snapshot(participant, request.target_replicas, signal),
        );
      }
      const { decision } = view;
      if (decision.kind === "reject") {
        verdict = rejectedVerdict(decision.message);
        const adjusted = adjustmentText(gate.outcomes);
        throw new BudgetBreach(decision.message + (adjusted ? `; adjusted by policy: ${adjusted}` : ""));
      }
      verdict = approvedVerdict(view.snapshot.totalGpus, decision.totalGpus, this.#options.bounds);
      counted = view.snapshot;
      writes = decision.writes;
    } catch (error) {
      return refused(error);
    }
    const own = gate.targets;
    // A dry run changes nothing, so it counts for no later decision.
    const flight = dryRun ? undefined : this.#inFlight.begin(counted, writes);
    const apply = async (): Promise<Outcome> => {
      try {
        const outcome = await applyWrites(this.#options, { participant, own, me, writes, signal, flight });
        const result = { ...outcome, before: state.replicas, outcomes: gate.outcomes, verdict };
        this.#recordDecision(participant, state, request, result);
        return result;
      } catch (error) {
        return refused(error);
      } finally {
        flight?.end();
      }
    };
    timer.decided();
    return { writing: apply };
  }

  /** Arbitrates on the fleet with the writes in flight counted as landed; logs the decision. */
  #arbitrate(
    participant: ParticipantId,
    own: readonly TargetReplica[],
    observed: Snapshot,
  ): { snapshot: Snapshot; decision: InFlightDecision } {
    const { port, logger, dryRun } = this.#options;
    const { snapshot, spread } = this.#inFlight.view(observed);
    const arbitrated = arbitrate({
      snapshot,
      request: {
        participant,
        targets: own.map((t) => ({
          role: t.sub_component_type,
          desired: t.desired_replicas,
          componentName: t.component_name,
        })),
      },
      // A dry run decides as a real one would, on a copy it then forgets.
      intents: dryRun ? this.#intents.clone() : this.#intents,
      bounds: this.#options.bounds,
      ttl: this.#options.intentTtlSeconds,
      now: this.#now(),
      partnerBounds: partnerBounds((id) => port.state(id)?.annotations),
      inFlight: spread,
    });
    // A partner being written by an earlier decision is moved again only once that is answered.
    const decision: InFlightDecision = arbitrated.kind === "approve" &&
        arbitrated.writes.some((w) => w.participant !== participant && this.#inFlight.has(w.participant))
      ? { kind: "settle" }
      : arbitrated;
    logger.info("budget decision", {
      participant,
      decision: decision.kind,
      dry_run: dryRun || undefined,
      total_gpus_before: snapshot.totalGpus,
      total_gpus_after: decision.kind === "settle" ? undefined : decision.totalGpus,
      writes_in_flight: this.#inFlight.size || undefined,
      writes: decision.kind === "approve" ? decision.writes.map(_describe) : undefined,
    });
    this.#options.observe?.decision?.(decision.kind);
    return { snapshot, decision };
  }

  #recordDecision(
    participant: ParticipantId,
    state: ParticipantState<V>,
    request: ScaleRequest,
    decision: AppliedDecision,
  ): void {
    const { events, dryRun, port } = this.#options;
    if (events && !dryRun) {
      recordDecision(
        events,
        (id) => port.state(id),
        participant,
        state,
        request,
        decision,
      );
    }
  }

  #recordRefusal(
    participant: ParticipantId,
    state: ParticipantState<V>,
    request: ScaleRequest,
    error: unknown,
    verdict: string,
  ): void {
    const { events, dryRun } = this.#options;
    if (events && !dryRun) recordRefusal(events, participant, state, request, error, verdict);
  }

  #now(): number {
    return (this.#options.clock ?? (() => Date.now() / 1000))();
  }

  #serialized<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task, task);
    this.#tail = result.catch(() => {});
    return result;
  }
}

function _describe(write: ParticipantWrite) {
  return {
    participant: write.participant,
    gpu_delta: write.gpuDelta,
    targets: Object.fromEntries(write.targets.map((t) => [t.role, t.desired])),
  };
}
