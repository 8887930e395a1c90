/**
 * Watch caches of the DGDs that scale requests touch, so a scale in steady state costs one API
 * call (its write) in every mode, not only with a GPU budget.
 *
 * - One `DgdCache` per Kubernetes namespace, started on the first request there. That request
 *   still reads the DGD itself (the list is not awaited: a request never waits for a cache).
 * - Only DGDs that requests named are kept (the cache's filter); one named after the list joins
 *   through the view its request read or wrote (`record`), and the watch keeps it current.
 * - Bounded: at most `maxNamespaces` namespaces (the least recently used one is stopped to make
 *   room) and `maxDgdsPerNamespace` names each (more are served by reads); a namespace without a
 *   request for `idleMs` is stopped.
 * - The scaler guards every write with the view's resourceVersion, so a stale copy costs a 409
 *   and one fresh read, never a lost update.
 */
import type { Logger } from "../ops/log.ts";
import { DgdCache } from "./cache.ts";
import type { KubeClient } from "./client.ts";
import type { DgdApiVersion, DgdView } from "./dgd.ts";
import type { ObjectRef } from "./resources.ts";

export const DEFAULT_MAX_NAMESPACES = 32;
export const DEFAULT_MAX_DGDS_PER_NAMESPACE = 1024;
export const DEFAULT_IDLE_MS = 10 * 60_000;

export interface TouchedCachesOptions {
  client: KubeClient;
  version: () => Promise<DgdApiVersion>;
  logger: Logger;
  maxNamespaces?: number;
  maxDgdsPerNamespace?: number;
  /** A namespace without a request for this long is no longer watched. */
  idleMs?: number;
  /** Milliseconds since the epoch (injectable for tests). */
  clock?: () => number;
  /** `timeoutSeconds` of each watch request (see `DgdCacheOptions`). */
  watchTimeoutSeconds?: number;
}

interface _Entry {
  cache: DgdCache;
  names: Set<string>;
  lastUsed: number;
}

export class TouchedDgdCaches {
  #options: TouchedCachesOptions;
  #clock: () => number;
  #idleMs: number;
  /** Map order is recency order: a touched namespace is moved to the end. */
  #entries = new Map<string, _Entry>();
  #stopping = new Set<Promise<void>>();
  #sweeper?: ReturnType<typeof setInterval>;
  #closed = false;
  /** Namespaces opened or stopped so far. */
  #opened = 0;
  #changeListeners = new Set<(ref: ObjectRef | undefined) => void>();

  constructor(options: TouchedCachesOptions) {
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
    this.#idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
  }

  /** The cached view of a DGD (undefined until its namespace has listed or it was recorded). */
  viewOf(ref: ObjectRef): DgdView | undefined {
    if (this.#closed) return undefined;
    const entry = this.#touch(ref);
    return entry.cache.get(ref.namespace, ref.name);
  }

  /** Follows a DGD on its namespace's watch (see `DgdCache.follow`); `undefined` when it cannot. */
  follow(ref: ObjectRef, listener: (view: DgdView | undefined) => void): (() => void) | undefined {
    if (this.#closed) return undefined;
    return this.#entries.get(ref.namespace)?.cache.follow(ref.name, listener);
  }

  /** The cached view without counting it as a request (no recency, no name kept, no watch started). */
  peek(ref: ObjectRef): DgdView | undefined {
    if (this.#closed) return undefined;
    return this.#entries.get(ref.namespace)?.cache.get(ref.namespace, ref.name);
  }

  /** True when the DGD's copy is held by a namespace watch that is connected right now. */
  watching(ref: ObjectRef): boolean {
    const cache = this.#closed ? undefined : this.#entries.get(ref.namespace)?.cache;
    return cache?.get(ref.namespace, ref.name) !== undefined && cache.state().watching;
  }

  /** Takes in a view a request read or wrote (kept only for a touched DGD). */
  record(view: DgdView): void {
    this.#entries.get(view.namespace)?.cache.upsert(view);
  }

  /** Changes whenever any watched copy may have changed (namespaces opened or stopped included). */
  revision(): string {
    let out = String(this.#opened);
    for (const entry of this.#entries.values()) out += `:${entry.cache.revision}`;
    return out;
  }

  /**
   * Calls `listener` whenever `revision` changes, with the DGD whose copy may have changed, or
   * `undefined` when any may have (a namespace opened, stopped or listed afresh). Returns the
   * function that stops the calls.
   */
  onChange(listener: (ref: ObjectRef | undefined) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** Namespaces watched right now (for tests and diagnostics). */
  namespaces(): string[] {
    return [...this.#entries.keys()];
  }

  /** Stops the namespaces idle for longer than `idleMs` (also run by a timer while any is watched). */
  sweep(): void {
    const now = this.#clock();
    for (const [namespace, entry] of this.#entries) {
      if (now - entry.lastUsed >= this.#idleMs) this.#evict(namespace, "idle");
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const namespace of [...this.#entries.keys()]) this.#evict(namespace, "closing");
    await Promise.all(this.#stopping);
  }

  #touch(ref: ObjectRef): _Entry {
    this.sweep();
    const now = this.#clock();
    let entry = this.#entries.get(ref.namespace);
    if (entry) {
      this.#entries.delete(ref.namespace);
    } else {
      const max = this.#options.maxNamespaces ?? DEFAULT_MAX_NAMESPACES;
      while (this.#entries.size >= max) this.#evict(this.#entries.keys().next().value!, "bound");
      entry = this.#open(ref.namespace);
    }
    this.#entries.set(ref.namespace, entry);
    entry.lastUsed = now;
    if (entry.names.size < (this.#options.maxDgdsPerNamespace ?? DEFAULT_MAX_DGDS_PER_NAMESPACE)) {
      entry.names.add(ref.name);
    }
    this.#sweeper ??= setInterval(() => this.sweep(), Math.max(1000, this.#idleMs / 2));
    return entry;
  }

  #open(namespace: string): _Entry {
    const names = new Set<string>();
    const cache = new DgdCache({
      client: this.#options.client,
      version: this.#options.version,
      namespace,
      filter: (name) => names.has(name),
      logger: this.#options.logger,
      clock: this.#options.clock,
      watchTimeoutSeconds: this.#options.watchTimeoutSeconds,
    });
    cache.onChange((name) => this.#changed(name === undefined ? undefined : { namespace, name }));
    // A failed start is logged by the cache, which keeps retrying; meanwhile requests read.
    cache.start().catch(() => {});
    this.#options.logger.debug("watching DGDs of a namespace", { k8s_namespace: namespace });
    this.#opened++;
    this.#changed(undefined);
    return { cache, names, lastUsed: this.#clock() };
  }

  #evict(namespace: string, reason: string): void {
    const entry = this.#entries.get(namespace);
    if (!entry) return;
    this.#entries.delete(namespace);
    this.#opened++;
    this.#changed(undefined);
    const stopped = entry.cache.stop().finally(() => this.#stopping.delete(stopped));
    this.#stopping.add(stopped);
    this.#options.logger.debug("no longer watching DGDs of a namespace", {
      k8s_namespace: namespace,
      reason,
    });
    if (this.#entries.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  #changed(ref: ObjectRef | undefined): void {
    for (const listener of this.#changeListeners) listener(ref);
  }
}
