/**
 * Finding an endpoint's instances, the caller side of src/runtime/discovery: one listing of
 * `v1/instances/{ns}/{comp}/{ep}/` in etcd (JSON gateway `/v3/kv/range`) or in the file
 * backend's directory, or of the Kubernetes objects (kube_lookup.ts). A one-shot CLI does not
 * watch; it reads what is there now.
 */
import type { EtcdSettings, FileKvSettings, RuntimeSettings } from "../config/env.ts";
import { DiscoveryError, errorText } from "../errors.ts";
import { INSTANCES_BUCKET } from "../runtime/discovery/discovery.ts";
import { type InstanceRecord, parseInstanceRecord } from "./records.ts";
import { EtcdGateway } from "../runtime/discovery/etcd_gateway.ts";
import type { KubeAccess } from "./kube_lookup.ts";

export interface EndpointName {
  namespace: string;
  component: string;
  endpoint: string;
}

export interface Lookup {
  records: InstanceRecord[];
  /** Where we looked, for "not found" messages. */
  where: string;
}

export function endpointText(name: EndpointName): string {
  return `${name.namespace}.${name.component}.${name.endpoint}`;
}

export async function lookupInstances(
  settings: RuntimeSettings,
  name: EndpointName,
  signal?: AbortSignal,
  kube?: KubeAccess,
): Promise<Lookup> {
  const prefix = `${name.namespace}/${name.component}/${name.endpoint}/`;
  if (settings.discovery === "kubernetes") {
    if (!settings.kube || !kube) throw new DiscoveryError("kubernetes discovery without a pod identity");
    const { lookupKubernetes } = await import("./kube_lookup.ts");
    return await lookupKubernetes(settings.kube.podNamespace, prefix, kube, signal);
  }
  return settings.discovery === "etcd"
    ? await _lookupEtcd(settings.etcd, prefix, signal)
    : await _lookupFiles(settings.fileKv, prefix);
}

/** Inverse of the file backend's name encoding (`%XX` for every byte outside A-Za-z0-9). */
export function decodeFileName(name: string): string | null {
  const bytes: number[] = [];
  for (let i = 0; i < name.length; i++) {
    if (name[i] === "%") {
      const hex = name.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return null;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      const code = name.charCodeAt(i);
      if (code > 0x7f) return null;
      bytes.push(code);
    }
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes));
  } catch {
    return null;
  }
}

async function _lookupFiles(settings: FileKvSettings, prefix: string): Promise<Lookup> {
  const dir = `${settings.root.replace(/\/+$/, "")}/${INSTANCES_BUCKET}`;
  const records: InstanceRecord[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { records, where: dir };
    throw new DiscoveryError(`cannot list ${dir}: ${errorText(error)}`, { cause: error });
  }
  // Unlike a 1.6.1 caller, skip records past their TTL: their owner stopped touching them, and
  // calling a dead address would only turn "not found" into a connection error.
  const oldest = Date.now() - settings.ttlSeconds * 1000;
  for (const entry of entries) {
    // `.tmp_*` are writes in progress (published by hard link when complete).
    if (!entry.isFile || entry.name.startsWith(".")) continue;
    const key = decodeFileName(entry.name);
    if (key === null || !key.startsWith(prefix)) continue;
    const path = `${dir}/${entry.name}`;
    try {
      const info = await Deno.stat(path);
      if ((info.mtime?.getTime() ?? 0) < oldest) continue;
      const record = parseInstanceRecord(await Deno.readTextFile(path), path);
      if (record) records.push(record);
    } catch (error) {
      // Removed between listing and reading (deregistered or swept): not an instance any more.
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return { records, where: dir };
}

const _b64 = (text: string) => btoa(String.fromCharCode(...new TextEncoder().encode(text)));
const _unb64 = (b64: string) => new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));

/** The smallest key after every key with `prefix` (etcd's `range_end` for a prefix scan). */
function _prefixEnd(prefix: string): string {
  const bytes = new TextEncoder().encode(prefix);
  bytes[bytes.length - 1]++; // prefixes end in "/", never 0xff
  return String.fromCharCode(...bytes);
}

async function _lookupEtcd(settings: EtcdSettings, prefix: string, signal?: AbortSignal): Promise<Lookup> {
  const key = `${INSTANCES_BUCKET}/${prefix}`;
  let gateway: EtcdGateway | undefined;
  try {
    gateway = await EtcdGateway.open(settings);
    const reply = await gateway.call<{ kvs?: { key: string; value: string }[] }>(
      "/v3/kv/range",
      { key: _b64(key), range_end: btoa(_prefixEnd(key)) },
      true,
      signal,
    );
    const records: InstanceRecord[] = [];
    for (const kv of reply.kvs ?? []) {
      const record = parseInstanceRecord(_unb64(kv.value), `etcd key ${_unb64(kv.key)}`);
      if (record) records.push(record);
    }
    return { records, where: `etcd ${settings.endpoints.join(",")} under ${key}` };
  } catch (error) {
    if (error instanceof DiscoveryError || signal?.aborted) throw error;
    throw new DiscoveryError(`cannot read etcd at ${settings.endpoints.join(",")}: ${errorText(error)}`, {
      cause: error,
    });
  } finally {
    gateway?.close();
  }
}
