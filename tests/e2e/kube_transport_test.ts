/**
 * Transport and credentials against the real API server: one TLS connection for every call,
 * in-cluster token re-read after 60 s and after a 401, kubeconfig for development; the running
 * service's scaler, DGD cache and kubernetes discovery share that one client and connection.
 */
import assert from "node:assert/strict";
import { KubeClient } from "../../src/kube/client.ts";
import { loadCredentials } from "../../src/kube/credentials.ts";
import { connectKubernetes } from "../../src/kube/mod.ts";
import { createLogger } from "../../src/ops/log.ts";
import { parseScaleRequest } from "../../src/service/contract.ts";
import { createDgd, DGD_PATH, readDgd, replicasOf, v1alpha1Dgd } from "../support/dgd_fixtures.ts";
import { type KubeCluster, startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { DWM_PATH } from "../support/kube_discovery.ts";
import { installRbac, SA_NAMESPACE, serviceAccountDir } from "../support/rbac.ts";
import { startService } from "../support/service.ts";
import { startCountingProxy } from "../support/tcp_proxy.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "transport";
const logger = createLogger({ level: "error", sink: () => {} });
const getDgd = (name: string) => ({
  method: "GET" as const,
  path: DGD_PATH("v1alpha1", NS, name),
  verb: "get",
  group: "nvidia.com",
  resource: "dynamographdeployments",
  name,
  namespace: NS,
});

async function saDir(cluster: KubeCluster, token: string): Promise<string> {
  const dir = await serviceAccountDir(cluster, token);
  return dir;
}

Deno.test({
  name: "Kubernetes transport and credentials on a real API server",
  async fn(t) {
    const cluster = await startKubeCluster({ extraCrdFiles: [upstreamDwmCrd()] });
    try {
      await cluster.createNamespace(NS);
      const token = await installRbac(cluster);
      await cluster.createServiceAccount("dynamo-system", "powerless");
      const powerless = await cluster.createServiceAccountToken("dynamo-system", "powerless");
      for (const name of ["a", "b", "c"]) {
        await createDgd(
          cluster,
          v1alpha1Dgd(name, NS, { P: { role: "prefill", replicas: 1 }, D: { role: "decode", replicas: 1 } }),
        );
      }

      await t.step(
        "every call of a running service shares one TLS connection (counted at a proxy)",
        async () => {
          const proxy = startCountingProxy(cluster.port);
          const dir = await saDir(cluster, token);
          const env: Record<string, string> = {
            KUBERNETES_SERVICE_HOST: "127.0.0.1",
            KUBERNETES_SERVICE_PORT: String(proxy.port),
          };
          const kube = await connectKubernetes(
            { serviceAccountDir: dir, blockingTimeoutSeconds: 30 },
            (n) => env[n],
            logger,
          );
          try {
            const request = (dgd: string, n: number) =>
              kube.kubeScaler.scale(
                parseScaleRequest({
                  caller_namespace: "x",
                  graph_deployment_name: dgd,
                  k8s_namespace: NS,
                  target_replicas: [{ sub_component_type: "prefill", desired_replicas: n }],
                }),
                new AbortController().signal,
              );
            for (let n = 2; n <= 6; n++) {
              assert.equal((await request("a", n)).status, "success");
            }
            const concurrent = await Promise.all([
              request("a", 7),
              request("b", 3),
              request("c", 4),
              request("b", 5),
            ]);
            assert.deepEqual(concurrent.map((r) => r.status), ["success", "success", "success", "success"]);
            // Reads, writes, and the list + watch of the DGD cache the requests started.
            assert.deepEqual(kube.touched?.namespaces(), [NS]);
            assert.ok(kube.client.calls >= 12, `expected many API calls, made ${kube.client.calls}`);
            assert.equal(
              proxy.connections,
              1,
              `${kube.client.calls} API calls used ${proxy.connections} connections`,
            );
            assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", NS, "b")).P, 5);
          } finally {
            await kube.close();
            await proxy.close();
          }
        },
      );

      await t.step(
        "the service process: DGD cache, discovery publish, discovery watch and re-apply on one connection",
        async () => {
          const proxy = startCountingProxy(cluster.port);
          const dir = await saDir(cluster, token);
          const service = await startService({
            args: ["--service-account-dir", dir, "--max-total-gpus", "100"],
            env: {
              DYN_NAMESPACE: "gp-one-client",
              KUBERNETES_SERVICE_HOST: "127.0.0.1",
              KUBERNETES_SERVICE_PORT: String(proxy.port),
              DYN_DISCOVERY_BACKEND: "kubernetes",
              POD_NAME: "gp-one-0",
              POD_UID: "uid-gp-one-0",
              POD_NAMESPACE: SA_NAMESPACE,
            },
          });
          try {
            await service.waitForLog((l) => l.message === "DGD cache synced");
            const healed = service.waitForLog((l) => l.message === "DynamoWorkerMetadata re-applied");
            assert.equal((await cluster.request("DELETE", DWM_PATH(SA_NAMESPACE, "gp-one-0"))).status, 200);
            await healed;
            assert.equal((await cluster.request("GET", DWM_PATH(SA_NAMESPACE, "gp-one-0"))).status, 200);
            assert.equal(proxy.connections, 1, "one client, one pooled connection");
            assert.equal(await service.stop(), 0);
          } finally {
            await service.stop("SIGKILL");
            await proxy.close();
          }
        },
      );

      await t.step("no more than one read and one write per target per request", async () => {
        const dir = await saDir(cluster, token);
        const env = cluster.inClusterEnv();
        const kube = await connectKubernetes(
          // The first request in a namespace reads (the watch cache is not awaited); without it,
          // so the count is exact.
          {
            serviceAccountDir: dir,
            blockingTimeoutSeconds: 30,
            dgdApiVersion: "v1alpha1",
            watchTouched: false,
          },
          (n) => env[n],
          logger,
        );
        try {
          const before = kube.client.calls;
          await kube.kubeScaler.scale(
            parseScaleRequest({
              caller_namespace: "x",
              graph_deployment_name: "c",
              k8s_namespace: NS,
              target_replicas: [{ sub_component_type: "prefill", desired_replicas: 9 }, {
                sub_component_type: "decode",
                desired_replicas: 9,
              }],
            }),
            new AbortController().signal,
          );
          // one GET of the DGD + one merge patch for both services
          assert.equal(kube.client.calls - before, 2);
        } finally {
          await kube.close();
        }
      });

      await t.step("the token is re-read when the cached copy is older than 60 s", async () => {
        const dir = await saDir(cluster, token);
        let now = 1_000_000;
        const env = cluster.inClusterEnv();
        const credentials = await loadCredentials({
          serviceAccountDir: dir,
          getEnv: (n) => env[n],
          clock: () => now,
        });
        const client = new KubeClient(credentials, logger);
        try {
          assert.equal((await client.json(getDgd("a"))).kind, "DynamoGraphDeployment");
          await Deno.writeTextFile(`${dir}/token`, powerless); // rotated to an identity without rights
          now += 30_000;
          assert.equal(
            (await client.json(getDgd("a"))).kind,
            "DynamoGraphDeployment",
            "cached token still used before 60 s",
          );
          now += 31_000;
          await assert.rejects(client.json(getDgd("a")), /HTTP 403/, "the rotated token was not used");
        } finally {
          client.close();
        }
      });

      await t.step("a 401 re-reads the token once and retries with the new one", async () => {
        const dir = await saDir(cluster, "stale-token-the-server-does-not-know");
        const env = cluster.inClusterEnv();
        const credentials = await loadCredentials({ serviceAccountDir: dir, getEnv: (n) => env[n] });
        const client = new KubeClient(credentials, logger);
        try {
          await Deno.writeTextFile(`${dir}/token`, token); // rotated on disk; cache still holds the stale one
          assert.equal((await client.json(getDgd("a"))).kind, "DynamoGraphDeployment");
          await Deno.writeTextFile(`${dir}/token`, "still-unknown");
          const again = await loadCredentials({ serviceAccountDir: dir, getEnv: (n) => env[n] });
          const failing = new KubeClient(again, logger);
          await assert.rejects(failing.json(getDgd("a")), /HTTP 401\), also after re-reading the token/);
          failing.close();
        } finally {
          client.close();
        }
      });

      await t.step("outside a cluster, KUBECONFIG is used", async () => {
        const path = await cluster.kubeconfig(
          `${await Deno.makeTempDir({ dir: cluster.dir, prefix: "kc-" })}/config`,
          token,
          NS,
        );
        const credentials = await loadCredentials({
          serviceAccountDir: "/nonexistent",
          getEnv: (n) => (n === "KUBECONFIG" ? path : undefined),
        });
        assert.equal(credentials.namespace, NS);
        const client = new KubeClient(credentials, logger);
        try {
          assert.equal((await client.json<{ metadata: { name: string } }>(getDgd("a"))).metadata.name, "a");
        } finally {
          client.close();
        }
      });
    } finally {
      await cluster.stop();
    }
  },
});
