/**
 * A blocking scale of a DGD whose namespace we already watch follows that watch
 * (src/kube/wait_ready.ts, `DgdCache.follow`): no watch request of its own, answered once the
 * operator reports the written generation Ready; when that watch stops mid-wait, the wait
 * watches for itself and still answers after Ready. Real kube-apiserver, RBAC of
 * deploy/rbac.yaml, the test-side stand-in operator.
 */
import assert from "node:assert/strict";
import { connectKubernetes, type KubeConnector } from "../../src/kube/mod.ts";
import { FOLLOW_MESSAGE, READY_MESSAGE } from "../../src/kube/wait_ready.ts";
import { createLogger } from "../../src/ops/log.ts";
import { parseScaleRequest, type ScaleResponse } from "../../src/service/contract.ts";
import { createDgd, readDgd, v1alpha1Dgd } from "../support/dgd_fixtures.ts";
import { startFakeOperator, waitSettled } from "../support/fake_operator.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { waitFor } from "../support/ports.ts";
import { installRbac, serviceAccountDir } from "../support/rbac.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "follow-a";
const OTHER = "follow-b";
const services = {
  P: { role: "prefill" as const, replicas: 1 },
  D: { role: "decode" as const, replicas: 1 },
};

Deno.test({
  name: "blocking scale follows the namespace's watch: no watch of its own; falls back when it stops",
  async fn(t) {
    const cluster: KubeCluster = await startKubeCluster();
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ level: "debug", sink: (l) => lines.push(JSON.parse(l)) });
    let kube: KubeConnector | undefined;
    const operator = startFakeOperator(cluster, NS, { readyDelayMs: 200, intervalMs: 50 });
    try {
      await cluster.createNamespace(NS);
      await cluster.createNamespace(OTHER);
      const token = await installRbac(cluster);
      const dir = await serviceAccountDir(cluster, token);
      const env = cluster.inClusterEnv();
      kube = await connectKubernetes(
        {
          serviceAccountDir: dir,
          blockingTimeoutSeconds: 30,
          dgdApiVersion: "v1alpha1",
          watchTouched: { maxNamespaces: 1, idleMs: 600_000 },
        },
        (n) => env[n],
        logger,
      );
      const scale = (prefill: number, blocking: boolean): Promise<ScaleResponse> =>
        kube!.kubeScaler.scale(
          parseScaleRequest({
            caller_namespace: "c",
            graph_deployment_name: "one",
            k8s_namespace: NS,
            target_replicas: [{ sub_component_type: "prefill", desired_replicas: prefill }],
            blocking,
          }),
          new AbortController().signal,
        );
      const ended = (from: number) => lines.slice(from).filter((l) => l.message === READY_MESSAGE);
      /** Answered only once the operator had reported the written generation Ready. */
      const assertReadyBefore = async (answeredAt: number) => {
        const dgd = await readDgd(cluster, "v1alpha1", NS, "one");
        assert.equal(dgd.status.observedGeneration, dgd.metadata.generation);
        const readySent = operator.readySentAt("one", dgd.metadata.generation);
        assert.ok(
          readySent !== undefined && readySent <= answeredAt,
          `Ready ${readySent}, answer ${answeredAt}`,
        );
      };
      await createDgd(cluster, v1alpha1Dgd("one", NS, services));
      await waitSettled(cluster, NS, "one");
      assert.equal((await scale(2, false)).status, "success"); // touches the namespace
      await waitSettled(cluster, NS, "one");
      const latest = (await readDgd(cluster, "v1alpha1", NS, "one")).metadata.resourceVersion;
      await waitFor(
        () => kube!.touched!.viewOf({ namespace: NS, name: "one" })?.resourceVersion === latest,
        "the namespace's watch to hold the settled DGD",
      );

      await t.step(
        "followed on the namespace's watch: one API call (the write), answered after Ready",
        async () => {
          const from = lines.length;
          const before = kube!.client.calls;
          const response = await scale(3, true);
          const answeredAt = Date.now();
          assert.equal(response.status, "success", response.message);
          assert.equal(kube!.client.calls - before, 1, "the PATCH; no watch, no read");
          await assertReadyBefore(answeredAt);
          assert.deepEqual(ended(from).map((l) => l.via), ["cache"]);
        },
      );

      await t.step("the namespace's watch stops mid-wait: the wait watches for itself", async () => {
        await waitSettled(cluster, NS, "one");
        operator.keepNotReady(NS, "one", true);
        const from = lines.length;
        const answer = scale(4, true);
        await waitFor(
          () => lines.slice(from).some((l) => l.message === FOLLOW_MESSAGE),
          "the wait to follow",
        );
        // One namespace at most: touching another stops this one's watch.
        assert.equal(kube!.touched!.viewOf({ namespace: OTHER, name: "x" }), undefined);
        assert.deepEqual(kube!.touched!.namespaces(), [OTHER]);
        operator.keepNotReady(NS, "one", false);
        const response = await answer;
        const answeredAt = Date.now();
        assert.equal(response.status, "success", response.message);
        await assertReadyBefore(answeredAt);
        assert.deepEqual(ended(from).map((l) => l.via), ["watch"]);
      });
    } finally {
      await operator.stop();
      await kube?.close();
      await cluster.stop();
    }
  },
});
