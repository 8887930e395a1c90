/**
 * `blocking: true`: wait, by watching the DGD (no fixed sleep, no polling), until the operator
 * has taken in what we wrote and reports Ready: every written component shows the desired spec
 * replicas, `status.observedGeneration` (when published) has caught up with
 * `metadata.generation`, and the `Ready` condition is `True`.
 *
 * A DGD whose namespace we already watch is followed on that watch: no watch request of its own
 * (16 blocking planners would otherwise open 16 watches on the API server just when it is
 * busiest with their writes, and every Ready event would be read twice). Once that watch stops
 * delivering, the wait watches for itself from the latest view it has.
 */
import { BlockingTimeout, errorText, GlobalPlannerError, KubeError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import type { KubeClient } from "./client.ts";
import { type DgdApiVersion, type DgdView, viewDgd } from "./dgd.ts";
import { dgdRequest, dgdWatchRequest, type ObjectRef } from "./resources.ts";
import { backoffMs, MAX_TIMER_MS, pause } from "../timing.ts";

export interface WaitOptions {
  client: KubeClient;
  version: DgdApiVersion;
  ref: ObjectRef;
  /** Component name → desired replicas, as written. */
  written: Map<string, number>;
  /** The latest view we have (after our write): checked first, watched from its resourceVersion. */
  latest: DgdView;
  timeoutMs: number;
  signal: AbortSignal;
  logger: Logger;
  /** Follows the DGD on a watch we already have (see `DgdCache.follow`); `undefined`: cannot. */
  follow?: Follow;
}

export type Follow = (
  ref: ObjectRef,
  listener: (view: DgdView | undefined) => void,
) => (() => void) | undefined;

export function settled(view: DgdView, written: Map<string, number>): boolean {
  if (!view.ready) return false;
  if (
    view.observedGeneration !== undefined && view.generation !== undefined &&
    view.observedGeneration < view.generation
  ) {
    return false;
  }
  for (const [name, desired] of written) {
    if (view.components.find((c) => c.name === name)?.replicas !== desired) return false;
  }
  return true;
}

export async function waitReady(options: WaitOptions): Promise<DgdView> {
  const { client, version, ref, written, logger } = options;
  const deadline = Date.now() + options.timeoutMs;
  const timeoutText = `Graph deployment '${ref.name}' is not ready after ${
    Math.round(options.timeoutMs / 1000)
  } seconds`;
  const timer = AbortSignal.timeout(Math.min(options.timeoutMs, MAX_TIMER_MS));
  const signal = AbortSignal.any([options.signal, timer]);
  let view = options.latest;
  if (!settled(view, written) && options.follow) {
    const followed = await _follow(options, options.follow, view, signal);
    if (followed.ready) return readyNow(followed.view, "cache", options);
    view = followed.view;
  }
  /** The view's resourceVersion may be stale (410, or a broken watch): read the DGD again first. */
  let reread = false;
  let failures = 0;
  while (true) {
    try {
      if (reread) {
        view = viewDgd(
          await client.json({ method: "GET", verb: "get", ...dgdRequest(version, ref), signal }),
        );
        reread = false;
      }
      if (settled(view, written)) return readyNow(view, "read", options);
      const left = deadline - Date.now();
      if (left <= 0) throw new BlockingTimeout(timeoutText);
      let events = 0;
      const began = Date.now();
      const stream = client.watch({
        method: "GET",
        verb: "watch",
        // Short watches, resumed: below the client's idle deadline (no bookmarks on quiet watches).
        ...dgdWatchRequest(
          version,
          ref,
          view.resourceVersion ?? "0",
          Math.min(left / 1000, WAIT_WATCH_SECONDS),
        ),
        signal,
      });
      for await (const event of stream) {
        events++;
        if (event.type === "ERROR") {
          const status = event.object as { code?: number; message?: string } | undefined;
          if (status?.code !== 410) {
            throw new GlobalPlannerError(
              `DGD watch ERROR event ${status?.code ?? "?"}: ${status?.message ?? ""}`,
            );
          }
          reread = true;
          break;
        }
        if (event.type === "DELETED") {
          throw new DgdDeleted(`Graph deployment '${ref.name}' was deleted while waiting for Ready`);
        }
        if (event.type === "BOOKMARK") {
          const rv = (event.object as { metadata?: { resourceVersion?: string } })?.metadata?.resourceVersion;
          if (rv) view = { ...view, resourceVersion: rv };
          continue;
        }
        view = viewDgd(event.object);
        if (settled(view, written)) return readyNow(view, "watch", options);
      }
      // The server ended the watch (its timeout, or 410): resume. Only a watch that delivered
      // nothing and ended at once counts against the backoff, so a flapping server cannot make
      // this spin while a quiet watch that ran its course resumes without delay.
      if (events > 0 || Date.now() - began >= SHORT_WATCH_MS) failures = 0;
      else {
        failures++;
        logger.debug("DGD watch ended at once without events; resuming after a backoff", {
          dgd: ref.name,
          failures,
        });
      }
    } catch (error) {
      if (options.signal.aborted) {
        throw new GlobalPlannerError(
          `Blocking wait for graph deployment '${ref.name}' cancelled: ${
            String(options.signal.reason ?? "shutdown")
          }; ` +
            "the replicas were written, readiness was not confirmed",
        );
      }
      if (timer.aborted || error instanceof BlockingTimeout) throw new BlockingTimeout(timeoutText);
      if (error instanceof DgdDeleted) throw error;
      // Denied or unauthenticated: waiting longer cannot help, and polling would hide the RBAC gap.
      if (error instanceof KubeError && (error.detail.status === 401 || error.detail.status === 403)) {
        throw error;
      }
      if (error instanceof KubeError && error.detail.status === 404) throw error;
      failures++;
      reread = true;
      logger.warn("DGD watch failed; re-reading after a backoff", {
        dgd: ref.name,
        error: errorText(error),
        failures,
      });
    }
    if (failures > 0) {
      await pause(backoffMs(failures, WAIT_BACKOFF), signal);
    }
  }
}

/** Waits on a watch we already have; `ready: false` when it stopped following (or the wait ended). */
async function _follow(
  options: WaitOptions,
  follow: Follow,
  latest: DgdView,
  signal: AbortSignal,
): Promise<{ ready: boolean; view: DgdView }> {
  if (signal.aborted) return { ready: false, view: latest };
  const { promise, resolve } = Promise.withResolvers<boolean>();
  let view = latest;
  const unfollow = follow(options.ref, (next) => {
    if (next === undefined) return resolve(false);
    // A copy from before our write (a cache fed no write back) says nothing about it.
    if ((next.generation ?? 0) < (view.generation ?? 0)) return;
    view = next;
    if (settled(next, options.written)) resolve(true);
  });
  if (!unfollow) return { ready: false, view: latest };
  options.logger.debug(FOLLOW_MESSAGE, { dgd: options.ref.name, namespace: options.ref.namespace });
  const ended = () => resolve(false);
  signal.addEventListener("abort", ended, { once: true });
  try {
    return { ready: await promise, view };
  } finally {
    unfollow();
    signal.removeEventListener("abort", ended);
  }
}

/** The instant the wait ends is what a blocking answer's latency after Ready is made of. */
function readyNow(view: DgdView, via: "read" | "watch" | "cache", options: WaitOptions): DgdView {
  options.logger.debug(READY_MESSAGE, {
    dgd: options.ref.name,
    namespace: options.ref.namespace,
    generation: view.generation,
    resourceVersion: view.resourceVersion,
    via,
  });
  return view;
}

/** Logged (debug) when a wait follows the DGD on a watch we already have. */
export const FOLLOW_MESSAGE = "blocking wait follows the DGD on its namespace's watch";

/** Logged (debug) when the wait ends: the benchmark reads its time. */
export const READY_MESSAGE = "DGD ready for the written replicas";

const WAIT_BACKOFF = { firstMs: 250, maxMs: 10_000 };
const WAIT_WATCH_SECONDS = 60;
/** A watch that ends sooner than this without any event is a failure (backoff), not a resume. */
const SHORT_WATCH_MS = 1_000;

/** The DGD went away during the wait: no retry can bring it back. */
class DgdDeleted extends GlobalPlannerError {}
