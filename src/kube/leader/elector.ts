/**
 * Leader election on a Lease with client-go's semantics: candidates try every retry period
 * (jittered by a factor of 1.2) to take a Lease that is free, expired or theirs; the leader
 * renews every retry period; every write carries the resourceVersion it was decided on, so two
 * candidates cannot both win. A Lease held by someone else counts as valid for its
 * `leaseDurationSeconds` after this replica last saw it change (its own clock only: no
 * comparison of clocks across machines).
 *
 * Stricter than client-go on one point: leadership ends at the last successful renewal (the
 * moment its request was sent) plus the renew deadline, by the clock and not by the loop, so
 * `leading` and the write fence turn false then even if a renewal request is still hanging.
 * Since renew deadline < lease duration, this replica stops writing before any other can take
 * the Lease. Graceful stop releases it (holder cleared, `leaseDurationSeconds` kept, as
 * client-go's ReleaseOnCancel), so a standby takes over within half a retry period (below).
 *
 * Deliberately unlike client-go, a standby does not retry a Lease held by someone else every
 * jittered retry period (retry × up to 2.2): it polls it every half retry period, without
 * jitter, and tries once more exactly when the Lease it observed would expire (observed time +
 * lease duration, its own clock). A released Lease is noticed within half a retry period and an
 * unrenewed one is taken at its expiry, not up to one jittered period later. Failed attempts
 * (API unreachable, conflict) keep client-go's jitter; the leader's renewals are client-go's.
 * RBAC stays `get`/`create`/`update`: a watch would need more.
 *
 * Clock, sleep and randomness are injected, so the state machine is tested without waiting.
 */
import { errorText, NotLeader } from "../../errors.ts";
import type { Logger } from "../../ops/log.ts";
import { MAX_TIMER_MS, pause } from "../../timing.ts";
import type { LeaseApi, LeaseRecord, StoredLease } from "./lease_api.ts";

export interface LeaderElectionTiming {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/** client-go's `JitterFactor`: after a failed attempt a candidate waits retry × (1 + 1.2 × random). */
export const JITTER_FACTOR = 1.2;

/** A standby reads a Lease held by someone else every retry period × this (no jitter). */
export const STANDBY_POLL_FACTOR = 0.5;

export interface ElectorClock {
  now(): number;
  /** Resolves after `ms` or as soon as `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  /** Runs `fn` after `ms`; returns what cancels it. */
  after(ms: number, fn: () => void): () => void;
}

export const SYSTEM_CLOCK: ElectorClock = {
  now: () => Date.now(),
  sleep: async (ms, signal) => void await pause(ms, signal),
  after: (ms, fn) => {
    const timer = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    return () => clearTimeout(timer);
  },
};

export interface ElectorOptions extends LeaderElectionTiming {
  api: LeaseApi;
  identity: string;
  logger: Logger;
  clock?: ElectorClock;
  random?: () => number;
  /**
   * Called when this replica becomes leader; `term` aborts when the leadership ends;
   * `inherited` are the annotations the previous leader left on the Lease (its state).
   */
  onStartedLeading?: (term: AbortSignal, inherited: Record<string, string>) => void;
  /**
   * State kept on the Lease as annotations: written with every renewal and the release, so a
   * successor inherits it (lost since the last renewal only if this replica dies).
   */
  state?: () => Record<string, string>;
  /** Called once per term when it ends (lost, not renewed in time, or released). */
  onStoppedLeading?: (reason: string) => void;
  /** Called whenever the observed holder changes (ours included). */
  onNewLeader?: (identity: string) => void;
}

export type Role = "leader" | "standby";

export class LeaderElector {
  readonly identity: string;
  #options: ElectorOptions;
  #clock: ElectorClock;
  #random: () => number;
  #logger: Logger;
  #stop = new AbortController();
  #loop?: Promise<void>;
  /** The Lease as last read or written by us. */
  #observed?: StoredLease;
  /** Our clock when `#observed` last changed. */
  #observedAt = 0;
  /** When the request of our last successful acquire/renew was sent; leadership ends at + renew deadline. */
  #renewedAt = 0;
  #term?: AbortController;
  #cancelTermTimer?: () => void;
  #transitions = 0;
  #leader = "";

  constructor(options: ElectorOptions) {
    this.identity = options.identity;
    this.#options = options;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#random = options.random ?? Math.random;
    this.#logger = options.logger.child({ lease: options.api.where, identity: options.identity });
  }

  /** True while this replica holds the Lease and its last renewal is within the renew deadline. */
  get leading(): boolean {
    return this.#term !== undefined && this.#clock.now() < this.#renewedAt + this.#options.renewDeadlineMs;
  }

  get role(): Role {
    return this.leading ? "leader" : "standby";
  }

  /** The holder last observed (empty when free or unknown). */
  get leader(): string {
    return this.#leader;
  }

  /** How many times this replica became or stopped being leader. */
  get transitions(): number {
    return this.#transitions;
  }

  /**
   * The signal a leader-only write is tied to; throws `NotLeader` when this replica is not
   * leading, so the write is never sent.
   */
  writeSignal(): AbortSignal {
    if (!this.leading || !this.#term) {
      if (this.#term) this.#endTerm("lease not renewed within the renew deadline");
      throw new NotLeader(
        `this Global Planner replica is not the leader (lease ${this.#options.api.where}` +
          `${this.#leader ? ` held by ${this.#leader}` : ""}); retry: the leader answers`,
      );
    }
    return this.#term.signal;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops campaigning; a leader ends its term first, then releases the Lease. */
  async stop(releaseTimeoutMs = this.#options.renewDeadlineMs): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    const held = this.#term !== undefined;
    this.#endTerm("stopping");
    if (held) await this.#release(releaseTimeoutMs);
  }

  async #run(): Promise<void> {
    const stop = this.#stop.signal;
    while (!stop.aborted) {
      const attempt = this.#clock.now();
      let acquired = false;
      let failed = false;
      try {
        acquired = await this.#tryAcquireOrRenew(attempt, stop);
      } catch (error) {
        if (stop.aborted) return;
        failed = true;
        this.#logger.debug("cannot acquire the leader lease yet", { error: errorText(error) });
      }
      if (acquired) {
        this.#beginTerm(attempt);
        await this.#renewLoop();
        continue;
      }
      await this.#clock.sleep(this.#standbyWait(failed), stop);
    }
  }

  /**
   * After a failed attempt, client-go's jittered retry; while someone else holds the Lease, the
   * next poll or the moment the observed Lease expires, whichever comes first.
   */
  #standbyWait(failed: boolean): number {
    const retry = this.#options.retryPeriodMs;
    const observed = this.#observed;
    if (failed || !observed) return retry * (1 + JITTER_FACTOR * this.#random());
    const expiresAt = this.#observedAt + observed.record.leaseDurationSeconds * 1000;
    return Math.max(0, Math.min(retry * STANDBY_POLL_FACTOR, expiresAt - this.#clock.now()));
  }

  /** Renews every retry period until a renewal misses the deadline or `stop`. */
  async #renewLoop(): Promise<void> {
    const stop = this.#stop.signal;
    while (!stop.aborted && this.#term) {
      await this.#clock.sleep(this.#options.retryPeriodMs, stop);
      if (stop.aborted) return;
      let failure: unknown = "no renewal attempt before the deadline";
      while (!stop.aborted && this.leading) {
        const attempt = this.#clock.now();
        const left = this.#renewedAt + this.#options.renewDeadlineMs - attempt;
        const deadline = new AbortController();
        const cancel = this.#clock.after(left, () => deadline.abort());
        try {
          if (await this.#tryAcquireOrRenew(attempt, AbortSignal.any([stop, deadline.signal]))) {
            this.#renewedAt = attempt;
            this.#armTermTimer();
            failure = undefined;
            break;
          }
          // Someone else holds it: our term is over, whatever the deadline says.
          this.#endTerm(`lease taken by ${this.#leader}`);
          return;
        } catch (error) {
          failure = error;
          if (stop.aborted) return;
        } finally {
          cancel();
        }
        const remaining = this.#renewedAt + this.#options.renewDeadlineMs - this.#clock.now();
        if (remaining <= 0) break;
        this.#logger.warn("cannot renew the leader lease; retrying", {
          error: errorText(failure),
          ms_left: Math.round(remaining),
        });
        await this.#clock.sleep(Math.min(this.#options.retryPeriodMs, remaining), stop);
      }
      if (stop.aborted) return;
      if (failure !== undefined || !this.leading) {
        this.#endTerm(`lease not renewed within the renew deadline: ${errorText(failure)}`);
        return;
      }
    }
  }

  /** client-go's tryAcquireOrRenew: true when this replica holds the Lease after the call. */
  async #tryAcquireOrRenew(now: number, signal: AbortSignal): Promise<boolean> {
    // Whole seconds, truncated as client-go does (the configuration checks the renew deadline against this).
    const duration = Math.floor(this.#options.leaseDurationMs / 1000);
    const me = this.identity;
    // Fast path of a leader: replace the copy it wrote last.
    if (this.#term && this.#observed?.record.holderIdentity === me) {
      try {
        const record = {
          ...this.#observed.record,
          renewTime: now,
          leaseDurationSeconds: duration,
          annotations: this.#annotations(this.#observed.record),
        };
        this.#observe(await this.#options.api.update(record, this.#observed.resourceVersion, signal), now);
        return true;
      } catch (error) {
        if (signal.aborted) throw error;
        this.#logger.debug("renewal of the cached lease failed; reading it", { error: errorText(error) });
      }
    }
    const current = await this.#options.api.get(signal);
    if (!current) {
      const record: LeaseRecord = {
        holderIdentity: me,
        leaseDurationSeconds: duration,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: 0,
      };
      this.#observe(await this.#options.api.create(record, signal), now);
      return true;
    }
    this.#observe(current, now);
    const held = current.record.holderIdentity;
    const validUntil = this.#observedAt + current.record.leaseDurationSeconds * 1000;
    if (held !== "" && held !== me && validUntil > now) return false;
    const ours = held === me;
    const record: LeaseRecord = {
      holderIdentity: me,
      leaseDurationSeconds: duration,
      acquireTime: ours ? current.record.acquireTime : now,
      renewTime: now,
      leaseTransitions: ours ? current.record.leaseTransitions : current.record.leaseTransitions + 1,
      // A new holder keeps its predecessor's state until it has taken it in (first renewal).
      annotations: this.#term ? this.#annotations(current.record) : current.record.annotations,
    };
    this.#observe(await this.#options.api.update(record, current.resourceVersion, signal), now);
    return true;
  }

  #observe(lease: StoredLease, now: number): void {
    if (lease.raw !== this.#observed?.raw) this.#observedAt = now;
    this.#observed = lease;
    const holder = lease.record.holderIdentity;
    if (holder !== this.#leader) {
      this.#leader = holder;
      if (holder) this.#logger.info("leader observed", { leader: holder, ours: holder === this.identity });
      this.#options.onNewLeader?.(holder);
    }
  }

  #beginTerm(renewedAt: number): void {
    this.#renewedAt = renewedAt;
    this.#term = new AbortController();
    this.#transitions++;
    this.#armTermTimer();
    this.#logger.info("became leader", { role: "leader" });
    this.#options.onStartedLeading?.(this.#term.signal, { ...this.#observed?.record.annotations });
  }

  /** The Lease's annotations with our state over them. */
  #annotations(record: LeaseRecord): Record<string, string> | undefined {
    if (!this.#options.state) return record.annotations;
    return { ...record.annotations, ...this.#options.state() };
  }

  /** Ends the term by the clock, also while a renewal request hangs. */
  #armTermTimer(): void {
    this.#cancelTermTimer?.();
    const left = this.#renewedAt + this.#options.renewDeadlineMs - this.#clock.now();
    this.#cancelTermTimer = this.#clock.after(left, () => {
      if (!this.#term) return;
      if (!this.leading) this.#endTerm("lease not renewed within the renew deadline");
      else this.#armTermTimer();
    });
  }

  #endTerm(reason: string): void {
    const term = this.#term;
    if (!term) return;
    this.#term = undefined;
    this.#cancelTermTimer?.();
    this.#cancelTermTimer = undefined;
    this.#transitions++;
    const error = new NotLeader(`leadership ended: ${reason}`);
    term.abort(error);
    this.#logger.warn("stopped leading", { role: "standby", reason });
    this.#options.onStoppedLeading?.(reason);
  }

  /** Clears the holder so a standby need not wait for the lease to expire. */
  async #release(timeoutMs: number): Promise<void> {
    const observed = this.#observed;
    if (!observed || observed.record.holderIdentity !== this.identity) return;
    const now = this.#clock.now();
    const record: LeaseRecord = {
      holderIdentity: "",
      leaseDurationSeconds: observed.record.leaseDurationSeconds,
      acquireTime: now,
      renewTime: now,
      leaseTransitions: observed.record.leaseTransitions,
      annotations: this.#annotations(observed.record),
    };
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      let version = observed.resourceVersion;
      try {
        this.#observe(await this.#options.api.update(record, version, signal), now);
      } catch (error) {
        // A renewal cut short by the stop may still have landed: read the version it left.
        const current = await this.#options.api.get(signal);
        if (current?.record.holderIdentity !== this.identity) throw error;
        version = current.resourceVersion;
        this.#observe(await this.#options.api.update(record, version, signal), now);
      }
      this.#logger.info("leader lease released");
    } catch (error) {
      this.#logger.warn("cannot release the leader lease; a standby takes over when it expires", {
        error: errorText(error),
      });
    }
  }
}
