/**
 * The Kubernetes connector against a real kube-apiserver (RBAC on, Dynamo CRDs installed),
 * authenticated as the ServiceAccount of deploy/rbac.yaml, with a stand-in operator.
 */
import assert from "node:assert/strict";
import { KubeError } from "../../src/errors.ts";
import { connectKubernetes, type KubeConnector, KubeScaler } from "../../src/kube/mod.ts";
import { ScaleUseCase } from "../../src/service/scale_use_case.ts";
import { createLogger } from "../../src/ops/log.ts";
import { parseScaleRequest, type ScaleResponse } from "../../src/service/contract.ts";
import { createScaleRequestHandler } from "../../src/service/handlers.ts";
import {
  createDgd,
  DGD_PATH,
  readDgd,
  replicasOf,
  v1alpha1Dgd,
  v1beta1Dgd,
} from "../support/dgd_fixtures.ts";
import { startFakeOperator, waitSettled } from "../support/fake_operator.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { waitFor } from "../support/ports.ts";
import { installRbac, serviceAccountDir } from "../support/rbac.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "models";
const QUIET = "quiet";
const logger = createLogger({ level: "error", sink: () => {} });

async function connector(
  cluster: KubeCluster,
  token: string,
  blockingTimeoutSeconds = 30,
): Promise<KubeConnector> {
  const dir = await serviceAccountDir(cluster, token);
  const env = cluster.inClusterEnv();
  // The read path (call counts, skip-when-equal); the watched path is tests/e2e/touched_cache_test.ts.
  return await connectKubernetes(
    { serviceAccountDir: dir, blockingTimeoutSeconds, watchTouched: false },
    (n) => env[n],
    logger,
  );
}

async function scale(kube: KubeConnector, request: Record<string, unknown>): Promise<ScaleResponse> {
  const handler = createScaleRequestHandler({
    managedNamespaces: null,
    noOperation: false,
    scaler: kube.kubeScaler,
    logger,
  });
  for await (
    const item of handler({ caller_namespace: "c", k8s_namespace: NS, ...request }, {
      id: "t",
      headers: {},
      signal: new AbortController().signal,
    })
  ) {
    return item as ScaleResponse;
  }
  throw new Error("no response");
}

const target = (sub: "prefill" | "decode", n: number, component_name?: string) => ({
  sub_component_type: sub,
  desired_replicas: n,
  ...(component_name ? { component_name } : {}),
});

Deno.test({
  name: "Kubernetes connector on a real API server",
  async fn(t) {
    const cluster = await startKubeCluster();
    let kube: KubeConnector | undefined;
    const operator = startFakeOperator(cluster, NS, { readyDelayMs: 800 });
    try {
      await cluster.createNamespace(NS);
      const token = await installRbac(cluster);
      kube = await connector(cluster, token);

      await t.step(
        "v1alpha1, no adapter: merge patch of the DGD, success message, read-back map",
        async () => {
          await createDgd(
            cluster,
            v1alpha1Dgd("alpha", NS, {
              Prefill: { role: "prefill", replicas: 1 },
              Decode: { role: "decode", replicas: 2 },
              Frontend: { type: "frontend", replicas: 1 },
            }),
          );
          const response = await scale(kube!, {
            graph_deployment_name: "alpha",
            target_replicas: [target("prefill", 3), target("decode", 2)],
          });
          assert.deepEqual(response, {
            status: "success",
            message: "Scaled alpha successfully",
            current_replicas: { prefill: 3, decode: 2 },
          });
          assert.deepEqual(replicasOf(await readDgd(cluster, "v1alpha1", NS, "alpha")), {
            Prefill: 3,
            Decode: 2,
            Frontend: 1,
          });
        },
      );

      await t.step("v1beta1, no adapter: JSON patch guarded by the component name", async () => {
        await createDgd(
          cluster,
          v1beta1Dgd("beta", NS, {
            frontend: { type: "frontend", replicas: 1 },
            pre: { role: "prefill", replicas: 1 },
            dec: { role: "decode", replicas: 1 },
          }),
        );
        const response = await scale(kube!, {
          graph_deployment_name: "beta",
          target_replicas: [target("decode", 4)],
        });
        assert.deepEqual(response, {
          status: "success",
          message: "Scaled beta successfully",
          current_replicas: { prefill: 1, decode: 4 },
        });
        assert.deepEqual(replicasOf(await readDgd(cluster, "v1beta1", NS, "beta")), {
          frontend: 1,
          pre: 1,
          dec: 4,
        });
      });

      await t.step(
        "adapter path: writes /scale, the operator propagates, current_replicas shows the written value",
        async () => {
          await createDgd(
            cluster,
            v1beta1Dgd("adapted", NS, {
              Pre: { role: "prefill", replicas: 1, adapter: true },
              Dec: { role: "decode", replicas: 1, adapter: true },
            }),
          );
          const before = await readDgd(cluster, "v1beta1", NS, "adapted");
          const response = await scale(kube!, {
            graph_deployment_name: "adapted",
            target_replicas: [target("prefill", 2)],
          });
          assert.deepEqual(response.current_replicas, { prefill: 2, decode: 1 });
          const adapter = await cluster.request(
            "GET",
            `/apis/nvidia.com/v1beta1/namespaces/${NS}/dynamographdeploymentscalingadapters/adapted-pre`,
          );
          assert.equal(adapter.json.spec.replicas, 2);
          // The GP did not touch the DGD itself; the operator copies the adapter's value.
          const dgdNow = await readDgd(cluster, "v1beta1", NS, "adapted");
          assert.ok(
            dgdNow.metadata.generation === before.metadata.generation || replicasOf(dgdNow).Pre === 2,
          );
          await waitFor(
            async () => replicasOf(await readDgd(cluster, "v1beta1", NS, "adapted")).Pre === 2,
            "the operator copying the adapter's replicas into the DGD",
          );
        },
      );

      await t.step("fallback path: adapter enabled but absent (404) → the DGD is patched", async () => {
        await createDgd(
          cluster,
          v1alpha1Dgd("noadapter", NS, {
            P: { role: "prefill", replicas: 1, adapter: true },
            D: { role: "decode", replicas: 1 },
          }),
          { createAdapters: false },
        );
        const response = await scale(kube!, {
          graph_deployment_name: "noadapter",
          target_replicas: [target("prefill", 5)],
        });
        assert.equal(response.status, "success");
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", NS, "noadapter")).P, 5);
      });

      await t.step(
        "skip when equal: no write at all (resourceVersion unchanged), still success",
        async () => {
          await waitSettled(cluster, NS, "alpha");
          const before = await readDgd(cluster, "v1alpha1", NS, "alpha");
          const calls = kube!.client.calls;
          const response = await scale(kube!, {
            graph_deployment_name: "alpha",
            target_replicas: [target("prefill", 3), target("decode", 2)],
          });
          assert.deepEqual(response, {
            status: "success",
            message: "Scaled alpha successfully",
            current_replicas: { prefill: 3, decode: 2 },
          });
          assert.equal(kube!.client.calls - calls, 1, "one read, no write");
          assert.equal(
            (await readDgd(cluster, "v1alpha1", NS, "alpha")).metadata.resourceVersion,
            before.metadata.resourceVersion,
          );
        },
      );

      await t.step("not Ready → rejected with upstream's message, nothing written", async () => {
        await createDgd(cluster, v1alpha1Dgd("sleepy", NS, { P: { role: "prefill", replicas: 1 } }), {
          ready: false,
        });
        const before = await readDgd(cluster, "v1alpha1", NS, "sleepy");
        operator.keepNotReady(NS, "sleepy", true);
        const response = await scale(kube!, {
          graph_deployment_name: "sleepy",
          target_replicas: [target("prefill", 4)],
        });
        assert.deepEqual(response, {
          status: "rejected",
          message: `DynamoGraphDeployment is not ready (name: 'sleepy' in namespace '${NS}')`,
          current_replicas: {},
        });
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", NS, "sleepy")).P, 1);
        assert.equal(
          (await readDgd(cluster, "v1alpha1", NS, "sleepy")).metadata.generation,
          before.metadata.generation,
        );
      });

      await t.step("missing DGD → error naming DGD and namespace", async () => {
        const response = await scale(kube!, {
          graph_deployment_name: "ghost",
          target_replicas: [target("prefill", 1)],
        });
        assert.deepEqual(response, {
          status: "error",
          message: `Parent DynamoGraphDeployment not found (name: 'ghost' in namespace '${NS}')`,
          current_replicas: {},
        });
      });

      await t.step(
        "duplicate sub-component → upstream's error; nothing written (all targets resolved first)",
        async () => {
          await createDgd(
            cluster,
            v1alpha1Dgd("twins", NS, {
              B: { role: "decode", replicas: 1 },
              A: { role: "decode", replicas: 1 },
              P: { role: "prefill", replicas: 1 },
            }),
          );
          const response = await scale(kube!, {
            graph_deployment_name: "twins",
            target_replicas: [target("prefill", 3), target("decode", 2)],
          });
          assert.deepEqual(response, {
            status: "error",
            message:
              "DynamoGraphDeployment must contain only one service with subComponentType 'decode', but found multiple: {A, B}",
            current_replicas: {},
          });
          assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", NS, "twins")).P, 1);
        },
      );

      await t.step("component_name fallback for a service without subComponentType", async () => {
        await createDgd(
          cluster,
          v1alpha1Dgd("named", NS, { Worker: { replicas: 1 }, P: { role: "prefill", replicas: 1 } }),
        );
        const response = await scale(kube!, {
          graph_deployment_name: "named",
          target_replicas: [target("decode", 3, "Worker")],
        });
        assert.equal(response.status, "success", response.message);
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", NS, "named")).Worker, 3);
        const missing = await scale(kube!, {
          graph_deployment_name: "named",
          target_replicas: [target("decode", 3)],
        });
        assert.equal(
          missing.message,
          "DynamoGraphDeployment must contain a service with subComponentType 'decode'",
        );
      });

      await t.step("409 on the first write → fresh read, decide again, succeed", async () => {
        await waitSettled(cluster, NS, "beta");
        let attempts = 0;
        const racing = await connector(cluster, token);
        const scaler = new ScaleUseCase({
          port: new KubeScaler({
            client: racing.client,
            logger,
            versions: () => Promise.resolve({ dgd: "v1beta1", adapter: "v1beta1" }),
          }),
          logger,
          beforeWrite: async (_ref, attempt) => {
            attempts++;
            if (attempt === 0) {
              // Another writer changes the DGD between our read and our write.
              const r = await cluster.request("PATCH", DGD_PATH("v1beta1", NS, "beta"), {
                metadata: { annotations: { touched: "yes" } },
              });
              assert.ok(r.ok);
            }
          },
        });
        const response = await scaler.scale(
          parseScaleRequest({
            caller_namespace: "c",
            graph_deployment_name: "beta",
            k8s_namespace: NS,
            target_replicas: [target("prefill", 6)],
          }),
          new AbortController().signal,
        );
        assert.equal(response.status, "success");
        assert.equal(attempts, 2);
        assert.equal(replicasOf(await readDgd(cluster, "v1beta1", NS, "beta")).pre, 6);
        racing.close();
      });

      await t.step(
        "blocking: waits for the operator (watch, no 10 s sleep) and answers after Ready",
        async () => {
          await waitSettled(cluster, NS, "alpha");
          const response = await scale(kube!, {
            graph_deployment_name: "alpha",
            blocking: true,
            target_replicas: [target("prefill", 4)],
          });
          const answeredAt = Date.now();
          assert.equal(response.status, "success", response.message);
          const dgd = await readDgd(cluster, "v1alpha1", NS, "alpha");
          assert.equal(dgd.status.conditions[0].status, "True");
          assert.equal(dgd.status.observedGeneration, dgd.metadata.generation);
          // Answered only once the operator had reported the written generation Ready.
          const readySent = operator.readySentAt("alpha", dgd.metadata.generation);
          assert.ok(
            readySent !== undefined && readySent <= answeredAt,
            `Ready ${readySent}, answer ${answeredAt}`,
          );
        },
      );

      await t.step(
        "blocking timeout → error with upstream's wording; another DGD is served meanwhile",
        async () => {
          const short = await connector(cluster, token, 6);
          await waitSettled(cluster, NS, "beta");
          operator.keepNotReady(NS, "alpha", true);
          let slowDone = false;
          const slow = scale(short, {
            graph_deployment_name: "alpha",
            blocking: true,
            target_replicas: [target("prefill", 5)],
          }).finally(() => (slowDone = true));
          await waitFor(
            async () => replicasOf(await readDgd(cluster, "v1alpha1", NS, "alpha")).Prefill === 5,
            "alpha's blocking write",
          );
          const other = await scale(short, {
            graph_deployment_name: "beta",
            target_replicas: [target("prefill", 7)],
          });
          assert.equal(other.status, "success", other.message);
          assert.equal(
            slowDone,
            false,
            "beta was answered while alpha's blocking wait (6 s timeout) went on",
          );
          const timedOut = await slow;
          assert.deepEqual(timedOut, {
            status: "error",
            message: "Graph deployment 'alpha' is not ready after 6 seconds",
            current_replicas: {},
          });
          operator.keepNotReady(NS, "alpha", false);
          short.close();
        },
      );

      await t.step("requests for the same DGD are applied in arrival order", async () => {
        // In a namespace the stand-in operator does not watch, so the DGD stays Ready throughout.
        await cluster.createNamespace(QUIET);
        await createDgd(
          cluster,
          v1alpha1Dgd("ordered", QUIET, {
            P: { role: "prefill", replicas: 1 },
            D: { role: "decode", replicas: 1 },
          }),
        );
        const results = await Promise.all(
          [5, 6, 7, 8].map((n) =>
            scale(kube!, {
              graph_deployment_name: "ordered",
              k8s_namespace: QUIET,
              target_replicas: [target("decode", n)],
            })
          ),
        );
        assert.deepEqual(results.map((r) => r.current_replicas.decode), [5, 6, 7, 8]);
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", QUIET, "ordered")).D, 8);
      });

      await t.step("a 403 names the missing permission", async () => {
        await cluster.createServiceAccount("dynamo-system", "nobody");
        const weak = await connector(
          cluster,
          await cluster.createServiceAccountToken("dynamo-system", "nobody"),
        );
        const response = await scale(weak, {
          graph_deployment_name: "alpha",
          target_replicas: [target("prefill", 1)],
        });
        assert.equal(response.status, "error");
        assert.match(
          response.message,
          /Kubernetes denied get on dynamographdeployments\.nvidia\.com 'alpha' in namespace 'models' \(HTTP 403\): the service account needs RBAC verb "get" on "dynamographdeployments"/,
        );
        weak.close();
      });

      await t.step("kube errors carry verb, resource and status", async () => {
        const error = await kube!.client.json({
          method: "GET",
          path: DGD_PATH("v1alpha1", NS, "ghost"),
          verb: "get",
          group: "nvidia.com",
          resource: "dynamographdeployments",
          name: "ghost",
          namespace: NS,
        }).catch((e) => e);
        assert.ok(error instanceof KubeError);
        assert.equal(error.detail.status, 404);
      });
    } finally {
      await kube?.close();
      await operator.stop();
      await cluster.stop();
    }
  },
});

/** Waits until the stand-in operator has reported the DGD's current generation Ready. */
