/**
 * The physical limit of a blocking round, measured by this process on a warm connection of its
 * own, as our ServiceAccount: the one PATCH a scale needs (the same JSON patch), then a watch of
 * that DGD from the resourceVersion the PATCH returned until the operator's Ready for the written
 * generation arrives. For one DGD, then for all of them at once (the slowest). The writes and the
 * operator's writes of a round of 16 share the API server (and its etcd) on this machine, so no
 * planner's "16 at once / single" can be below this ratio. Private to bench/.
 */
import { DGD_PATH } from "../../tests/support/dgd_fixtures.ts";
import type { KubeCluster } from "../../tests/support/kube_cluster.ts";
import { epochMs, type ReadyOperator } from "./_blocking_operator.ts";

export interface PatchLimit {
  /** One DGD at a time: each PATCH round trip (ms). */
  single: number[];
  /** Per round of all at once: the slowest PATCH round trip (ms). */
  batches: number[];
  /** One DGD at a time: PATCH sent → Ready for its generation seen on the watch (ms). */
  blockSingle: number[];
  /** Per round of all at once: the slowest of PATCH sent → Ready seen (ms). */
  blockBatches: number[];
  /** Each Ready seen on this process's watch, after the operator's write was acknowledged (ms). */
  seenAfterReady: number[];
}

export async function measurePatchLimit(
  cluster: KubeCluster,
  operator: ReadyOperator,
  token: string,
  namespace: string,
  names: string[],
  decode: Map<string, number>,
  rounds: { single: number; batches: number },
): Promise<PatchLimit> {
  const http = Deno.createHttpClient({ caCerts: [cluster.caPem] });
  const index = new Map<string, number>();
  for (const name of names) {
    const got = await cluster.request("GET", DGD_PATH("v1beta1", namespace, name));
    index.set(name, (got.json.spec.components as { name: string }[]).findIndex((c) => c.name === "decode"));
  }
  const seen = new Map<string, number>();
  const headers = { accept: "application/json", authorization: `Bearer ${token}` };
  const patch = async (name: string): Promise<{ ms: number; rv: string; generation: number }> => {
    decode.set(name, decode.get(name) === 2 ? 3 : 2);
    const i = index.get(name)!;
    const body = JSON.stringify([
      { op: "test", path: `/spec/components/${i}/name`, value: "decode" },
      { op: "add", path: `/spec/components/${i}/replicas`, value: decode.get(name) },
    ]);
    const t0 = performance.now();
    const response = await fetch(`${cluster.url}${DGD_PATH("v1beta1", namespace, name)}`, {
      method: "PATCH",
      client: http,
      headers: { ...headers, "content-type": "application/json-patch+json" },
      body,
    });
    const written = await response.json();
    const ms = performance.now() - t0;
    if (!response.ok) throw new Error(`raw PATCH ${name}: HTTP ${response.status}`);
    return { ms, rv: written.metadata.resourceVersion, generation: written.metadata.generation };
  };
  /** PATCH, then watch the DGD until Ready for the written generation: ms from sending. */
  const block = async (name: string): Promise<number> => {
    const t0 = performance.now();
    const { rv, generation } = await patch(name);
    const abort = new AbortController();
    const response = await fetch(
      `${cluster.url}${DGD_PATH("v1beta1", namespace)}?watch=1&fieldSelector=metadata.name%3D${name}` +
        `&resourceVersion=${rv}&timeoutSeconds=60`,
      { client: http, headers, signal: abort.signal },
    );
    if (!response.ok) throw new Error(`raw watch ${name}: HTTP ${response.status}`);
    let buffered = "";
    try {
      for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
        buffered += chunk;
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const event = JSON.parse(buffered.slice(0, nl));
          buffered = buffered.slice(nl + 1);
          const status = event.object?.status;
          const ready = status?.conditions?.find((c: { type: string }) => c.type === "Ready");
          if (status?.observedGeneration >= generation && ready?.status === "True") {
            seen.set(name, epochMs());
            return performance.now() - t0;
          }
        }
      }
    } finally {
      abort.abort();
    }
    throw new Error(`raw watch ${name}: ended before Ready`);
  };
  // Between rounds the operator writes Ready for what was written (outside the timed window).
  const settled = async (): Promise<void> => {
    await operator.idle(names);
    await operator.settle();
    for (const [name, at] of seen) out.seenAfterReady.push(at - (operator.marks.get(name)?.acked ?? NaN));
    seen.clear();
  };
  const out: PatchLimit = { single: [], batches: [], blockSingle: [], blockBatches: [], seenAfterReady: [] };
  try {
    await block(names[0]); // warm connection
    await settled();
    for (let r = 0; r < rounds.single; r++) {
      out.single.push((await patch(names[r % names.length])).ms);
      await settled();
      out.blockSingle.push(await block(names[r % names.length]));
      await settled();
    }
    for (let b = 0; b < rounds.batches; b++) {
      out.batches.push(Math.max(...(await Promise.all(names.map(patch))).map((p) => p.ms)));
      await settled();
      out.blockBatches.push(Math.max(...await Promise.all(names.map(block))));
      await settled();
    }
  } finally {
    http.close();
  }
  return out;
}
