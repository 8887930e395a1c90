/**
 * Deadlines that are almost always cancelled (a write that completes, a caller that closes in
 * time) on one timer per duration instead of one per use: a `setTimeout`/`clearTimeout` pair
 * for every write and every frame was a visible share of the server's CPU per request. A
 * deadline never fires early; it may fire up to one timer turn late.
 */

export interface Deadline {
  /** Forgets the deadline; `fire` will not run. Idempotent. */
  cancel(): void;
}

interface Entry extends Deadline {
  at: number;
  fire: () => void;
}

/**
 * Deadlines of one fixed length. Entries are added in time order, so the oldest is always the
 * next to expire and a Set (insertion-ordered, O(1) delete) is the whole queue.
 */
export class DeadlineQueue {
  #ms: number;
  #entries = new Set<Entry>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(ms: number) {
    this.#ms = ms;
  }

  /** Pending deadlines (for tests). */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether a timer is armed (for tests: none is left once every deadline is gone). */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Runs `fire` once `ms` have passed, unless cancelled first. */
  add(fire: () => void): Deadline {
    const entries = this.#entries;
    const entry: Entry = {
      at: performance.now() + this.#ms,
      fire,
      cancel: () => {
        if (entries.delete(entry) && entries.size === 0) this.#disarm();
      },
    };
    entries.add(entry);
    if (this.#timer === undefined) this.#arm(entry.at);
    return entry;
  }

  #arm(at: number): void {
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, Math.ceil(at - performance.now())));
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (const entry of this.#entries) {
      if (entry.at > now) break;
      this.#entries.delete(entry);
      entry.fire();
    }
    // `fire` may have added entries (and armed a timer) already.
    const next = this.#entries.values().next();
    if (!next.done && this.#timer === undefined) this.#arm(next.value.at);
  }
}

const _queues = new Map<number, DeadlineQueue>();

/** The process-wide queue for deadlines of `ms` (a handful of distinct lengths exist). */
export function deadlineAfter(ms: number, fire: () => void): Deadline {
  let queue = _queues.get(ms);
  if (!queue) _queues.set(ms, queue = new DeadlineQueue(ms));
  return queue.add(fire);
}

/**
 * An inactivity timeout: `touch` on activity is a clock read, not a timer reset; the one timer
 * re-arms for what is left when it finds recent activity.
 */
export class IdleTimer {
  #ms: number;
  #onIdle: () => void;
  #last = performance.now();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(ms: number, onIdle: () => void) {
    this.#ms = ms;
    this.#onIdle = onIdle;
    this.#timer = setTimeout(() => this.#check(), ms);
  }

  touch(): void {
    this.#last = performance.now();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    const left = this.#last + this.#ms - performance.now();
    if (left > 0) {
      this.#timer = setTimeout(() => this.#check(), Math.ceil(left));
      return;
    }
    this.#timer = undefined;
    this.#onIdle();
  }
}
