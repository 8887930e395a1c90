/**
 * The blocking phase's stand-in operator. Like a real operator (an informer, one reconcile per
 * object, each on its own), it watches the namespace's DGDs, and for every generation ahead of
 * `status.observedGeneration` it waits `delayMs` (a roll-out) and writes Ready for that
 * generation, the DGDs' writes independent of each other. It records, per DGD, when the watch
 * showed the generation, when the Ready write was sent and when it was acknowledged. Private to
 * bench/.
 */
import { DGD_PATH } from "../../tests/support/dgd_fixtures.ts";
import type { KubeCluster } from "../../tests/support/kube_cluster.ts";
import type { Json } from "../_json_lines.ts";

export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** What a real operator writes once a DGD's components are rolled out for its generation. */
export function readyStatus(dgd: Json): Json {
  const components: Record<string, Json> = {};
  const spec = dgd.spec as { components: { name: string; replicas?: number }[] };
  for (const c of spec.components) {
    const n = c.replicas ?? 1;
    components[c.name] = {
      componentKind: "Deployment",
      componentName: `${(dgd.metadata as Json).name}-${c.name}`,
      // Upstream reads these before scaling down.
      gpusPerEngine: 1,
      gpusPerReplica: 1,
      replicas: n,
      updatedReplicas: n,
      readyReplicas: n,
      availableReplicas: n,
    };
  }
  return {
    status: {
      state: "successful",
      observedGeneration: (dgd.metadata as Json).generation,
      components,
      conditions: [{
        type: "Ready",
        status: "True",
        reason: "all_resources_are_ready",
        message: "ok",
        lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      }],
    },
  };
}

export interface ReadyMark {
  /** The generation written Ready. */
  generation: number;
  /** Epoch ms: the watch showed the generation. */
  seen: number;
  /** Epoch ms: the Ready write was sent (nobody can have seen Ready before). */
  sent?: number;
  /** Epoch ms: the API server acknowledged the Ready write. */
  acked?: number;
}

export class ReadyOperator {
  /** DGD name → the marks of its latest generation. */
  readonly marks = new Map<string, ReadyMark>();
  #pending = new Set<Promise<void>>();
  /** `name@generation` already handled, so a repeated event does not write twice. */
  #handled = new Set<string>();
  #abort = new AbortController();
  #waiters: (() => void)[] = [];
  #http: Deno.HttpClient;
  #loop: Promise<void>;
  #synced: Promise<void>;

  constructor(private cluster: KubeCluster, private namespace: string, private delayMs: number) {
    this.#http = Deno.createHttpClient({ caCerts: [cluster.caPem] });
    let synced!: () => void;
    this.#synced = new Promise((r) => synced = r);
    this.#loop = this.#run(synced);
  }

  /** Resolves once the initial list has been taken in and the watch is open. */
  synced(): Promise<void> {
    return this.#synced;
  }

  #take(dgd: Json): void {
    const meta = dgd.metadata as Json;
    const name = String(meta.name);
    const generation = Number(meta.generation);
    if ((dgd.status as Json | undefined)?.observedGeneration === generation) return;
    const key = `${name}@${generation}`;
    if (this.#handled.has(key)) return;
    this.#handled.add(key);
    const mark: ReadyMark = { generation, seen: epochMs() };
    this.marks.set(name, mark);
    const job = (async () => {
      await new Promise((r) => setTimeout(r, this.delayMs));
      mark.sent = epochMs();
      const r = await this.cluster.request(
        "PATCH",
        DGD_PATH("v1beta1", this.namespace, name) + "/status",
        readyStatus(dgd),
      );
      if (r.ok) mark.acked = epochMs();
      for (const wake of this.#waiters.splice(0)) wake();
      if (!r.ok) {
        console.error(`stand-in operator: Ready for ${key}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
      }
    })();
    this.#pending.add(job);
    job.finally(() => this.#pending.delete(job));
  }

  async #run(synced: () => void): Promise<void> {
    const signal = this.#abort.signal;
    let rv: string | undefined;
    while (!signal.aborted) {
      try {
        if (rv === undefined) {
          const list = await this.cluster.request("GET", DGD_PATH("v1beta1", this.namespace));
          for (const dgd of (list.json?.items ?? []) as Json[]) this.#take(dgd);
          rv = String(list.json?.metadata?.resourceVersion);
        }
        const response = await fetch(
          `${this.cluster.url}${DGD_PATH("v1beta1", this.namespace)}?watch=1&allowWatchBookmarks=true` +
            `&resourceVersion=${rv}&timeoutSeconds=300`,
          { headers: { authorization: `Bearer ${this.cluster.adminToken}` }, client: this.#http, signal },
        );
        if (!response.ok) throw new Error(`watch: HTTP ${response.status} ${await response.text()}`);
        synced();
        let buffered = "";
        for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
          buffered += chunk;
          let nl;
          while ((nl = buffered.indexOf("\n")) >= 0) {
            const event = JSON.parse(buffered.slice(0, nl)) as { type: string; object: Json };
            buffered = buffered.slice(nl + 1);
            if (event.type === "ERROR") {
              rv = undefined; // 410: list again
              continue;
            }
            rv = String((event.object.metadata as Json)?.resourceVersion ?? rv);
            if (event.type === "ADDED" || event.type === "MODIFIED") this.#take(event.object);
          }
        }
      } catch (e) {
        if (signal.aborted) break;
        console.error(`stand-in operator: watch failed (${e}); listing again`);
        rv = undefined;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Resolves once each named DGD's current generation has been written Ready (read back). */
  async idle(names: string[], timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const acked = new Promise<void>((r) => this.#waiters.push(r));
      const list = await this.cluster.request("GET", DGD_PATH("v1beta1", this.namespace));
      const behind = ((list.json?.items ?? []) as Json[]).filter((d) => {
        const meta = d.metadata as Json;
        return names.includes(String(meta.name)) &&
          (d.status as Json | undefined)?.observedGeneration !== meta.generation;
      });
      if (behind.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`stand-in operator: ${behind.length} DGDs not Ready in time`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([acked, new Promise((r) => timer = setTimeout(r, deadline - Date.now()))]);
      clearTimeout(timer);
    }
  }

  /** Resolves once every Ready write begun so far has been acknowledged (or failed). */
  async settle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
    await this.settle();
    this.#http.close();
  }
}
