/**
 * The intent cache: the last replica count each pool's planner asked for, and
 * when. Arbitration pairs a request with other pools' fresh, unsatisfied intents.
 *
 * In memory; with leader election the leader keeps the fresh ones on its Lease (`exportFresh`,
 * `restore`), so they survive a failover. Times are in
 * SECONDS, the unit of `intent_cache_ttl_seconds`; the caller supplies the clock.
 *
 * Memory stays bounded: `pruneIfDue` drops expired entries once the writes since the last sweep
 * reach what that sweep left (at least 64), so a sweep costs O(size) but runs at most once per
 * O(size) writes (amortised O(1) per write), and the cache never holds more than about
 * max(2 × live, live + 64) entries. Live entries are bounded by the number of pools, because
 * intents are only recorded for pools present in a snapshot.
 */
import type { PoolKey } from "./pool.ts";

export interface Intent {
  readonly lastDesired: number;
  /** Seconds, on the caller's clock. */
  readonly lastSeenAt: number;
}

/** Fresh = `now − lastSeenAt ≤ ttl` (inclusive, as the spec writes it). */
export function isFresh(intent: Intent, now: number, ttlSeconds: number): boolean {
  return now - intent.lastSeenAt <= ttlSeconds;
}

/** Keeps tiny caches from sweeping on every write. */
const _MIN_WRITES_BETWEEN_SWEEPS = 64;

export class IntentCache {
  readonly #entries = new Map<PoolKey, Intent>();
  #writesSinceSweep = 0;
  /** Entries left by the last sweep: the next sweep waits for as many writes (at least 64). */
  #sizeAfterSweep = 0;

  get size(): number {
    return this.#entries.size;
  }

  /**
   * A copy to arbitrate a dry run on: it records the request's intents like a real decision,
   * and is then thrown away, so a dry run never changes a later decision.
   */
  clone(): IntentCache {
    const copy = new IntentCache();
    for (const [key, intent] of this.#entries) copy.#entries.set(key, { ...intent });
    return copy;
  }

  /** Remembers (or replaces) the pool's latest desired count. */
  record(key: PoolKey, lastDesired: number, now: number): void {
    this.#entries.set(key, { lastDesired, lastSeenAt: now });
    this.#writesSinceSweep++;
  }

  get(key: PoolKey): Intent | undefined {
    return this.#entries.get(key);
  }

  /** The intent, only while fresh. */
  fresh(key: PoolKey, now: number, ttlSeconds: number): Intent | undefined {
    const intent = this.#entries.get(key);
    return intent !== undefined && isFresh(intent, now, ttlSeconds) ? intent : undefined;
  }

  /** Removes every expired intent; returns how many were removed. */
  pruneExpired(now: number, ttlSeconds: number): number {
    let removed = 0;
    for (const [key, intent] of this.#entries) {
      if (!isFresh(intent, now, ttlSeconds)) {
        this.#entries.delete(key);
        removed++;
      }
    }
    this.#writesSinceSweep = 0;
    this.#sizeAfterSweep = this.#entries.size;
    return removed;
  }

  /** Sweeps only when enough writes accumulated since the last sweep (amortised O(1)). */
  pruneIfDue(now: number, ttlSeconds: number): number {
    if (this.#writesSinceSweep < Math.max(_MIN_WRITES_BETWEEN_SWEEPS, this.#sizeAfterSweep)) return 0;
    return this.pruneExpired(now, ttlSeconds);
  }

  entries(): IterableIterator<[PoolKey, Intent]> {
    return this.#entries.entries();
  }

  /**
   * The fresh intents as text, for a successor replica (`[[key, lastDesired, lastSeenAt,
   * generation?], ...]`; wall-clock seconds, so another process can judge freshness).
   * `generationOf` gives the pool's DGD `metadata.generation` as this leader sees it now: the
   * successor keeps an intent only if the DGD's spec has not moved since (see `restore`).
   */
  exportFresh(now: number, ttlSeconds: number, generationOf?: (key: PoolKey) => number | undefined): string {
    const rows: (string | number)[][] = [];
    for (const [key, intent] of this.#entries) {
      if (!isFresh(intent, now, ttlSeconds)) continue;
      const generation = generationOf?.(key);
      rows.push(
        generation === undefined
          ? [key, intent.lastDesired, intent.lastSeenAt]
          : [key, intent.lastDesired, intent.lastSeenAt, generation],
      );
    }
    return JSON.stringify(rows);
  }

  /**
   * Takes in what `exportFresh` wrote; newer local intents win. An intent exported with its DGD's
   * generation is dropped when `generationOf` shows another one (or no DGD): the spec moved after
   * the export — the old leader decided again and died before its next export — so the intent
   * may be superseded, and applying it to a partner would undo a newer scale. Dropping only
   * loses a pairing the partner's next request brings back.
   */
  restore(text: string, generationOf?: (key: PoolKey) => number | undefined): RestoredIntents {
    const restored = { taken: 0, superseded: 0 };
    let rows: unknown;
    try {
      rows = JSON.parse(text);
    } catch {
      return restored;
    }
    if (!Array.isArray(rows)) return restored;
    for (const row of rows) {
      if (!Array.isArray(row) || (row.length !== 3 && row.length !== 4)) continue;
      const [key, lastDesired, lastSeenAt, generation] = row;
      if (typeof key !== "string" || !Number.isFinite(lastDesired) || !Number.isFinite(lastSeenAt)) continue;
      if (row.length === 4) {
        if (!Number.isFinite(generation)) continue;
        if (generationOf && generationOf(key) !== generation) {
          restored.superseded++;
          continue;
        }
      }
      const local = this.#entries.get(key);
      if (local && local.lastSeenAt >= lastSeenAt) continue;
      this.#entries.set(key, { lastDesired, lastSeenAt });
      restored.taken++;
    }
    return restored;
  }
}

/** What `restore` did: intents taken in, and intents dropped because their DGD moved since. */
export interface RestoredIntents {
  taken: number;
  superseded: number;
}
