/**
 * Kubernetes discovery (`DYN_DISCOVERY_BACKEND=kubernetes`), the writer side as the 1.6.1
 * runtime does it: one DynamoWorkerMetadata named after the pod (or `{pod}-{container}`),
 * owned by the Pod, carrying every endpoint record, written by server-side apply. Callers join
 * it with the ready EndpointSlice entries of the pod (by pod uid), so the pod's readiness
 * probe, which follows `healthy`, decides whether anyone routes here.
 *
 * Self-healing: after the first apply the object itself is watched; a deletion, or a change to
 * its data or owner references made by anyone else, is answered by applying it again (force
 * takes our fields back). A watch that breaks is reopened after a jittered backoff, and every
 * reopening applies first, since a deletion may have gone unseen. `healthy` is false from a
 * detected loss until the re-apply succeeds. A broken watch alone (API server unreachable) does
 * not turn it false: the CR is most likely still in place, and dropping every replica from its
 * EndpointSlice because the API server blinked would be worse; the apply after reconnecting
 * settles it. Unlike the runtime (one apply per endpoint), all endpoints go in one apply.
 *
 * Failures: at start, transient API errors (unreachable, 408, 409, 429, 5xx) are retried with
 * jittered backoff until `startTimeoutMs`; an error retrying cannot fix (403 without the RBAC
 * verb, 404 without the CRD, 422 for a refused object) fails the start at once. Later, every
 * failure is retried until `close()`. Graceful shutdown applies the object with no endpoints
 * (the runtime does the same), so callers drop us before the process exits.
 */
import type { KubeIdentity } from "../../config/env.ts";
import { DiscoveryError, errorText } from "../../errors.ts";
import type { Logger } from "../../ops/log.ts";
import type { Discovery, EndpointRecord, RecordSource } from "./discovery.ts";
import { backoffMs, pause } from "../../timing.ts";
import { kubeInstanceId } from "./instance_id.ts";
import {
  publishedState,
  type WorkerMetadataApi,
  type WorkerMetadataObject,
  workerMetadataObject,
} from "./worker_metadata.ts";

export interface KubernetesDiscoveryOptions {
  identity: KubeIdentity;
  api: WorkerMetadataApi;
  logger: Logger;
  /** How long start-up retries transient errors before giving up (default 60 s). */
  startTimeoutMs?: number;
  /** First and largest retry delay (default 250 ms, 10 s); each delay is jittered to 50–100 %. */
  backoffFirstMs?: number;
  backoffMaxMs?: number;
  /** How long the shutdown apply may take (default 5 s). */
  deregisterTimeoutMs?: number;
  /** Injectable time, for tests of the retry policy. */
  clock?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
}

/** A watch that ends this fast with no event counts as a failure. */
const SHORT_WATCH_MS = 250;

/** HTTP statuses worth retrying: the request may succeed unchanged later. */
function _transient(error: unknown): boolean {
  const status = (error as { detail?: { status?: number } })?.detail?.status;
  return status === undefined || status === 408 || status === 409 || status === 429 || status >= 500;
}

function _status(error: unknown): number | undefined {
  return (error as { detail?: { status?: number } })?.detail?.status;
}

export class KubernetesDiscovery implements Discovery {
  readonly instanceId: bigint;
  /** Never rejects: a lost registration is re-applied, not fatal. */
  readonly lost: Promise<never> = new Promise<never>(() => {});
  #identity: KubeIdentity;
  #api: WorkerMetadataApi;
  #logger: Logger;
  #startTimeoutMs: number;
  #firstMs: number;
  #maxMs: number;
  #deregisterTimeoutMs: number;
  #clock: () => number;
  #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  #random: () => number;
  #records: EndpointRecord[] = [];
  #baseline?: string;
  #resourceVersion = "0";
  #registered = false;
  #closed = false;
  #stop = new AbortController();
  #loop?: Promise<void>;
  #deregistered?: Promise<void>;

  constructor(options: KubernetesDiscoveryOptions) {
    this.#identity = options.identity;
    this.#api = options.api;
    this.#logger = options.logger;
    this.#startTimeoutMs = options.startTimeoutMs ?? 60_000;
    this.#firstMs = options.backoffFirstMs ?? 250;
    this.#maxMs = options.backoffMaxMs ?? 10_000;
    this.#deregisterTimeoutMs = options.deregisterTimeoutMs ?? 5_000;
    this.#clock = options.clock ?? Date.now;
    this.#sleep = options.sleep ?? ((ms, signal) => pause(ms, signal).then(() => {}));
    this.#random = options.random ?? Math.random;
    this.instanceId = kubeInstanceId(options.identity.crName);
  }

  get healthy(): boolean {
    return this.#registered && !this.#closed;
  }

  /** The object as we publish it now (tests compare it with what the runtime writes). */
  desired(): WorkerMetadataObject {
    return workerMetadataObject(this.#identity, this.#records);
  }

  /** The id is derived from the CR name, so it never changes: a source is called once. */
  get records(): EndpointRecord[] {
    return this.#records;
  }

  async register(records: EndpointRecord[] | RecordSource): Promise<void> {
    if (this.#closed) throw new DiscoveryError("Kubernetes discovery is closed");
    const added = typeof records === "function" ? await records(this.instanceId) : records;
    this.#records = [...this.#records, ...added];
    await this.#publish(this.#clock() + this.#startTimeoutMs);
    this.#registered = true;
    this.#logger.info("DynamoWorkerMetadata published", this.#fields());
    this.#loop ??= this.#watchLoop();
  }

  deregister(): Promise<void> {
    return this.#deregistered ??= this.#withdraw();
  }

  /**
   * For a standby: the pod's CR outlives a container restart, so endpoints the previous process
   * of this pod published (it crashed, or lost its lease) would keep routing callers to a
   * process that no longer serves them. Empties them if present; never creates the CR.
   */
  async withdrawPredecessor(): Promise<void> {
    try {
      const found = await this.#api.clearEndpoints(
        this.#identity.podNamespace,
        this.#identity.crName,
        AbortSignal.timeout(this.#deregisterTimeoutMs),
      );
      if (found) {
        this.#logger.info("endpoints left by a previous process of this pod withdrawn", this.#fields());
      }
    } catch (error) {
      this.#logger.warn(
        "cannot withdraw endpoints a previous process of this pod left in its DynamoWorkerMetadata",
        { ...this.#fields(), error: errorText(error) },
      );
    }
  }

  async close(): Promise<void> {
    await this.deregister();
    await this.#loop;
  }

  async #withdraw(): Promise<void> {
    const wasRegistered = this.#registered;
    this.#closed = true;
    this.#registered = false;
    this.#stop.abort(new DiscoveryError("Kubernetes discovery stopped"));
    await this.#loop;
    if (!wasRegistered && this.#baseline === undefined) return;
    try {
      await this.#api.apply(
        workerMetadataObject(this.#identity, []),
        AbortSignal.timeout(this.#deregisterTimeoutMs),
      );
      this.#logger.info("DynamoWorkerMetadata endpoints withdrawn", this.#fields());
    } catch (error) {
      this.#logger.warn(
        "cannot withdraw the endpoints from DynamoWorkerMetadata; callers keep them until the pod is gone",
        { ...this.#fields(), error: errorText(error) },
      );
    }
  }

  /**
   * Applies the object until it succeeds. With a `deadline` (start-up) only transient errors
   * are retried and only until then; without one, everything is retried until `close()`.
   */
  async #publish(deadline?: number): Promise<void> {
    const object = this.desired();
    for (let attempt = 1;; attempt++) {
      try {
        const stored = await this.#api.apply(object, this.#stop.signal);
        this.#baseline = publishedState(stored);
        this.#resourceVersion = stored.metadata?.resourceVersion ?? "0";
        return;
      } catch (error) {
        if (this.#closed) throw new DiscoveryError("Kubernetes discovery stopped", { cause: error });
        const delay = this.#delay(attempt);
        if (deadline !== undefined && !_transient(error)) {
          throw new DiscoveryError(
            `cannot publish DynamoWorkerMetadata '${this.#identity.crName}' in namespace ` +
              `'${this.#identity.podNamespace}': ${errorText(error)}`,
            { cause: error },
          );
        }
        if (deadline !== undefined && this.#clock() + delay > deadline) {
          throw new DiscoveryError(
            `cannot publish DynamoWorkerMetadata '${this.#identity.crName}' in namespace ` +
              `'${this.#identity.podNamespace}' within ${this.#startTimeoutMs} ms (${attempt} attempts): ` +
              errorText(error),
            { cause: error },
          );
        }
        this.#logger.warn("cannot publish DynamoWorkerMetadata; retrying", {
          ...this.#fields(),
          attempt,
          status: _status(error),
          retry_in_ms: Math.round(delay),
          error: errorText(error),
        });
        await this.#sleep(delay, this.#stop.signal);
      }
    }
  }

  #delay(attempt: number): number {
    return backoffMs(attempt, { firstMs: this.#firstMs, maxMs: this.#maxMs, random: this.#random });
  }

  async #watchLoop(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      let lost: string | undefined;
      const opened = this.#clock();
      let events = 0;
      try {
        for await (
          const event of this.#api.watch(
            this.#identity.podNamespace,
            this.#identity.crName,
            this.#resourceVersion,
            this.#stop.signal,
          )
        ) {
          failures = 0;
          events++;
          const rv = (event.object as WorkerMetadataObject)?.metadata?.resourceVersion;
          if (event.type === "ERROR") {
            // Typically 410 (the version is too old): start again from a fresh apply.
            lost = "watch interrupted";
            break;
          }
          if (rv) this.#resourceVersion = rv;
          if (event.type === "BOOKMARK") continue;
          if (event.type === "DELETED") lost = "deleted by someone else";
          else if (publishedState(event.object) !== this.#baseline) lost = "changed by someone else";
          if (lost) break;
        }
      } catch (error) {
        if (this.#closed) return;
        failures++;
        const delay = this.#delay(failures);
        this.#logger.warn("DynamoWorkerMetadata watch failed; re-applying after a pause", {
          ...this.#fields(),
          status: _status(error),
          retry_in_ms: Math.round(delay),
          error: errorText(error),
        });
        await this.#sleep(delay, this.#stop.signal);
        // Whatever happened while unwatched is repaired by applying again.
        lost = "watch interrupted";
      }
      if (this.#closed) return;
      if (lost === undefined && events === 0 && this.#clock() - opened < SHORT_WATCH_MS) {
        // Ended at once without an event: not a normal server timeout; do not spin.
        failures++;
        await this.#sleep(this.#delay(failures), this.#stop.signal);
        lost = "watch interrupted";
      }
      if (this.#closed) return;
      if (lost === undefined) continue; // the server ended the watch: resume from the last version
      if (lost !== "watch interrupted") {
        this.#registered = false;
        this.#logger.warn(`DynamoWorkerMetadata ${lost}; re-applying`, this.#fields());
      }
      try {
        await this.#publish();
      } catch {
        return; // closed while retrying
      }
      if (!this.#registered) {
        this.#registered = true;
        this.#logger.info("DynamoWorkerMetadata re-applied", this.#fields());
      }
    }
  }

  #fields(): Record<string, unknown> {
    return {
      cr_name: this.#identity.crName,
      k8s_namespace: this.#identity.podNamespace,
      instance_id: this.instanceId.toString(16),
    };
  }
}
