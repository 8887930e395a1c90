/**
 * `blocking: true`: wait, by watching the DGD (no fixed sleep, no polling), until the operator
 * has taken in what we wrote and reports Ready: every written component shows the desired spec
 * replicas, `status.observedGeneration` (when published) has caught up with
 * `metadata.generation`, and the `Ready` condition is `True`.
 */
import { BlockingTimeout, GlobalPlannerError, KubeError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import type { KubeClient } from "./client.ts";
import { type DgdApiVersion, type DgdView, viewDgd } from "./dgd.ts";
import { dgdRequest, dgdWatchRequest, type ObjectRef } from "./resources.ts";
import { watchEvents } from "./watch_events.ts";

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
}

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
  let view = options.latest;
  while (true) {
    if (settled(view, written)) return view;
    const left = deadline - Date.now();
    if (left <= 0) throw new BlockingTimeout(timeoutText);
    const timer = AbortSignal.timeout(left);
    const signal = AbortSignal.any([options.signal, timer]);
    let expired = false;
    try {
      const response = await client.stream({
        method: "GET",
        verb: "watch",
        ...dgdWatchRequest(version, ref, view.resourceVersion ?? "0", left / 1000),
        signal,
      });
      for await (const event of watchEvents(response.body!)) {
        if (event.type === "ERROR") {
          expired = (event.object as { code?: number })?.code === 410;
          break;
        }
        if (event.type === "DELETED") {
          throw new GlobalPlannerError(`Graph deployment '${ref.name}' was deleted while waiting for Ready`);
        }
        if (event.type === "BOOKMARK") {
          const rv = (event.object as { metadata?: { resourceVersion?: string } })?.metadata?.resourceVersion;
          if (rv) view = { ...view, resourceVersion: rv };
          continue;
        }
        view = viewDgd(event.object);
        if (settled(view, written)) return view;
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
      if (timer.aborted) throw new BlockingTimeout(timeoutText);
      if (error instanceof GlobalPlannerError && !(error instanceof KubeError)) throw error;
      // Denied or unauthenticated: waiting longer cannot help, and polling would hide the RBAC gap.
      if (error instanceof KubeError && (error.detail.status === 401 || error.detail.status === 403)) {
        throw error;
      }
      logger.warn("DGD watch failed; re-reading", { dgd: ref.name, error: String(error) });
      expired = true;
      await new Promise((r) => setTimeout(r, 500));
    }
    if (expired) {
      // resourceVersion too old (410) or the watch broke: start again from a fresh read.
      view = viewDgd(
        await client.json({
          method: "GET",
          verb: "get",
          ...dgdRequest(version, ref),
          signal: options.signal,
        }),
      );
    }
  }
}
