/**
 * The DGD cache used when a GPU budget is enabled: list the DGDs of one namespace, then watch
 * them, so arbitration reads memory instead of GETting every participant (as upstream does).
 *
 * - The watch resumes from the last resourceVersion seen (events, bookmarks): a watch the server
 *   ends (`timeoutSeconds`) costs no re-list. An expired one (410, as HTTP status or ERROR event)
 *   re-lists at once. Other failures back off (250 ms doubling to 30 s, jittered), then resume.
 *   A watch silent for longer than the client's watch idle deadline (no event, no bookmark) is
 *   taken for a dead connection and counts as such a failure.
 * - Objects `viewDgd` cannot read are logged and kept out (`unreadable()` lists them, so a budget
 *   can fail closed); one bad object never stops the loop.
 * - `state()` feeds health: `degraded` once no watch has been open for longer than `downBoundMs`.
 *
 * `start()` resolves after the first successful list. It rejects when that list fails for a
 * reason retrying cannot fix by itself (HTTP 4xx other than 408/410/429: an RBAC verb or the CRD
 * is missing; or version discovery failed), so the caller can log it prominently; on transient
 * failures it stays pending. Either way the loop retries until `stop()`: fixing RBAC heals the
 * cache without a restart, and health reports the outage meanwhile.
 */
import { errorText, GlobalPlannerError, KubeError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import { type KubeClient, SERVER_WATCH_TIMEOUT_SECONDS, WatchStalled } from "./client.ts";
import { DGD_KIND, type DgdApiVersion, type DgdView } from "./dgd.ts";
import { DgdStore, type UnreadableDgd } from "./dgd_store.ts";
import { DGD, GROUP } from "./resources.ts";
import type { WatchEvent } from "./watch_events.ts";
import { backoffMs, pause } from "../timing.ts";

export const DEFAULT_DOWN_BOUND_MS = 30_000;
const PAGE_SIZE = 500;
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 30_000;
/** A watch that ends this fast with no event is treated as a failure (no hot loop). */
const SHORT_WATCH_MS = 250;

export interface DgdCacheOptions {
  client: KubeClient;
  version: () => Promise<DgdApiVersion>;
  /** The Kubernetes namespace listed and watched (POD_NAMESPACE). */
  namespace: string;
  /** Which DGD names to keep (see `managedDgdNames` in participants.ts). */
  filter: (name: string) => boolean;
  logger: Logger;
  /** Milliseconds since the epoch (injectable for tests). */
  clock?: () => number;
  /** How long the watch may be down before health reports `degraded` (default 30 s). */
  downBoundMs?: number;
  /** `timeoutSeconds` of each watch request (default 60; small values exercise resuming). */
  watchTimeoutSeconds?: number;
  /** `limit` of each list page (default 500; small values exercise pagination). */
  pageSize?: number;
}

export interface DgdCacheState {
  enabled: true;
  /** The first list has succeeded. */
  synced: boolean;
  /** A watch stream is open right now. */
  watching: boolean;
  lastError?: string;
  /** Clock time (ms since the epoch) since when no watch has been open. */
  downSinceMs?: number;
  degraded: boolean;
  message?: string;
  /** DGDs in the cache. */
  dgds: number;
  /** DGDs that passed the filter but could not be read (kept out of the cache). */
  unreadable: number;
}

export type { UnreadableDgd };

export class DgdCache {
  readonly namespace: string;
  #options: DgdCacheOptions;
  #clock: () => number;
  #downBoundMs: number;
  #store: DgdStore;
  #resourceVersion?: string;
  #apiVersion?: DgdApiVersion;
  #synced = false;
  #watching = false;
  #lastError?: string;
  #downSince?: number;
  #failures = 0;
  #stop = new AbortController();
  #watchAbort?: AbortController;
  #resumeOverride?: string;
  #started?: Promise<void>;
  #settleStart?: { resolve: () => void; reject: (error: unknown) => void };
  #loop?: Promise<void>;
  /** Set by `relist()`: the next pass lists from scratch. */
  #relist = false;
  #relisted: (() => void)[] = [];

  constructor(options: DgdCacheOptions) {
    this.#options = options;
    this.namespace = options.namespace;
    this.#clock = options.clock ?? Date.now;
    this.#downBoundMs = options.downBoundMs ?? DEFAULT_DOWN_BOUND_MS;
    this.#store = new DgdStore(options.namespace, options.filter, options.logger);
  }

  /** Starts listing and watching; resolves after the first successful list (see the module doc). */
  start(): Promise<void> {
    if (this.#started) return this.#started;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#started = promise;
    this.#settleStart = { resolve, reject };
    this.#downSince = this.#clock();
    this.#loop = this.#run();
    return this.#started;
  }

  /** Ends the watch and the retry loop; resolves when the loop has finished. */
  async stop(): Promise<void> {
    this.#stop.abort(new GlobalPlannerError("DGD cache stopped"));
    this.#watching = false;
    this.#rejectStart(new GlobalPlannerError("DGD cache stopped before the first list"));
    await this.#loop;
  }

  get(namespace: string, name: string): DgdView | undefined {
    return namespace === this.namespace ? this.#store.get(name) : undefined;
  }

  views(): Iterable<DgdView> {
    return this.#store.views();
  }

  /** Grows whenever the cached views may have changed (a cheap "anything new?" for readers). */
  get revision(): number {
    return this.#store.revision;
  }

  /**
   * Calls `listener` whenever `revision` grows, with the DGD whose view may have changed, or
   * `undefined` when any may have (a fresh list), so a reader can redo only what changed.
   * Returns the function that stops the calls.
   */
  onChange(listener: (name: string | undefined) => void): () => void {
    return this.#store.onChange(listener);
  }

  unreadable(): UnreadableDgd[] {
    return this.#store.unreadable();
  }

  /**
   * Takes in the object a write returned, so the cache is fresh before the watch event arrives.
   * DGDs outside the namespace or the filter are ignored; an older copy never replaces a newer one.
   */
  upsert(view: DgdView): void {
    this.#store.upsert(view);
  }

  /**
   * Follows one DGD on this cache's watch (a blocking wait then costs the API server no watch
   * of its own): `listener` gets the cached view at once, then each newer one the watch
   * delivers, and `undefined` once the watch stops delivering (closed, re-listing, stopped),
   * after which the follower must watch for itself. Returns the unfollow function, or
   * `undefined` when this cache cannot follow it (not watching right now, or filtered out).
   */
  follow(name: string, listener: (view: DgdView | undefined) => void): (() => void) | undefined {
    if (!this.#watching || !this.#synced || !this.#store.wants(name)) return undefined;
    return this.#store.follow(name, listener);
  }

  state(): DgdCacheState {
    const downFor = this.#downSince === undefined ? 0 : this.#clock() - this.#downSince;
    const degraded = !this.#watching && downFor > this.#downBoundMs;
    const [downS, cause] = [Math.round(downFor / 1000), this.#lastError ?? "not connected yet"];
    return {
      enabled: true,
      synced: this.#synced,
      watching: this.#watching,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
      ...(this.#downSince !== undefined ? { downSinceMs: this.#downSince } : {}),
      degraded,
      ...(degraded
        ? { message: `DGD watch down for ${downS} s: ${cause}; GPU budget cache may be stale` }
        : {}),
      dgds: this.#store.size,
      unreadable: this.#store.unreadableCount,
    };
  }

  /**
   * Lists from scratch and resolves after that list (a fresh leader trusts nothing it learnt as
   * a standby). Until then the cache is not synced, so budget decisions fail closed.
   */
  relist(): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#relisted.push(resolve);
    this.#relist = true;
    this.#synced = false;
    this.#watchAbort?.abort(new GlobalPlannerError("re-listing"));
    return promise;
  }

  /**
   * Test hook: ends the current watch and resumes from `resourceVersion` (e.g. one that is too
   * old, to exercise the 410 → re-list path).
   */
  resumeFrom(resourceVersion: string): void {
    this.#resumeOverride = resourceVersion;
    this.#watchAbort?.abort(new GlobalPlannerError("resuming from another resourceVersion"));
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        this.#takeResumeOverride();
        if (this.#relist) {
          this.#relist = false;
          this.#resourceVersion = undefined;
        }
        if (this.#resourceVersion === undefined) await this.#list();
        await this.#watch(this.#resourceVersion!);
      } catch (error) {
        if (signal.aborted) break;
        if (this.#resumeOverride !== undefined || this.#relist) continue; // resumeFrom()/relist() ended it
        if (error instanceof KubeError && error.detail.status === 410) {
          this.#expired("HTTP 410");
          continue;
        }
        await pause(this.#failed(error), signal); // stop() ends the wait
      }
    }
  }

  async #list(): Promise<void> {
    const version = await this.#options.version().catch((error) => {
      throw error instanceof KubeError ? error : new _SetupError(error);
    });
    const listing = this.#store.listing();
    let token: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const query = new URLSearchParams({ limit: String(this.#options.pageSize ?? PAGE_SIZE) });
      if (token) query.set("continue", token);
      const page = await this.#options.client.json<{
        metadata?: { resourceVersion?: string; continue?: string };
        items?: unknown[];
      }>({ method: "GET", verb: "list", ...this.#target(version, query), signal: this.#stop.signal });
      for (const item of page.items ?? []) {
        // Items of a list may omit apiVersion/kind (typed lists do); viewDgd needs them.
        const object = { apiVersion: `${GROUP}/${version}`, kind: DGD_KIND, ...item as object };
        listing.add(object);
      }
      token = page.metadata?.continue || undefined;
      resourceVersion = page.metadata?.resourceVersion;
    } while (token);
    // A view the scaler fed back after this list was taken is newer than the listed copy.
    const { dgds, unreadable } = listing.commit();
    this.#apiVersion = version;
    this.#resourceVersion = resourceVersion ?? "0";
    this.#synced = true;
    this.#settleStart?.resolve();
    this.#settleStart = undefined;
    if (!this.#relist) { for (const resolve of this.#relisted.splice(0)) resolve(); }
    this.#options.logger.info("DGD cache listed", {
      namespace: this.namespace,
      apiVersion: version,
      dgds,
      unreadable,
      resourceVersion: this.#resourceVersion,
    });
  }

  /** One watch request, until the server ends it, it fails, or the resourceVersion expires. */
  async #watch(fromVersion: string): Promise<void> {
    const abort = new AbortController();
    this.#watchAbort = abort;
    const query = new URLSearchParams({
      watch: "true",
      resourceVersion: fromVersion,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(this.#options.watchTimeoutSeconds ?? SERVER_WATCH_TIMEOUT_SECONDS),
    });
    const began = this.#clock();
    let events = 0;
    try {
      const stream = this.#options.client.watch({
        method: "GET",
        verb: "watch",
        ...this.#target(this.#apiVersion!, query),
        signal: AbortSignal.any([this.#stop.signal, abort.signal]),
      }, () => this.#opened(fromVersion));
      for await (const event of stream) {
        events++;
        if (event.type === "ERROR") {
          const status = event.object as { code?: number; message?: string } | undefined;
          if (status?.code === 410) return this.#expired(status.message ?? "410");
          throw new Error(`DGD watch ERROR event ${status?.code ?? "?"}: ${status?.message ?? "no message"}`);
        }
        this.#failures = 0; // the watch delivers: the next failure starts the backoff afresh
        this.#apply(event);
      }
    } finally {
      this.#closed();
      abort.abort();
      if (this.#watchAbort === abort) this.#watchAbort = undefined;
    }
    if (events === 0 && this.#clock() - began < SHORT_WATCH_MS) {
      throw new Error("DGD watch ended at once without any event");
    }
    this.#failures = 0;
  }

  #apply(event: WatchEvent): void {
    const resourceVersion = (event.object as { metadata?: { resourceVersion?: string } } | undefined)
      ?.metadata
      ?.resourceVersion;
    if (resourceVersion) this.#resourceVersion = resourceVersion;
    if (event.type !== "BOOKMARK") this.#store.apply(event);
  }

  #target(version: DgdApiVersion, query: URLSearchParams) {
    return {
      path: `/apis/${GROUP}/${version}/namespaces/${encodeURIComponent(this.namespace)}/${DGD}?${query}`,
      group: GROUP,
      resource: DGD,
      namespace: this.namespace,
    };
  }

  #opened(fromVersion: string): void {
    if (this.#lastError !== undefined) {
      this.#options.logger.info("DGD watch re-established", { resourceVersion: fromVersion });
    } else {
      this.#options.logger.debug("DGD watch opened", { resourceVersion: fromVersion });
    }
    this.#watching = true;
    this.#downSince = undefined;
    this.#lastError = undefined;
  }

  #closed(): void {
    if (this.#watching) this.#downSince = this.#clock();
    this.#watching = false;
    this.#store.unfollowAll();
  }

  #expired(detail: string): void {
    this.#options.logger.info("DGD watch resourceVersion expired; re-listing", {
      namespace: this.namespace,
      detail,
    });
    this.#resourceVersion = undefined;
  }

  /** Records a failure; returns how long to wait before the next attempt. */
  #failed(error: unknown): number {
    // A stalled watch is resumed after the shortest wait: the idle deadline already bounds
    // how often that can happen, and a quiet namespace must not grow the backoff.
    const stalled = error instanceof WatchStalled;
    if (!stalled || this.#failures === 0) this.#failures++;
    this.#lastError = errorText(error);
    this.#downSince ??= this.#clock();
    const waitMs = _backoffMs(this.#failures);
    this.#options.logger[stalled ? "info" : "warn"](
      stalled ? "DGD watch stalled; resuming" : "DGD cache: list/watch failed; retrying",
      {
        namespace: this.namespace,
        error: this.#lastError,
        failures: this.#failures,
        retryInMs: Math.round(waitMs),
      },
    );
    if (!this.#synced && !_retryable(error)) this.#rejectStart(error);
    return waitMs;
  }

  #takeResumeOverride(): void {
    if (this.#resumeOverride === undefined) return;
    this.#resourceVersion = this.#resumeOverride;
    this.#resumeOverride = undefined;
  }

  #rejectStart(error: unknown): void {
    const settle = this.#settleStart;
    this.#settleStart = undefined;
    settle?.reject(error);
  }
}

/** Version discovery failed for a reason other than an API status (e.g. no DGD CRD served). */
class _SetupError extends GlobalPlannerError {
  constructor(cause: unknown) {
    super(errorText(cause), { cause });
  }
}

function _retryable(error: unknown): boolean {
  if (error instanceof _SetupError) return false;
  if (!(error instanceof KubeError)) return true; // broken streams, bad JSON lines, ERROR events
  const status = error.detail.status;
  return status === undefined || status === 408 || status === 429 || status >= 500;
}

function _backoffMs(failures: number): number {
  return backoffMs(failures, { firstMs: BACKOFF_FIRST_MS, maxMs: BACKOFF_MAX_MS });
}
