/**
 * File discovery (`DYN_DISCOVERY_BACKEND=file`): one file per record in
 * `<DYN_FILE_KV>/v1/instances/`, named by the key with every byte outside `A-Za-z0-9`
 * percent-encoded. Liveness is the file's mtime: the owner re-touches it every
 * `max(TTL/3, 1 s)` and every participant deletes files older than the TTL, so a stalled owner
 * disappears and a deleted file is written again on the next touch.
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
  #timer?: ReturnType<typeof setInterval>;
  #healthy = false;

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

  async register(records: EndpointRecord[]): Promise<void> {
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
    this.#healthy = true;
    const interval = Math.max((this.#settings.ttlSeconds * 1000) / 3, 1000);
    this.#timer ??= setInterval(() => this.#touch(), interval);
  }

  async deregister(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#healthy = false;
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
    const now = new Date();
    let failures = 0;
    for (const [path, content] of this.#files) {
      try {
        await Deno.utime(path, now, now);
      } catch (error) {
        try {
          // Another participant removed it (we were late) or the directory was wiped.
          if (error instanceof Deno.errors.NotFound) await this.#writeAtomically(path, content);
          else throw error;
        } catch (rewriteError) {
          failures++;
          this.#logger.warn("cannot refresh discovery file", { path, error: String(rewriteError) });
        }
      }
    }
    this.#healthy = failures === 0;
    if (failures > 0 && failures === this.#files.size && this.#files.size > 0) {
      // Keep trying: a transient file-system error should not end the service, but health says so.
      this.#logger.error("discovery registration is not refreshed", { directory: this.#dir });
    }
  }

  async #writeAtomically(path: string, content: string) {
    const hex = [...crypto.getRandomValues(new Uint8Array(8))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const tmp = `${this.#dir}/.tmp_${hex}`;
    await Deno.writeTextFile(tmp, content, { createNew: true });
    // Published by hard link as 1.6.1 does, so readers never see a half-written file; a name
    // that already exists (our own earlier file) is replaced atomically by rename instead.
    try {
      await Deno.link(tmp, path);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      await Deno.rename(tmp, path);
      return;
    }
    await Deno.remove(tmp);
  }
}
