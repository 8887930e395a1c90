/**
 * A private etcd (Debian's `etcd-server`) on free loopback ports in a temp dir. A missing
 * binary fails the suite loudly: `scripts/ensure_deps.sh` installs it.
 */
import { freePort, waitFor } from "./ports.ts";

export interface EtcdServer {
  endpoint: string;
  /** POST to the JSON gateway (`/v3/...`). */
  call<T = Record<string, unknown>>(path: string, body: unknown): Promise<T>;
  /** All keys and values under a prefix, decoded. */
  list(prefix: string): Promise<{ key: string; value: string; lease?: string }[]>;
  /** Stops the process (an outage), keeping its data; `restart()` brings it back on the same ports. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export const ETCD_BIN = "/usr/bin/etcd";

export async function startEtcd(): Promise<EtcdServer> {
  try {
    await Deno.stat(ETCD_BIN);
  } catch {
    throw new Error(`${ETCD_BIN} not found: run scripts/ensure_deps.sh (installs Debian etcd-server)`);
  }
  const dir = await Deno.makeTempDir({ prefix: "gp-etcd-" });
  const clientPort = freePort();
  const peerPort = freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const command = new Deno.Command(ETCD_BIN, {
    args: [
      `--data-dir=${dir}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
      "--name=default",
      "--log-level=error",
    ],
    stdout: "null",
    stderr: "piped",
  });
  let child = command.spawn();
  let stderr = new Response(child.stderr).text();

  const call = async <T>(path: string, body: unknown): Promise<T> => {
    const response = await fetch(endpoint + path, { method: "POST", body: JSON.stringify(body) });
    const text = await response.text();
    if (!response.ok) throw new Error(`etcd ${path}: HTTP ${response.status} ${text}`);
    return JSON.parse(text.split("\n")[0]) as T;
  };
  const kill = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await stderr;
  };
  const stop = async () => {
    await kill();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const healthy = () =>
    waitFor(
      async () => {
        try {
          return (await fetch(`${endpoint}/health`).then((r) => r.text())).includes("true");
        } catch {
          return false;
        }
      },
      "etcd health",
      15_000,
    );
  try {
    await healthy();
  } catch (error) {
    await stop();
    throw new Error(`etcd did not start: ${(error as Error).message}\n${await stderr}`);
  }
  return {
    endpoint,
    call,
    async list(prefix) {
      const enc = (s: string) => btoa(s);
      const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
      const reply = await call<{ kvs?: { key: string; value: string; lease?: string }[] }>(
        "/v3/kv/range",
        { key: enc(prefix), range_end: enc(end) },
      );
      return (reply.kvs ?? []).map((kv) => ({ key: atob(kv.key), value: atob(kv.value), lease: kv.lease }));
    },
    kill,
    async restart() {
      child = command.spawn();
      stderr = new Response(child.stderr).text();
      await healthy();
    },
    stop,
  };
}
