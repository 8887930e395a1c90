/**
 * etcd discovery through etcd's HTTP/JSON gateway (`/v3/...` on the client port): one primary
 * lease (TTL `ETCD_LEASE_TTL`) whose id is the instance id, keep-alive every TTL/2,
 * registration in a transaction, revoke on clean exit. Keys and values are base64 and 64-bit
 * integers are JSON strings on the gateway.
 *
 * Self-healing: every `checkIntervalMs` the records are read back and a deleted or altered one
 * is written again. When the lease is gone (etcd says so, or keep-alives failed for longer than
 * the TTL), a new lease is granted as soon as etcd answers and every record is written under
 * it: a new instance id, which callers pick up from discovery as they pick up any new instance.
 * With `exitOnLeaseLoss` the loss rejects `lost` instead (the process exits). State changes
 * (registered → etcd unreachable → lease lost → registered) are logged once each.
 */
import type { EtcdSettings } from "../../config/env.ts";
import { EtcdGateway } from "./etcd_gateway.ts";
import { DiscoveryError, errorText } from "../../errors.ts";
import type { Logger } from "../../ops/log.ts";
import { backoffMs, pause } from "../../timing.ts";
import {
  type Discovery,
  type EndpointRecord,
  INSTANCES_BUCKET,
  recordJson,
  recordKey,
  type RecordSource,
} from "./discovery.ts";

const b64 = (text: string) => btoa(String.fromCharCode(...new TextEncoder().encode(text)));
const unb64 = (text: string) => new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)));

/** How often the records are read back when not configured (a deleted key is back within this). */
export const DEFAULT_CHECK_INTERVAL_MS = 1_000;

type State = "registered" | "unreachable" | "lost" | "closed";

export class EtcdDiscovery implements Discovery {
  readonly lost: Promise<never>;
  #instanceId: bigint;
  #gateway: EtcdGateway;
  #settings: EtcdSettings;
  #ttlSeconds: number;
  #logger: Logger;
  #checkIntervalMs: number;
  #source?: RecordSource;
  #records: EndpointRecord[] = [];
  #nextKeepAlive: number;
  #deadline: number;
  #state: State = "registered";
  /** The records were all read back as written on the last check. */
  #verified = true;
  #failures = 0;
  #stop = new AbortController();
  #loop?: Promise<void>;
  #fail!: (error: Error) => void;

  private constructor(
    gateway: EtcdGateway,
    settings: EtcdSettings,
    leaseId: bigint,
    ttlSeconds: number,
    logger: Logger,
  ) {
    this.#gateway = gateway;
    this.#settings = settings;
    this.#instanceId = leaseId;
    this.#ttlSeconds = ttlSeconds;
    this.#logger = logger;
    this.#checkIntervalMs = settings.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS;
    this.#nextKeepAlive = Date.now() + (ttlSeconds * 1000) / 2;
    this.#deadline = Date.now() + ttlSeconds * 1000;
    this.lost = new Promise<never>((_, reject) => (this.#fail = reject));
    this.lost.catch(() => {});
  }

  /** Connects and grants the primary lease. */
  static async connect(settings: EtcdSettings, logger: Logger): Promise<EtcdDiscovery> {
    const gateway = await EtcdGateway.open(settings);
    let grant: { id: bigint; ttl: number };
    try {
      grant = await _grant(gateway, settings.leaseTtlSeconds);
    } catch (error) {
      gateway.close();
      throw new DiscoveryError(
        `cannot grant an etcd lease at ${settings.endpoints.join(",")}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const discovery = new EtcdDiscovery(gateway, settings, grant.id, grant.ttl, logger);
    discovery.#loop = discovery.#run();
    return discovery;
  }

  /** The current lease id: it changes when the registration is re-created under a new lease. */
  get instanceId(): bigint {
    return this.#instanceId;
  }

  get records(): EndpointRecord[] {
    return this.#records;
  }

  get healthy(): boolean {
    return this.#state === "registered" && this.#verified;
  }

  async register(records: EndpointRecord[] | RecordSource): Promise<void> {
    this.#source = typeof records === "function" ? records : () => records;
    const built = await this.#source(this.#instanceId);
    await this.#put(built, true);
    this.#records = built;
  }

  /** Revokes the lease: every key goes at once. */
  async deregister(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#stop.abort(new DiscoveryError("etcd discovery closed"));
    await this.#loop;
    try {
      await this.#gateway.call("/v3/lease/revoke", { ID: this.#instanceId.toString() });
    } catch (error) {
      this.#logger.warn("cannot revoke the etcd lease; keys expire with its TTL", { error: String(error) });
    }
  }

  async close(): Promise<void> {
    await this.deregister();
    this.#gateway.close();
  }

  /** Writes records under the current lease; `ifAbsent` keeps a key that exists (it is ours). */
  async #put(records: EndpointRecord[], ifAbsent: boolean): Promise<void> {
    await Promise.all(records.map(async (record) => {
      const key = b64(`${INSTANCES_BUCKET}/${recordKey(record)}`);
      const put = {
        request_put: { key, value: b64(recordJson(record)), lease: this.#instanceId.toString() },
      };
      try {
        await this.#gateway.call(
          "/v3/kv/txn",
          ifAbsent
            ? {
              compare: [{ key, result: "EQUAL", target: "VERSION", version: "0" }],
              success: [put],
              failure: [{ request_range: { key } }],
            }
            : { success: [put] },
          true,
          this.#stop.signal,
        );
      } catch (error) {
        throw new DiscoveryError(`cannot register ${recordKey(record)} in etcd: ${errorText(error)}`, {
          cause: error,
        });
      }
    }));
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      let waitMs = this.#checkIntervalMs;
      try {
        if (this.#state === "lost") await this.#renew();
        else {
          if (Date.now() >= this.#nextKeepAlive || this.#state === "unreachable") await this.#keepAlive();
          if (this.#state === "registered") await this.#verify();
        }
        this.#failures = 0;
      } catch (error) {
        if (signal.aborted) break;
        this.#failures++;
        this.#onFailure(error);
        waitMs = Math.min(this.#checkIntervalMs, backoffMs(this.#failures, { firstMs: 250, maxMs: 5_000 }));
        if (this.#state === "lost") waitMs = backoffMs(this.#failures, { firstMs: 250, maxMs: 5_000 });
      }
      if (this.#state === "lost" && this.#settings.exitOnLeaseLoss) return;
      await pause(waitMs, signal);
    }
  }

  async #keepAlive(): Promise<void> {
    const reply = await this.#gateway.call<{ result?: { TTL?: string } }>(
      "/v3/lease/keepalive",
      { ID: this.#instanceId.toString() },
      true,
      this.#stop.signal,
    );
    const ttl = Number(reply.result?.TTL ?? 0);
    if (!(ttl > 0)) return this.#leaseLost(`etcd lease ${this.#instanceId.toString(16)} expired`);
    this.#deadline = Date.now() + ttl * 1000;
    this.#nextKeepAlive = Date.now() + Math.max((ttl * 1000) / 2, 500);
    this.#enter("registered", "etcd keep-alive answered again; registration alive");
  }

  /** Reads every record back; writes again the ones deleted or altered. */
  async #verify(): Promise<void> {
    let healed = 0;
    for (const record of this.#records) {
      const key = `${INSTANCES_BUCKET}/${recordKey(record)}`;
      const reply = await this.#gateway.call<{ kvs?: { value?: string; lease?: string }[] }>(
        "/v3/kv/range",
        { key: b64(key) },
        true,
        this.#stop.signal,
      );
      const kv = reply.kvs?.[0];
      const intact = kv !== undefined && kv.lease === this.#instanceId.toString() &&
        unb64(kv.value ?? "") === recordJson(record);
      if (intact) continue;
      this.#verified = false;
      await this.#put([record], false);
      healed++;
      this.#logger.warn(
        kv === undefined
          ? "etcd registration key was deleted; written again"
          : "etcd registration key was altered; written again",
        { key },
      );
    }
    this.#verified = true;
    if (healed > 0) this.#logger.info("etcd registration restored", { keys: healed });
  }

  /** Grants a new lease and registers every record under it. */
  async #renew(): Promise<void> {
    const grant = await _grant(this.#gateway, this.#settings.leaseTtlSeconds, this.#stop.signal);
    const previous = this.#instanceId;
    this.#instanceId = grant.id;
    this.#ttlSeconds = grant.ttl;
    this.#deadline = Date.now() + grant.ttl * 1000;
    this.#nextKeepAlive = Date.now() + (grant.ttl * 1000) / 2;
    const built = this.#source ? await this.#source(grant.id) : [];
    await this.#put(built, true);
    this.#records = built;
    this.#verified = true;
    // The old lease may have outlived the outage (etcd extends leases when it restarts): its
    // records would point callers at an instance id that no longer answers.
    await this.#gateway.call("/v3/lease/revoke", { ID: previous.toString() }, true, this.#stop.signal)
      .catch(() => {});
    this.#enter("registered", "etcd registration re-created under a new lease", {
      previous_instance_id: previous.toString(16),
      instance_id: grant.id.toString(16),
    });
  }

  #onFailure(error: unknown): void {
    if (this.#state === "lost") {
      this.#logger.debug("etcd still unreachable; new lease not granted yet", { error: errorText(error) });
      return;
    }
    if (Date.now() >= this.#deadline) {
      return this.#leaseLost("etcd lease keep-alive missed its deadline", error);
    }
    this.#enter("unreachable", "etcd unreachable; keep-alive retried until the lease deadline", {
      error: errorText(error),
      ms_left: this.#deadline - Date.now(),
    });
  }

  #leaseLost(message: string, cause?: unknown): void {
    if (this.#settings.exitOnLeaseLoss) {
      this.#state = "lost";
      this.#logger.error("discovery registration lost", { error: message });
      this.#fail(new DiscoveryError(message, { cause }));
      return;
    }
    this.#enter("lost", "etcd lease lost; re-registering under a new lease once etcd answers", {
      error: message,
      instance_id: this.#instanceId.toString(16),
    });
  }

  #enter(state: State, message: string, fields: Record<string, unknown> = {}): void {
    if (this.#state === state || this.#state === "closed") return;
    const previous = this.#state;
    this.#state = state;
    if (state === "registered") this.#logger.info(message, { ...fields, after: previous });
    else this.#logger.warn(message, fields);
  }
}

async function _grant(
  gateway: EtcdGateway,
  ttlSeconds: number,
  signal?: AbortSignal,
): Promise<{ id: bigint; ttl: number }> {
  const grant = await gateway.call<{ ID?: string; TTL?: string }>(
    "/v3/lease/grant",
    { TTL: ttlSeconds },
    true,
    signal,
  );
  if (!grant.ID) throw new DiscoveryError("etcd lease grant returned no lease id");
  return { id: BigInt(grant.ID), ttl: Number(grant.TTL ?? ttlSeconds) };
}
