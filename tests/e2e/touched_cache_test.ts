/**
 * Every mode decides on a watch cache of the DGDs requests touch (src/kube/touched_cache.ts):
 * one API call per scale in steady state, stale copies never lose an update, bounded and evicted.
 * Real kube-apiserver, RBAC of deploy/rbac.yaml, no GPU budget.
 */
import assert from "node:assert/strict";
import { KubeError } from "../../src/errors.ts";
import { viewDgd } from "../../src/kube/dgd.ts";
import { connectKubernetes, type KubeConnector } from "../../src/kube/mod.ts";
import { KubeScaler } from "../../src/kube/scaler.ts";
import type { DgdView } from "../../src/kube/dgd.ts";
import { ScaleUseCase } from "../../src/service/scale_use_case.ts";
import { createLogger } from "../../src/ops/log.ts";
import { parseScaleRequest, type ScaleResponse } from "../../src/service/contract.ts";
import { createDgd, DGD_PATH, readDgd, replicasOf, v1alpha1Dgd } from "../support/dgd_fixtures.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { waitFor } from "../support/ports.ts";
import { installRbac, serviceAccountDir } from "../support/rbac.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const A = "touched-a";
const B = "touched-b";
const logger = createLogger({ level: "error", sink: () => {} });
const IDLE_MS = 60_000;

function request(namespace: string, name: string, prefill: number, decode?: number) {
  return parseScaleRequest({
    caller_namespace: "c",
    graph_deployment_name: name,
    k8s_namespace: namespace,
    target_replicas: [
      { sub_component_type: "prefill", desired_replicas: prefill },
      ...(decode === undefined ? [] : [{ sub_component_type: "decode", desired_replicas: decode }]),
    ],
  });
}

/** The core's use case over a scaler that always decides first on `stale`. */
function cachedScaler(kube: KubeConnector, stale: DgdView) {
  return new ScaleUseCase({
    port: new KubeScaler({
      client: kube.client,
      logger,
      versions: () => Promise.resolve({ dgd: "v1alpha1", adapter: "v1alpha1" }),
      cachedView: () => stale,
    }),
    logger,
  });
}

const services = {
  P: { role: "prefill" as const, replicas: 1 },
  D: { role: "decode" as const, replicas: 1 },
};

Deno.test({
  name: "DGD watch caches of touched DGDs: one API call per scale, no lost update, bounded",
  async fn(t) {
    const cluster: KubeCluster = await startKubeCluster();
    let kube: KubeConnector | undefined;
    let now = 1_000_000;
    try {
      await cluster.createNamespace(A);
      await cluster.createNamespace(B);
      const token = await installRbac(cluster);
      const dir = await serviceAccountDir(cluster, token);
      const env = cluster.inClusterEnv();
      kube = await connectKubernetes(
        {
          serviceAccountDir: dir,
          blockingTimeoutSeconds: 30,
          dgdApiVersion: "v1alpha1",
          watchTouched: { maxNamespaces: 1, maxDgdsPerNamespace: 1, idleMs: IDLE_MS, clock: () => now },
        },
        (n) => env[n],
        logger,
      );
      const scale = (ns: string, name: string, prefill: number, decode?: number): Promise<ScaleResponse> =>
        kube!.kubeScaler.scale(request(ns, name, prefill, decode), new AbortController().signal);
      await createDgd(cluster, v1alpha1Dgd("one", A, services));

      await t.step("steady state: each scale is one API call, its write", async () => {
        assert.equal((await scale(A, "one", 2)).status, "success"); // the first one reads
        const latest = async () => (await readDgd(cluster, "v1alpha1", A, "one")).metadata.resourceVersion;
        const expected = await latest();
        await waitFor(
          () => kube!.touched!.viewOf({ namespace: A, name: "one" })?.resourceVersion === expected,
          "the watch cache to hold the DGD",
        );
        for (let i = 0; i < 10; i++) {
          const before = kube!.client.calls;
          const response = await scale(A, "one", 3 + i);
          assert.deepEqual(response.current_replicas, { prefill: 3 + i, decode: 1 });
          assert.equal(kube!.client.calls - before, 1, `scale ${i}: one PATCH, no GET`);
        }
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", A, "one")).P, 12);
      });

      await t.step("a no-op on a copy a connected watch holds is answered without any call", async () => {
        const expected = (await readDgd(cluster, "v1alpha1", A, "one")).metadata.resourceVersion;
        await waitFor(
          () => kube!.touched!.viewOf({ namespace: A, name: "one" })?.resourceVersion === expected,
          "the watch cache to hold the last write",
        );
        assert.equal(kube!.touched!.watching({ namespace: A, name: "one" }), true);
        const before = kube!.client.calls;
        const response = await scale(A, "one", 12, 1);
        assert.equal(response.status, "success");
        assert.deepEqual(response.current_replicas, { prefill: 12, decode: 1 });
        assert.equal(kube!.client.calls - before, 0, "skip-if-equal on the watched copy: no GET");
      });

      await t.step(
        "a stale copy costs a 409 and one fresh read; the other writer's change stays",
        async () => {
          const stale = viewDgd(await readDgd(cluster, "v1alpha1", A, "one"));
          const other = await cluster.request("PATCH", DGD_PATH("v1alpha1", A, "one"), {
            spec: { services: { D: { replicas: 7 } } },
          }, "application/merge-patch+json");
          assert.ok(other.ok, other.text);
          const scaler = cachedScaler(kube!, stale);
          const before = kube!.client.calls;
          const response = await scaler.scale(request(A, "one", 20), new AbortController().signal);
          assert.deepEqual(response.current_replicas, { prefill: 20, decode: 7 });
          assert.equal(kube!.client.calls - before, 3, "PATCH (409), GET, PATCH");
          assert.deepEqual(replicasOf(await readDgd(cluster, "v1alpha1", A, "one")), { P: 20, D: 7 });
        },
      );

      await t.step("a no-op decided on a cached copy is confirmed by a read", async () => {
        const stale = viewDgd(await readDgd(cluster, "v1alpha1", A, "one")); // P: 20
        const other = await cluster.request("PATCH", DGD_PATH("v1alpha1", A, "one"), {
          spec: { services: { P: { replicas: 5 } } },
        }, "application/merge-patch+json");
        assert.ok(other.ok, other.text);
        const scaler = cachedScaler(kube!, stale);
        const response = await scaler.scale(request(A, "one", 20), new AbortController().signal);
        assert.deepEqual(response.current_replicas, { prefill: 20, decode: 7 });
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", A, "one")).P, 20, "written, not skipped");
      });

      await t.step("a cached copy of a deleted DGD: the fresh read answers not found", async () => {
        await createDgd(cluster, v1alpha1Dgd("gone", A, services));
        const stale = viewDgd(await readDgd(cluster, "v1alpha1", A, "gone"));
        assert.ok((await cluster.request("DELETE", DGD_PATH("v1alpha1", A, "gone"))).ok);
        const scaler = cachedScaler(kube!, stale);
        const before = kube!.client.calls;
        await assert.rejects(
          scaler.scale(request(A, "gone", 4), new AbortController().signal),
          (error: unknown) =>
            error instanceof KubeError &&
            error.message ===
              "Parent DynamoGraphDeployment not found (name: 'gone' in namespace 'touched-a')",
        );
        assert.equal(kube!.client.calls - before, 2, "PATCH (404), GET (404)");
      });

      await t.step("bounded: DGDs per namespace", async () => {
        await createDgd(cluster, v1alpha1Dgd("two", A, services));
        assert.equal((await scale(A, "two", 2)).status, "success");
        // "one" holds the namespace's only place: "two" is served by reads, never cached.
        assert.equal(kube!.touched!.viewOf({ namespace: A, name: "two" }), undefined);
        assert.notEqual(kube!.touched!.viewOf({ namespace: A, name: "one" }), undefined);
      });

      await t.step("bounded: namespaces (least recently used stopped); idle ones stopped", async () => {
        await createDgd(cluster, v1alpha1Dgd("three", B, services));
        assert.deepEqual(kube!.touched!.namespaces(), [A]);
        assert.equal((await scale(B, "three", 2)).status, "success");
        assert.deepEqual(kube!.touched!.namespaces(), [B]);
        assert.notEqual(kube!.touched!.viewOf({ namespace: B, name: "three" }), undefined, "recorded");
        now += IDLE_MS - 1;
        kube!.touched!.sweep();
        assert.deepEqual(kube!.touched!.namespaces(), [B], "not idle yet");
        now += 1;
        kube!.touched!.sweep();
        assert.deepEqual(kube!.touched!.namespaces(), []);
      });
    } finally {
      await kube?.close();
      await cluster.stop();
    }
  },
});
