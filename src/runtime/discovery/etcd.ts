/**
 * etcd discovery through etcd's HTTP/JSON gateway (`/v3/...` on the client port): one primary
 * lease (TTL `ETCD_LEASE_TTL`, default 10 s) whose id is the instance id, keep-alive every
 * TTL/2, create-if-absent registration in a transaction, revoke on clean exit. Keys and values
 * are base64 and 64-bit integers are JSON strings on the gateway.
 */
import type { EtcdSettings } from "../../config/env.ts";
import { EtcdGateway } from "./etcd_gateway.ts";
import { DiscoveryError } from "../../errors.ts";
import type { Logger } from "../../ops/log.ts";
import { type Discovery, type EndpointRecord, INSTANCES_BUCKET, recordJson, recordKey } from "./discovery.ts";

const b64 = (text: string) => btoa(String.fromCharCode(...new TextEncoder().encode(text)));

export class EtcdDiscovery implements Discovery {
  readonly instanceId: bigint;
  readonly lost: Promise<never>;
  #gateway: EtcdGateway;
  #ttlSeconds: number;
  #logger: Logger;
  #keepAliveTimer?: ReturnType<typeof setTimeout>;
  #deadline: number;
  #healthy = true;
  #closed = false;
  #fail!: (error: Error) => void;

  private constructor(gateway: EtcdGateway, leaseId: bigint, ttlSeconds: number, logger: Logger) {
    this.#gateway = gateway;
    this.instanceId = leaseId;
    this.#ttlSeconds = ttlSeconds;
    this.#logger = logger;
    this.#deadline = Date.now() + ttlSeconds * 1000;
    this.lost = new Promise<never>((_, reject) => (this.#fail = reject));
    this.lost.catch(() => {});
  }

  /** Connects and grants the primary lease. */
  static async connect(settings: EtcdSettings, logger: Logger): Promise<EtcdDiscovery> {
    const gateway = await EtcdGateway.open(settings);
    let grant: { ID?: string; TTL?: string };
    try {
      grant = await gateway.call("/v3/lease/grant", { TTL: settings.leaseTtlSeconds });
    } catch (error) {
      gateway.close();
      throw new DiscoveryError(
        `cannot grant an etcd lease at ${settings.endpoints.join(",")}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (!grant.ID) throw new DiscoveryError("etcd lease grant returned no lease id");
    const discovery = new EtcdDiscovery(
      gateway,
      BigInt(grant.ID),
      Number(grant.TTL ?? settings.leaseTtlSeconds),
      logger,
    );
    discovery.#scheduleKeepAlive();
    return discovery;
  }

  get healthy(): boolean {
    return this.#healthy && !this.#closed;
  }

  async register(records: EndpointRecord[]): Promise<void> {
    await Promise.all(records.map(async (record) => {
      const key = b64(`${INSTANCES_BUCKET}/${recordKey(record)}`);
      try {
        // Create-if-absent: an existing key (same lease, so ours) counts as success.
        await this.#gateway.call("/v3/kv/txn", {
          compare: [{ key, result: "EQUAL", target: "VERSION", version: "0" }],
          success: [{
            request_put: { key, value: b64(recordJson(record)), lease: this.instanceId.toString() },
          }],
          failure: [{ request_range: { key } }],
        });
      } catch (error) {
        throw new DiscoveryError(
          `cannot register ${recordKey(record)} in etcd: ${(error as Error).message}`,
          {
            cause: error,
          },
        );
      }
    }));
  }

  /** Revokes the lease: every key goes at once. */
  async deregister(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#keepAliveTimer);
    try {
      await this.#gateway.call("/v3/lease/revoke", { ID: this.instanceId.toString() });
    } catch (error) {
      this.#logger.warn("cannot revoke the etcd lease; keys expire with its TTL", { error: String(error) });
    }
  }

  async close(): Promise<void> {
    await this.deregister();
    this.#gateway.close();
  }

  #scheduleKeepAlive(delayMs = (this.#ttlSeconds * 1000) / 2) {
    this.#keepAliveTimer = setTimeout(() => this.#keepAlive(), delayMs);
  }

  async #keepAlive() {
    if (this.#closed) return;
    try {
      const reply = await this.#gateway.call<{ result?: { TTL?: string } }>(
        "/v3/lease/keepalive",
        { ID: this.instanceId.toString() },
      );
      const ttl = Number(reply.result?.TTL ?? 0);
      if (!(ttl > 0)) {
        return this.#lose(new DiscoveryError(`etcd lease ${this.instanceId.toString(16)} expired`));
      }
      this.#deadline = Date.now() + ttl * 1000;
      this.#healthy = true;
      this.#scheduleKeepAlive(Math.max((ttl * 1000) / 2, 500));
    } catch (error) {
      if (this.#closed) return;
      this.#healthy = false;
      const left = this.#deadline - Date.now();
      if (left <= 0) {
        return this.#lose(new DiscoveryError("etcd lease keep-alive missed its deadline", { cause: error }));
      }
      this.#logger.warn("etcd keep-alive failed; retrying", { error: String(error), ms_left: left });
      this.#scheduleKeepAlive(Math.min(1000, left / 2));
    }
  }

  #lose(error: Error) {
    this.#healthy = false;
    this.#closed = true;
    this.#logger.error("discovery registration lost", { error: error.message });
    this.#fail(error);
  }
}
