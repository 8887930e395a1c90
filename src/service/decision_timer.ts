/**
 * When a scale request's decision is made: from the request's receipt to its write being issued,
 * or to its answer being known without a write. The clock is injected (milliseconds, monotonic),
 * so the core stays free of I/O and tests decide what time it is.
 */

/**
 * Seconds one decision took from the request's receipt, and from the start of its own turn
 * (after the decisions ahead of it were made; a turn may still wait for writes in flight).
 */
export type DecisionObserver = (seconds: number, inTurnSeconds: number) => void;

export interface DecisionTiming {
  observe?: DecisionObserver;
  /** Milliseconds, monotonic (default `performance.now`). */
  clock?: () => number;
}

export class DecisionTimer {
  #started: number;
  #turn?: number;
  #timing: DecisionTiming;
  #done = false;

  constructor(timing: DecisionTiming) {
    this.#timing = timing;
    this.#started = this.#now();
  }

  /** The request's turn has come: nothing ahead of it is deciding any more. */
  turn(): void {
    this.#turn ??= this.#now();
  }

  /**
   * The decision is made. Only the first call counts: a conflict's second decision and the
   * catch-all at the end of a request do not observe it again.
   */
  decided(): void {
    if (this.#done) return;
    this.#done = true;
    const now = this.#now();
    this.#timing.observe?.((now - this.#started) / 1000, (now - (this.#turn ?? now)) / 1000);
  }

  #now(): number {
    return (this.#timing.clock ?? (() => performance.now()))();
  }
}
