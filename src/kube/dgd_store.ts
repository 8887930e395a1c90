/**
 * What a DGD cache holds, apart from how it is kept current (src/kube/cache.ts lists and watches
 * into it): the readable views of one namespace by name, the objects it could not read, and who
 * listens — `onChange` readers that redo only what changed, and `follow`ers of one DGD.
 *
 * Copies arrive from three places (a list, watch events, and the objects our own writes return)
 * in no guaranteed order, so an older copy never replaces a newer one.
 */
import { errorText } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import { type DgdView, viewDgd } from "./dgd.ts";
import type { WatchEvent } from "./watch_events.ts";

export interface UnreadableDgd {
  /** `"{namespace}/{name}"`. */
  dgd: string;
  reason: string;
}

/** A list being taken: its objects are added page by page and replace the store's at `commit`. */
export interface DgdListing {
  add(object: unknown): void;
  /** Replaces the store's contents (a copy fed back after the list was taken stays); returns the count. */
  commit(): { dgds: number; unreadable: number };
}

export class DgdStore {
  readonly namespace: string;
  #filter: (name: string) => boolean;
  #logger: Logger;
  #views = new Map<string, DgdView>();
  #unreadable = new Map<string, string>();
  #revision = 0;
  /** `follow` listeners by DGD name. */
  #followers = new Map<string, Set<(view: DgdView | undefined) => void>>();
  #changeListeners = new Set<(name: string | undefined) => void>();

  constructor(namespace: string, filter: (name: string) => boolean, logger: Logger) {
    this.namespace = namespace;
    this.#filter = filter;
    this.#logger = logger;
  }

  get(name: string): DgdView | undefined {
    return this.#views.get(name);
  }

  views(): Iterable<DgdView> {
    return this.#views.values();
  }

  get size(): number {
    return this.#views.size;
  }

  get unreadableCount(): number {
    return this.#unreadable.size;
  }

  unreadable(): UnreadableDgd[] {
    return [...this.#unreadable].map(([name, reason]) => ({ dgd: `${this.namespace}/${name}`, reason }));
  }

  /** Whether the cache keeps DGDs of this name at all. */
  wants(name: string): boolean {
    return this.#filter(name);
  }

  /** Grows whenever the views may have changed (a cheap "anything new?" for readers). */
  get revision(): number {
    return this.#revision;
  }

  /**
   * Calls `listener` whenever `revision` grows, with the DGD whose view may have changed, or
   * `undefined` when any may have (a fresh list). Returns the function that stops the calls.
   */
  onChange(listener: (name: string | undefined) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** Takes in the object a write returned (outside the namespace or the filter: ignored). */
  upsert(view: DgdView): void {
    if (view.namespace !== this.namespace || !this.#filter(view.name)) return;
    if (_after(this.#views.get(view.name)?.resourceVersion, view.resourceVersion)) return;
    this.#views.set(view.name, view);
    this.#unreadable.delete(view.name);
    this.#changed(view.name);
  }

  listing(): DgdListing {
    const views = new Map<string, DgdView>();
    const unreadable = new Map<string, string>();
    return {
      add: (object) => this.#read(object, views, unreadable),
      commit: () => {
        for (const [name, view] of views) {
          const cached = this.#views.get(name);
          if (cached && _after(cached.resourceVersion, view.resourceVersion)) views.set(name, cached);
        }
        this.#views = views;
        this.#unreadable = unreadable;
        this.#changed(undefined);
        return { dgds: views.size, unreadable: unreadable.size };
      },
    };
  }

  /** One watch event (not BOOKMARK or ERROR: the cache handles those). */
  apply(event: WatchEvent): void {
    const object = event.object as { metadata?: { name?: string; resourceVersion?: string } } | undefined;
    const name = object?.metadata?.name;
    if (typeof name !== "string") return;
    const resourceVersion = object?.metadata?.resourceVersion;
    if (event.type === "DELETED") {
      const held = this.#views.delete(name);
      if (this.#unreadable.delete(name) || held) this.#member("removed", name, resourceVersion);
      this.unfollowAll(name);
      this.#changed(name);
    } else if (event.type === "ADDED" || event.type === "MODIFIED") {
      // The scaler may have fed back a newer copy (`upsert`) before this event arrived.
      if (_after(this.#views.get(name)?.resourceVersion, resourceVersion)) return;
      this.#read(object, this.#views, this.#unreadable);
      this.#changed(name);
      if (event.type === "ADDED" && (this.#views.has(name) || this.#unreadable.has(name))) {
        this.#member("added", name, resourceVersion);
      }
      const view = this.#views.get(name);
      const followers = this.#followers.get(name);
      if (followers) { for (const listener of [...followers]) view ? listener(view) : listener(undefined); }
    }
  }

  /** `listener` gets the view at once (if any), then each newer one; returns the unfollow function. */
  follow(name: string, listener: (view: DgdView | undefined) => void): () => void {
    let set = this.#followers.get(name);
    if (!set) this.#followers.set(name, set = new Set());
    set.add(listener);
    const current = this.#views.get(name);
    if (current) listener(current);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.#followers.get(name) === set) this.#followers.delete(name);
    };
  }

  /** Tells every follower of `name` (all DGDs when absent) that they are no longer followed. */
  unfollowAll(name?: string): void {
    for (const dgd of name === undefined ? [...this.#followers.keys()] : [name]) {
      const followers = this.#followers.get(dgd);
      this.#followers.delete(dgd);
      for (const listener of followers ?? []) listener(undefined);
    }
  }

  /**
   * Says when the fleet the budget counts gains or loses a DGD after the first list: rare (no
   * line per write), and the one sign that a decision after it judges the new fleet.
   */
  #member(change: "added" | "removed", name: string, resourceVersion: string | undefined): void {
    this.#logger.debug(`DGD cache: DynamoGraphDeployment ${change}`, {
      dgd: `${this.namespace}/${name}`,
      resourceVersion,
    });
  }

  #changed(name: string | undefined): void {
    this.#revision++;
    for (const listener of this.#changeListeners) listener(name);
  }

  /** Puts a readable, wanted object into `views` (else records why it is unreadable). */
  #read(object: unknown, views: Map<string, DgdView>, unreadable: Map<string, string>): void {
    const name = (object as { metadata?: { name?: unknown } })?.metadata?.name;
    if (typeof name !== "string" || !this.#filter(name)) return;
    try {
      views.set(name, viewDgd(object));
      unreadable.delete(name);
    } catch (error) {
      views.delete(name);
      unreadable.set(name, errorText(error));
      this.#logger.warn("DGD cache: skipping a DynamoGraphDeployment it cannot read", {
        dgd: `${this.namespace}/${name}`,
        error: errorText(error),
      });
    }
  }
}

/**
 * Whether resourceVersion `a` is known to be later than `b`. They are opaque to clients in
 * principle, but API servers hand out etcd revisions (integers); when either is not an integer
 * the answer is no, so the latest delivery wins.
 */
function _after(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return BigInt(a) > BigInt(b);
}
