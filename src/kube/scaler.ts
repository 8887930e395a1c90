/**
 * The Kubernetes connector: one scale request → read the DGD once (or take the watch cache's
 * copy), check Ready, resolve every
 * target before any write, then write each changed target through its scaling adapter's
 * `/scale` (or, without an adapter, one patch of the DGD), each write guarded by the
 * resourceVersion it was decided on; a 409 means the decision's basis moved, so re-read and
 * decide again (bounded). Requests for one DGD are applied in arrival order; a blocking wait
 * happens after the DGD's turn, so it delays nobody.
 */
import { KubeError, NotReady } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import {
  type ScaleRequest,
  type ScaleResponse,
  scaleResponse,
  type TargetReplica,
} from "../service/contract.ts";
import type { Scaler } from "../service/handlers.ts";
import { scaledMessage } from "../service/messages.ts";
import type { KubeClient } from "./client.ts";
import {
  adapterName,
  adapterScalePatch,
  currentReplicas,
  dgdReplicaPatch,
  type DgdView,
  type ResolvedTarget,
  resolveTargets,
  viewDgd,
} from "./dgd.ts";
import { adapterScaleRequest, type ApiVersions, dgdRequest, type ObjectRef } from "./resources.ts";
import { KeyedSerializer } from "./serial.ts";
import { waitReady } from "./wait_ready.ts";

export const DEFAULT_BLOCKING_TIMEOUT_SECONDS = 1800;
const MAX_CONFLICT_RETRIES = 3;

export interface KubeScalerOptions {
  client: KubeClient;
  versions: () => Promise<ApiVersions>;
  logger: Logger;
  blockingTimeoutMs?: number;
  /**
   * A cached view to decide on instead of reading (the watch caches: the budget's, or those of
   * the DGDs requests touch). Writes are guarded by its resourceVersion, so a stale view costs
   * a 409 and one fresh read, never a lost update; a decision to write nothing is confirmed by
   * a read.
   */
  cachedView?: (ref: ObjectRef) => DgdView | undefined;
  /** Called with what a write returned or decided (to keep a cache current). */
  onApplied?: (ref: ObjectRef, applied: Applied) => void;
  /** Test seam: runs between the read and the writes of each attempt. */
  beforeWrite?: (ref: ObjectRef, attempt: number) => Promise<void>;
}

export interface Applied {
  /** The latest view: the DGD a patch returned, else the one decided on. */
  view: DgdView;
  /** Component name → replicas written (skipped targets are absent). */
  written: Map<string, number>;
  /** Components written through their scaling adapter (the DGD catches up later). */
  viaAdapter: Set<string>;
  /** `{prefill: n, decode: m}` with the values just written. */
  replicas: Record<string, number>;
}

export class KubeScaler implements Scaler {
  #options: KubeScalerOptions;
  #serial = new KeyedSerializer();
  #shutdown = new AbortController();

  constructor(options: KubeScalerOptions) {
    this.#options = options;
  }

  /** Ends every blocking wait at once (they answer `error`); writes in progress complete. */
  cancelWaits(reason: string): void {
    this.#shutdown.abort(reason);
  }

  async scale(request: ScaleRequest, signal: AbortSignal): Promise<ScaleResponse> {
    const ref = { namespace: request.k8s_namespace, name: request.graph_deployment_name };
    const applied = await this.apply(ref, request.target_replicas, signal);
    if (request.blocking) await this.waitApplied(ref, applied, signal);
    return scaleResponse("success", scaledMessage(ref.name), applied.replicas);
  }

  /** Applies targets to one DGD, in arrival order with other requests for the same DGD. */
  async apply(ref: ObjectRef, targets: readonly TargetReplica[], signal: AbortSignal): Promise<Applied> {
    const versions = await this.#options.versions();
    const applied = await this.#serial.run(
      `${ref.namespace}/${ref.name}`,
      () => this.#apply(ref, targets, versions, signal),
    );
    this.#options.onApplied?.(ref, applied);
    return applied;
  }

  /** `blocking: true`: waits (by watch) until the DGD has taken in what was written and is Ready. */
  async waitApplied(ref: ObjectRef, applied: Applied, signal: AbortSignal): Promise<void> {
    if (applied.written.size === 0) return;
    const versions = await this.#options.versions();
    await waitReady({
      client: this.#options.client,
      version: versions.dgd,
      ref,
      written: applied.written,
      latest: applied.view,
      timeoutMs: this.#options.blockingTimeoutMs ?? DEFAULT_BLOCKING_TIMEOUT_SECONDS * 1000,
      signal: AbortSignal.any([signal, this.#shutdown.signal]),
      logger: this.#options.logger,
    });
  }

  async #apply(
    ref: ObjectRef,
    targets: readonly TargetReplica[],
    versions: ApiVersions,
    signal: AbortSignal,
  ): Promise<Applied> {
    let conflicts = 0;
    let cacheAllowed = true;
    while (true) {
      const { view, cached } = await this.#view(ref, versions, signal, cacheAllowed);
      cacheAllowed = false;
      if (!view.ready) {
        throw new NotReady(
          `DynamoGraphDeployment is not ready (name: '${ref.name}' in namespace '${ref.namespace}')`,
        );
      }
      let resolved: ResolvedTarget[];
      try {
        resolved = resolveTargets(view, targets);
      } catch (error) {
        if (cached) continue; // the copy may predate the component: decide on a fresh read
        throw error;
      }
      // No write means no resourceVersion guard: a copy behind someone else's change would
      // answer "already there" without checking, so a no-op is only decided on a fresh read.
      if (
        cached && resolved.every((t) => !t.component.scalingAdapter && t.component.replicas === t.desired)
      ) {
        continue;
      }
      await this.#options.beforeWrite?.(ref, conflicts);
      try {
        return await this.#write(ref, view, resolved, versions, signal);
      } catch (error) {
        const status = _status(error);
        // 409: the basis moved; 404 on a cached copy: the DGD is gone (the read says so).
        const stale = status === 409 || (cached && status === 404);
        if (!stale || conflicts >= MAX_CONFLICT_RETRIES) throw error;
        conflicts++;
        this.#options.logger.info("write conflict; re-reading and deciding again", {
          dgd: ref.name,
          attempt: conflicts - 1,
          cached,
        });
      }
    }
  }

  /**
   * The view to decide on: the cached copy when allowed and Ready, else a read. A cached view
   * that says "not Ready" may just be behind the watch, so it is confirmed by reading.
   */
  async #view(
    ref: ObjectRef,
    versions: ApiVersions,
    signal: AbortSignal,
    cacheAllowed: boolean,
  ): Promise<{ view: DgdView; cached: boolean }> {
    const cached = cacheAllowed ? this.#options.cachedView?.(ref) : undefined;
    if (cached?.ready) return { view: cached, cached: true };
    return { view: await this.#readDgd(ref, versions, signal), cached: false };
  }

  async #write(
    ref: ObjectRef,
    view: DgdView,
    targets: ResolvedTarget[],
    versions: ApiVersions,
    signal: AbortSignal,
  ): Promise<Applied> {
    const written = new Map<string, number>();
    const viaAdapter = new Set<string>();
    const direct: ResolvedTarget[] = [];
    for (const target of targets) {
      if (
        target.component.scalingAdapter && await this.#writeAdapter(ref, target, versions, signal, written)
      ) {
        if (written.has(target.component.name)) viaAdapter.add(target.component.name);
        continue;
      }
      direct.push(target);
    }
    let latest = view;
    const changed = direct.filter((t) => {
      if (t.component.replicas !== t.desired) return true;
      this.#skip(ref, t);
      return false;
    });
    if (changed.length > 0) {
      latest = await this.#patchDgd(ref, view, changed, versions, signal);
      for (const t of changed) written.set(t.component.name, t.desired);
    }
    // Spec counts as just written win over what the DGD shows: the operator copies adapter
    // values into the DGD asynchronously.
    const replicas = currentReplicas(latest);
    for (const t of targets) if (written.has(t.component.name)) replicas[t.role] = t.desired;
    return { view: latest, written, viaAdapter, replicas };
  }

  /** Returns false when the adapter does not exist (the caller patches the DGD instead). */
  async #writeAdapter(
    ref: ObjectRef,
    target: ResolvedTarget,
    versions: ApiVersions,
    signal: AbortSignal,
    written: Map<string, number>,
  ): Promise<boolean> {
    const adapter = { namespace: ref.namespace, name: adapterName(ref.name, target.component.name) };
    const request = adapterScaleRequest(versions.adapter, adapter);
    let scale: { metadata?: { resourceVersion?: string }; spec?: { replicas?: number } };
    try {
      scale = await this.#options.client.json({ method: "GET", verb: "get", ...request, signal });
    } catch (error) {
      if (_status(error) === 404) {
        this.#options.logger.info("no scaling adapter; patching the DGD", {
          dgd: ref.name,
          adapter: adapter.name,
        });
        return false;
      }
      throw error;
    }
    if ((scale.spec?.replicas ?? 0) === target.desired) {
      this.#skip(ref, target);
      return true;
    }
    const patch = adapterScalePatch(target.desired, scale.metadata?.resourceVersion);
    await this.#options.client.json({
      method: "PATCH",
      verb: "patch",
      ...request,
      body: patch.body,
      contentType: patch.contentType,
      signal,
    });
    written.set(target.component.name, target.desired);
    this.#options.logger.info("scaled through adapter", {
      dgd: ref.name,
      adapter: adapter.name,
      replicas: target.desired,
    });
    return true;
  }

  /** One patch for every direct target, guarded by the resourceVersion of the read. */
  async #patchDgd(
    ref: ObjectRef,
    view: DgdView,
    targets: ResolvedTarget[],
    versions: ApiVersions,
    signal: AbortSignal,
  ) {
    const patches = targets.map((t) => dgdReplicaPatch(view, t.component.name, t.desired));
    let body: unknown;
    if (view.shape === "services") {
      const services: Record<string, unknown> = {};
      for (const p of patches) {
        Object.assign(services, (p.body as { spec: { services: object } }).spec.services);
      }
      body = { metadata: { resourceVersion: view.resourceVersion }, spec: { services } };
    } else {
      // A resourceVersion inside the patched object is a precondition: 409 if the DGD moved.
      body = [
        { op: "replace", path: "/metadata/resourceVersion", value: view.resourceVersion },
        ...patches.flatMap((p) => p.body as unknown[]),
      ];
    }
    const updated = await this.#options.client.json({
      method: "PATCH",
      verb: "patch",
      ...dgdRequest(versions.dgd, ref),
      body,
      contentType: patches[0].contentType,
      signal,
    });
    this.#options.logger.info("scaled DGD", {
      dgd: ref.name,
      k8s_namespace: ref.namespace,
      replicas: Object.fromEntries(targets.map((t) => [t.component.name, t.desired])),
    });
    return viewDgd(updated);
  }

  async #readDgd(ref: ObjectRef, versions: ApiVersions, signal: AbortSignal): Promise<DgdView> {
    try {
      return viewDgd(
        await this.#options.client.json({
          method: "GET",
          verb: "get",
          ...dgdRequest(versions.dgd, ref),
          signal,
        }),
      );
    } catch (error) {
      if (_status(error) === 404) {
        throw new KubeError(
          `Parent DynamoGraphDeployment not found (name: '${ref.name}' in namespace '${ref.namespace}')`,
          {
            verb: "get",
            resource: "dynamographdeployments",
            name: ref.name,
            namespace: ref.namespace,
            status: 404,
          },
          { cause: error },
        );
      }
      throw error;
    }
  }

  #skip(ref: ObjectRef, target: ResolvedTarget) {
    this.#options.logger.info("already at desired replica count; skipping", {
      dgd: ref.name,
      component: target.component.name,
      replicas: target.desired,
    });
  }
}

function _status(error: unknown): number | undefined {
  return error instanceof KubeError ? error.detail.status : undefined;
}
