/**
 * The blocking phase's yardstick for "how soon can anyone know": a process of its own (as our
 * service is) that only watches the namespace's DGDs and notes the instant each generation first
 * shows Ready. It runs during our rounds, so each of our answers is paired with the raw watch's
 * sighting of the same Ready under the same load. The bench's operator, which takes the Ready
 * timestamp, is another process: a stall of the bench process delays its acknowledgement and its
 * own watch alike, so a watch inside the bench looks faster than any other process can be.
 * Private to bench/.
 *
 *   parent: `startReadyWatcher(cluster, namespace)`; child: this file run with `-P=test`.
 */
import { DGD_PATH } from "../../tests/support/dgd_fixtures.ts";
import type { KubeCluster } from "../../tests/support/kube_cluster.ts";
import { type Json, JsonLines } from "../_json_lines.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

interface Setup {
  url: string;
  caPem: string;
  token: string;
  namespace: string;
}

export interface ReadyWatcher {
  /** Epoch ms when the watch first showed `name` Ready for `generation` or later; NaN if not in time. */
  seen(name: string, generation: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

export async function startReadyWatcher(cluster: KubeCluster, namespace: string): Promise<ReadyWatcher> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-P=test", "--quiet", new URL(import.meta.url).pathname],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const setup: Setup = { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken, namespace };
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(setup) + "\n"));
  const lines = new JsonLines(child.stdout);
  /** `name` → generation → epoch ms. */
  const sightings = new Map<string, Map<number, number>>();
  const take = async (timeoutMs: number): Promise<void> => {
    const line = await lines.next("ready", timeoutMs);
    const byGeneration = sightings.get(String(line.name)) ?? new Map<number, number>();
    sightings.set(String(line.name), byGeneration);
    byGeneration.set(Number(line.generation), Number(line.at));
  };
  await lines.next("watching", 30_000);
  return {
    async seen(name, generation, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const found = [...sightings.get(name) ?? []].filter(([g]) => g >= generation).map(([, at]) => at);
        if (found.length) return Math.min(...found);
        const left = deadline - Date.now();
        if (left <= 0) return NaN;
        await take(left).catch(() => {});
      }
    },
    async stop() {
      await writer.close().catch(() => {});
      try {
        child.kill("SIGTERM");
      } catch { /* exited */ }
      await child.status;
      await lines.closed;
    },
  };
}

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

async function childMain(): Promise<void> {
  const input = new JsonLines(Deno.stdin.readable);
  const setup = (await input.next("url", 30_000)) as unknown as Setup;
  const http = Deno.createHttpClient({ caCerts: [setup.caPem] });
  const headers = { accept: "application/json", authorization: `Bearer ${setup.token}` };
  const path = DGD_PATH("v1beta1", setup.namespace);
  const out = (line: Json): void => {
    Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(line) + "\n"));
  };
  const reported = new Set<string>();
  const look = (dgd: Json): void => {
    const meta = dgd.metadata as Json;
    const status = dgd.status as { observedGeneration?: number; conditions?: Json[] } | undefined;
    const ready = status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
    const generation = Number(meta.generation);
    if (!ready || (status?.observedGeneration ?? -1) < generation) return;
    const key = `${meta.name}@${generation}`;
    if (reported.has(key)) return;
    reported.add(key);
    out({ ready: true, name: meta.name, generation, at: epochMs() });
  };
  let rv: string | undefined;
  let announced = false;
  while (true) {
    try {
      if (rv === undefined) {
        const list = await (await fetch(`${setup.url}${path}`, { client: http, headers })).json();
        for (const dgd of (list.items ?? []) as Json[]) look(dgd);
        rv = String(list.metadata?.resourceVersion);
      }
      const response = await fetch(
        `${setup.url}${path}?watch=1&allowWatchBookmarks=true&resourceVersion=${rv}&timeoutSeconds=300`,
        { client: http, headers },
      );
      if (!response.ok) throw new Error(`watch: HTTP ${response.status}`);
      if (!announced) out({ watching: true });
      announced = true;
      let buffered = "";
      for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
        buffered += chunk;
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const event = JSON.parse(buffered.slice(0, nl)) as { type: string; object: Json };
          buffered = buffered.slice(nl + 1);
          if (event.type === "ERROR") {
            rv = undefined;
            continue;
          }
          rv = String((event.object.metadata as Json)?.resourceVersion ?? rv);
          if (event.type === "ADDED" || event.type === "MODIFIED") look(event.object);
        }
      }
    } catch (e) {
      console.error(`ready watcher: ${e}; listing again`);
      rv = undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

if (import.meta.main) await childMain();
