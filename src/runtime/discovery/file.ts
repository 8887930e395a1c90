/**
 * File discovery (`DYN_DISCOVERY_BACKEND=file`): one file per record in
 * `<DYN_FILE_KV>/v1/instances/`, named by the key with every byte outside `A-Za-z0-9`
 * percent-encoded. Liveness is the file's mtime: the owner re-touches it every
 * `max(TTL/3, 1 s)` and every participant deletes files older than the TTL, so a stalled owner
 * disappears. Each refresh also checks the content: a deleted or altered record is written
 * again, and `healthy` says whether every record was in place after the last refresh.
 * Deregistering waits for a refresh in flight, so a refresh can never re-create a file
 * after it.
 */
import { DiscoveryError } from "../../errors.ts";
import type { FileKvSettings } from "../../config/env.ts";
import type { Logger } from "../../ops/log.ts";
import {
  type Discovery,
  type EndpointRecord,
  INSTANCES_BUCKET,
  randomInstanceId,
  recordJson,
  recordKey,
  type RecordSource,
} from "./discovery.ts";

export function encodeFileName(key: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(key)) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9]/.test(ch) ? ch : "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

export class FileDiscovery implements Discovery {
  readonly instanceId: bigint;
  readonly lost: Promise<never>;
  #dir: string;
  #settings: FileKvSettings;
  #logger: Logger;
  #files = new Map<string, string>(); // path → content
  #records: EndpointRecord[] = [];
  #timer?: ReturnType<typeof setInterval>;
  #healthy = false;
  /** Whether records should exist: set by `register`, cleared (first) by `deregister`. */
  #registered = false;
  #refreshing?: Promise<void>;

  constructor(settings: FileKvSettings, logger: Logger, instanceId = randomInstanceId()) {
    this.instanceId = instanceId;
    this.#settings = settings;
    this.#dir = `${settings.root.replace(/\/+$/, "")}/${INSTANCES_BUCKET}`;
    this.#logger = logger;
    // A file registration is never lost for good: a missing file is written again on touch.
    this.lost = new Promise<never>(() => {});
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  get directory(): string {
    return this.#dir;
  }

  get records(): EndpointRecord[] {
    return this.#records;
  }

  async register(source: EndpointRecord[] | RecordSource): Promise<void> {
    const records = typeof source === "function" ? await source(this.instanceId) : source;
    this.#records = records;
    try {
      await Deno.mkdir(this.#dir, { recursive: true });
      await Promise.all(records.map(async (record) => {
        const path = `${this.#dir}/${encodeFileName(recordKey(record))}`;
        const content = recordJson(record);
        await this.#writeAtomically(path, content);
        this.#files.set(path, content);
      }));
    } catch (error) {
      throw new DiscoveryError(`cannot register in ${this.#dir}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    this.#registered = true;
    this.#healthy = true;
    const interval = Math.max((this.#settings.ttlSeconds * 1000) / 3, 1000);
    this.#timer ??= setInterval(() => this.refresh(), interval);
  }

  /**
   * Touches every record, writing again the ones deleted or altered (runs on the interval;
   * concurrent calls share one pass).
   */
  refresh(): Promise<void> {
    return this.#refreshing ??= this.#touch().finally(() => (this.#refreshing = undefined));
  }

  async deregister(): Promise<void> {
    this.#registered = false;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#healthy = false;
    await this.#refreshing;
    await Promise.all([...this.#files.keys()].map(async (path) => {
      try {
        await Deno.remove(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) {
          this.#logger.warn("cannot remove discovery file", { path, error: String(error) });
        }
      }
    }));
    this.#files.clear();
  }

  async close(): Promise<void> {
    await this.deregister();
  }

  async #touch() {
    let failures = 0;
    for (const [path, content] of this.#files) {
      if (!this.#registered) return;
      try {
        let current: string | undefined;
        try {
          current = await Deno.readTextFile(path);
        } catch (error) {
          // Another participant removed it (we were late) or the directory was wiped.
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
        if (!this.#registered) return;
        if (current === content) {
          const now = new Date();
          await Deno.utime(path, now, now);
        } else {
          await Deno.mkdir(this.#dir, { recursive: true });
          await this.#writeAtomically(path, content);
          this.#logger.warn(
            current === undefined
              ? "discovery file was deleted; written again"
              : "discovery file was altered; written again",
            { path },
          );
        }
      } catch (error) {
        failures++;
        this.#logger.warn("cannot refresh discovery file", { path, error: String(error) });
      }
    }
    if (!this.#registered) return;
    const healthy = failures === 0;
    if (healthy !== this.#healthy) {
      // Once per change of state; a transient file-system error must not end the service.
      if (healthy) this.#logger.info("discovery registration refreshed again", { directory: this.#dir });
      else this.#logger.error("discovery registration is not refreshed", { directory: this.#dir, failures });
    }
    this.#healthy = healthy;
  }

  async #writeAtomically(path: string, content: string) {
    const hex = [...crypto.getRandomValues(new Uint8Array(8))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const tmp = `${this.#dir}/.tmp_${hex}`;
    await Deno.writeTextFile(tmp, content, { createNew: true });
    // Published by hard link as 1.6.1 does, so readers never see a half-written file; a name
    // that already exists (our own earlier file) is replaced atomically by rename instead.
    // Whatever fails, the temporary name never stays behind.
    try {
      try {
        await Deno.link(tmp, path);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
        await Deno.rename(tmp, path);
      }
    } finally {
      await Deno.remove(tmp).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    }
  }
}
