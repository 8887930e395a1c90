/**
 * The one place for waiting: abortable delays, jittered backoff, idle deadlines and the largest
 * delay a timer can hold. Every wait in the service goes through here, so none of them can
 * outlive a shutdown or silently fire at once.
 */

/**
 * Timers hold a signed 32-bit millisecond count; a longer delay fires immediately (Node and
 * Deno warn and use 1 ms), so configured timeouts are checked against this at start.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Resolves after `ms`, or rejects with the signal's reason as soon as `signal` aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const onAbort = () => {
    clearTimeout(timer);
    reject(signal!.reason);
  };
  const timer = setTimeout(() => {
    signal?.removeEventListener("abort", onAbort);
    resolve();
  }, Math.min(Math.max(0, ms), MAX_TIMER_MS));
  signal?.addEventListener("abort", onAbort, { once: true });
  return promise;
}

/** `promise`, or a rejection with the signal's reason as soon as `signal` aborts first. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  const { promise: aborted, reject } = Promise.withResolvers<never>();
  const onAbort = () => reject(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  return Promise.race([promise, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

/** Like `delay`, but an abort just ends the wait early (resolves `false`; `true` when it ran out). */
export function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  return delay(ms, signal).then(() => true, () => false);
}

export interface BackoffOptions {
  firstMs: number;
  maxMs: number;
  /** `[0, 1)`; injectable so tests can pin the jitter. */
  random?: () => number;
}

/**
 * Exponential backoff with equal jitter: half the step fixed, half random, so replicas that
 * failed together do not retry in step. `failures` counts from 1.
 */
export function backoffMs(failures: number, options: BackoffOptions): number {
  const step = Math.min(options.maxMs, options.firstMs * 2 ** Math.max(0, failures - 1));
  return step / 2 + (options.random ?? Math.random)() * (step / 2);
}

/**
 * An abort signal that fires when nothing has called `touch()` for `idleMs`: a watch resets it
 * on every event or bookmark, so a half-open connection (no bytes, no FIN) is noticed.
 */
export class IdleDeadline {
  readonly signal: AbortSignal;
  #controller = new AbortController();
  #idleMs: number;
  #reason: () => Error;
  #timer?: ReturnType<typeof setTimeout>;

  constructor(idleMs: number, reason: () => Error) {
    this.#idleMs = Math.min(idleMs, MAX_TIMER_MS);
    this.#reason = reason;
    this.signal = this.#controller.signal;
    this.touch();
  }

  get expired(): boolean {
    return this.#controller.signal.aborted;
  }

  touch(): void {
    if (this.expired) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#controller.abort(this.#reason()), this.#idleMs);
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}
