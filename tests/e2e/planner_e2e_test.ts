/**
 * End to end, as deployed: a real kube-apiserver with deploy/rbac.yaml applied and a v1beta1 DGD
 * (components typed `prefill` / `decode`), our service started as users start it
 * (`deno run -P=service main.ts`) in in-cluster mode with the manifest's ServiceAccount token, and
 * upstream's own planner-side client (`GlobalPlannerConnector` of ai-dynamo 1.6.1, driven by
 * tests/interop/py/planner_client.py) asking for new replica counts over the Dynamo runtime
 * (file discovery, TCP request plane).
 */
import assert from "node:assert/strict";
import { createDgd, readDgd, replicasOf, v1beta1Dgd } from "../support/dgd_fixtures.ts";
import { markReady } from "../support/fake_operator.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { installRbac } from "../support/rbac.ts";
import { assertVenv, callConnector } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const GP_NS = "gp-e2e";
const CALLER = "llama-planner";
const K8S_NS = "llm";
const SA_NS = "dynamo-system";

const plan = (
  env: Record<string, string>,
  call: { caller: string; dgd: string; prefill?: number; decode?: number },
) => callConnector(env, { gpNamespace: GP_NS, k8sNamespace: K8S_NS, ...call });

Deno.test({
  name: "upstream GlobalPlannerConnector → our service (in-cluster, deploy/rbac.yaml) → DGD replicas",
  async fn(t) {
    await assertVenv(); // no venv, no test: fail loudly before starting anything
    let cluster: KubeCluster | undefined;
    let service: ServiceProcess | undefined;
    const temp: string[] = [];
    try {
      cluster = await startKubeCluster();
      await cluster.createNamespace(K8S_NS);
      const token = await installRbac(cluster);
      // Under /tmp: the service's permission set reads only /tmp and the standard SA path.
      const saDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-e2e-sa-" });
      const kvDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-e2e-kv-" });
      temp.push(saDir, kvDir);
      await cluster.writeServiceAccountDir(saDir, SA_NS, token);

      await createDgd(
        cluster,
        v1beta1Dgd("llama", K8S_NS, {
          frontend: { type: "frontend", replicas: 1, gpu: 0 },
          prefill: { type: "prefill", replicas: 1 },
          decode: { type: "decode", replicas: 1 },
        }),
      );
      await createDgd(
        cluster,
        v1beta1Dgd("sleepy", K8S_NS, {
          prefill: { type: "prefill", replicas: 1 },
          decode: { type: "decode", replicas: 1 },
        }),
      );
      await markReady(cluster, K8S_NS, "sleepy", false, "v1beta1");

      const discovery = { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: kvDir };
      service = await startService({
        args: [
          "--service-account-dir",
          saDir,
          "--managed-namespaces",
          CALLER,
          "--blocking-timeout-seconds",
          "20",
        ],
        env: { DYN_NAMESPACE: GP_NS, ...cluster.inClusterEnv(), ...discovery },
      });
      const connected = await service.waitForLog((l) => l.message === "Kubernetes connector ready");
      assert.equal(connected.server, cluster.url);
      assert.equal(connected.credentials, `service account ${saDir}`);
      assert.equal(service.ready.no_operation, false);

      await t.step("authorized caller → success; the DGD now has the requested replicas", async () => {
        const outcome = await plan(discovery, { caller: CALLER, dgd: "llama", prefill: 3, decode: 2 });
        assert.equal(outcome.raised, null, JSON.stringify(outcome));
        assert.deepEqual(outcome.response, {
          status: "success",
          message: "Scaled llama successfully",
          current_replicas: { prefill: 3, decode: 2 },
        });
        assert.equal(outcome.request?.caller_namespace, CALLER);
        assert.equal(outcome.request?.graph_deployment_name, "llama");
        assert.equal(outcome.request?.k8s_namespace, K8S_NS);
        assert.deepEqual(replicasOf(await readDgd(cluster!, "v1beta1", K8S_NS, "llama")), {
          frontend: 1,
          prefill: 3,
          decode: 2,
        });
        const log = await service!.waitForLog((l) => l.message === "scale request" && l.dgd === "llama");
        assert.equal(log.result, "success", JSON.stringify(log));
      });

      await t.step("unauthorized caller namespace → the connector raises RuntimeError", async () => {
        const outcome = await plan(discovery, { caller: "intruder", dgd: "llama", prefill: 5 });
        assert.deepEqual(outcome.response, {
          status: "error",
          message: "Namespace intruder not authorized",
          current_replicas: {},
        });
        assert.deepEqual(outcome.raised, {
          exception: "RuntimeError",
          message: "GlobalPlanner scaling failed: Namespace intruder not authorized",
        });
        assert.equal(replicasOf(await readDgd(cluster!, "v1beta1", K8S_NS, "llama")).prefill, 3);
      });

      await t.step(
        "DGD not Ready → rejected; the connector logs it and carries on (no exception)",
        async () => {
          const before = await readDgd(cluster!, "v1beta1", K8S_NS, "sleepy");
          const outcome = await plan(discovery, { caller: CALLER, dgd: "sleepy", prefill: 2, decode: 2 });
          assert.deepEqual(outcome.response, {
            status: "rejected",
            message: `DynamoGraphDeployment is not ready (name: 'sleepy' in namespace '${K8S_NS}')`,
            current_replicas: {},
          });
          assert.equal(outcome.raised, null);
          const after = await readDgd(cluster!, "v1beta1", K8S_NS, "sleepy");
          assert.deepEqual(replicasOf(after), { prefill: 1, decode: 1 });
          assert.equal(after.metadata.generation, before.metadata.generation);
        },
      );

      await t.step("SIGTERM → clean exit", async () => {
        assert.equal(await service!.stop("SIGTERM"), 0);
        service = undefined;
      });
    } finally {
      await service?.stop("SIGKILL");
      await cluster?.stop();
      for (const dir of temp) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
