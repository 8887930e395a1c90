/**
 * The Kubernetes side of the scaling use case (`ScalePort` of src/service/scale_use_case.ts):
 * reads the DGD (or takes the budget's cached view), resolves targets on it, writes each changed
 * target through its scaling adapter's `/scale` (or, without an adapter, one patch of the DGD),
 * each write guarded by the resourceVersion it was decided on (a 409 becomes `WriteConflict`),
 * and waits by watch for a blocking request.
 */
import { KubeError, WriteConflict } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import type { TargetReplica } from "../service/contract.ts";
import type { AppliedTargets, ScalePort, WriteOptions } from "../service/scale_use_case.ts";
import type { KubeClient } from "./client.ts";
import {
  adapterName,
  adapterScalePatch,
  currentReplicas,
  dgdReplicaPatch,
  type DgdView,
  JSON_PATCH,
  MERGE_PATCH,
  type ResolvedTarget,
  resolveTargets,
  viewDgd,
} from "./dgd.ts";
import { adapterScaleRequest, type ApiVersions, dgdRequest, type ObjectRef } from "./resources.ts";
import { type Follow, waitReady } from "./wait_ready.ts";

export interface KubeScalerOptions {
  client: KubeClient;
  versions: () => Promise<ApiVersions>;
  logger: Logger;
  /**
   * A cached view to decide on instead of reading (budget mode: the watch cache). Writes are
   * guarded by its resourceVersion, so a stale view costs a 409 and one fresh read, never a
   * lost update.
   */
  cachedView?: (ref: ObjectRef) => DgdView | undefined;
  /**
   * True while a connected watch keeps the cached view of `ref` current: a no-op may then be
   * answered from it (the watch is its guard, as the resourceVersion is a write's).
   */
  watching?: (ref: ObjectRef) => boolean;
  /** Called with what a write returned or decided (to keep a cache current). */
  onApplied?: (ref: ObjectRef, applied: Applied) => void;
  /** Follows a DGD on a watch cache (a blocking wait then opens no watch of its own). */
  follow?: Follow;
}

export interface Applied extends AppliedTargets {
  /** The latest view: the DGD a patch returned, else the one decided on. */
  view: DgdView;
  /** Components written through their scaling adapter (the DGD catches up later). */
  viaAdapter: Set<string>;
}

export class KubeScaler implements ScalePort<DgdView, ResolvedTarget, Applied> {
  #options: KubeScalerOptions;
  /** Views that came from a watch cache rather than a read (see `read`). */
  #cached = new WeakSet<DgdView>();

  constructor(options: KubeScalerOptions) {
    this.#options = options;
  }

  /** The one place the scaler reads a DGD from. */
  async read(ref: ObjectRef, fresh: boolean, signal: AbortSignal): Promise<DgdView> {
    // A cached view that says "not Ready" may just be behind the watch: confirm by reading.
    const cached = fresh ? undefined : this.#options.cachedView?.(ref);
    if (cached?.ready) {
      this.#cached.add(cached);
      return cached;
    }
    return await this.#readDgd(ref, await this.#options.versions(), signal);
  }

  resolve(view: DgdView, targets: readonly TargetReplica[]): ResolvedTarget[] {
    try {
      return resolveTargets(view, targets);
    } catch (error) {
      // A cached copy may predate the component: decide on a fresh read instead.
      if (this.#cached.has(view)) throw this.#staleCopy(view, "a target is not in the cached copy", error);
      throw error;
    }
  }

  replicas(view: DgdView): Record<string, number> {
    return currentReplicas(view);
  }

  onApplied(ref: ObjectRef, applied: Applied): void {
    this.#options.onApplied?.(ref, applied);
  }

  async waitApplied(ref: ObjectRef, applied: Applied, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const versions = await this.#options.versions();
    await waitReady({
      client: this.#options.client,
      version: versions.dgd,
      ref,
      written: applied.written,
      latest: applied.view,
      timeoutMs,
      signal,
      logger: this.#options.logger,
      follow: this.#options.follow,
    });
  }

  async write(
    ref: ObjectRef,
    view: DgdView,
    targets: ResolvedTarget[],
    signal: AbortSignal,
    options: WriteOptions = {},
  ): Promise<Applied> {
    const cached = this.#cached.has(view);
    // No write means no resourceVersion guard: a copy behind someone else's change would answer
    // "already there" unchecked, so a no-op is decided on a fresh read unless a connected watch
    // keeps the copy current.
    if (
      cached && !(this.#options.watching?.(ref) ?? false) &&
      targets.every((t) => !t.component.scalingAdapter && t.component.replicas === t.desired)
    ) {
      throw this.#staleCopy(view, "nothing to write on a cached copy");
    }
    const versions = await this.#options.versions();
    try {
      return await this.#write(ref, view, targets, versions, signal, options);
    } catch (error) {
      if (error instanceof WriteConflict || !(error instanceof KubeError)) throw error;
      // 409: the basis moved; 404 on a cached copy: the DGD may be gone (a fresh read says so).
      if (error.detail.status === 409 || (cached && error.detail.status === 404)) {
        throw new WriteConflict(error.message, error.detail, { cause: error });
      }
      throw error;
    }
  }

  /** Makes the core read fresh and decide again (a conflict without a write). */
  #staleCopy(view: DgdView, why: string, cause?: unknown): WriteConflict {
    return new WriteConflict(`cached DynamoGraphDeployment ${view.name}: ${why}; reading it`, {
      verb: "get",
      resource: "dynamographdeployments",
      name: view.name,
      namespace: view.namespace,
    }, { cause });
  }

  async #write(
    ref: ObjectRef,
    view: DgdView,
    targets: ResolvedTarget[],
    versions: ApiVersions,
    signal: AbortSignal,
    options: WriteOptions,
  ): Promise<Applied> {
    const written = new Map<string, number>();
    const viaAdapter = new Set<string>();
    const direct: ResolvedTarget[] = [];
    for (const target of targets) {
      if (
        target.component.scalingAdapter &&
        await this.#writeAdapter(ref, target, versions, signal, written, options.dryRun === true)
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
    const annotations = options.annotations ?? {};
    if (changed.length > 0 || Object.keys(annotations).length > 0) {
      // The annotations ride on the replica patch (one write); alone when nothing else changes.
      latest = await this.#patchDgd(
        ref,
        view,
        changed,
        versions,
        signal,
        annotations,
        options.dryRun === true,
      );
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
    dryRun: boolean,
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
      path: dryRun ? withDryRun(request.path) : request.path,
      body: patch.body,
      contentType: patch.contentType,
      signal,
    });
    written.set(target.component.name, target.desired);
    this.#options.logger.info(dryRun ? "dry run: would scale through adapter" : "scaled through adapter", {
      dgd: ref.name,
      adapter: adapter.name,
      replicas: target.desired,
    });
    return true;
  }

  /** One patch for every direct target (and our annotations), guarded by the resourceVersion of the read. */
  async #patchDgd(
    ref: ObjectRef,
    view: DgdView,
    targets: ResolvedTarget[],
    versions: ApiVersions,
    signal: AbortSignal,
    annotations: Record<string, string>,
    dryRun: boolean,
  ) {
    const patches = targets.map((t) => dgdReplicaPatch(view, t.component.name, t.desired));
    const annotated = Object.keys(annotations).length > 0;
    let body: unknown;
    let contentType: string;
    if (view.shape === "services") {
      const services: Record<string, unknown> = {};
      for (const p of patches) {
        Object.assign(services, (p.body as { spec: { services: object } }).spec.services);
      }
      body = {
        metadata: { resourceVersion: view.resourceVersion, ...(annotated ? { annotations } : {}) },
        ...(patches.length ? { spec: { services } } : {}),
      };
      contentType = MERGE_PATCH;
    } else {
      // A resourceVersion inside the patched object is a precondition: 409 if the DGD moved.
      body = [
        { op: "replace", path: "/metadata/resourceVersion", value: view.resourceVersion },
        ...patches.flatMap((p) => p.body as unknown[]),
        ...annotationOps(view, annotations),
      ];
      contentType = JSON_PATCH;
    }
    const request = dgdRequest(versions.dgd, ref);
    const updated = await this.#options.client.json({
      method: "PATCH",
      verb: "patch",
      ...request,
      path: dryRun ? withDryRun(request.path) : request.path,
      body,
      contentType,
      signal,
    });
    if (targets.length > 0) {
      this.#options.logger.info(dryRun ? "dry run: would scale DGD" : "scaled DGD", {
        dgd: ref.name,
        k8s_namespace: ref.namespace,
        replicas: Object.fromEntries(targets.map((t) => [t.component.name, t.desired])),
      });
    }
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

/** Kubernetes server-side dry run: validated and admitted, never persisted. */
export function withDryRun(path: string): string {
  return `${path}${path.includes("?") ? "&" : "?"}dryRun=All`;
}

/** JSON-patch ops setting our annotations without touching anyone else's. */
function annotationOps(view: DgdView, annotations: Record<string, string>): unknown[] {
  const entries = Object.entries(annotations);
  if (entries.length === 0) return [];
  if (Object.keys(view.annotations).length === 0) {
    // None to keep (the resourceVersion guard catches one added since the read).
    return [{ op: "add", path: "/metadata/annotations", value: annotations }];
  }
  return entries.map(([key, value]) => ({
    op: "add",
    path: `/metadata/annotations/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`,
    value,
  }));
}

function _status(error: unknown): number | undefined {
  return error instanceof KubeError ? error.detail.status : undefined;
}
