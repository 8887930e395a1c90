/**
 * Graceful shutdown of the service process in the middle of a request: the request is
 * answered (a blocking wait ends with a clear error), the registration is gone, exit code 0.
 */
import assert from "node:assert/strict";
import { createDgd, readDgd, replicasOf, v1beta1Dgd } from "../support/dgd_fixtures.ts";
import { startEtcd } from "../support/etcd.ts";
import { startFakeOperator } from "../support/fake_operator.ts";
import { startKubeCluster } from "../support/kube_cluster.ts";
import { waitFor } from "../support/ports.ts";
import { installRbac } from "../support/rbac.ts";
import { runDriver } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "shutdown";

Deno.test({
  name: "SIGTERM during a blocking scale request: answered with an error, deregistered, exit 0",
  async fn() {
    const cluster = await startKubeCluster();
    const etcd = await startEtcd();
    // The operator takes a minute to report Ready again: the blocking request is still waiting.
    const operator = startFakeOperator(cluster, NS, { readyDelayMs: 60_000 });
    let service: ServiceProcess | undefined;
    const saDir = await Deno.makeTempDir({ prefix: "gp-sa-" });
    try {
      await cluster.createNamespace(NS);
      const token = await installRbac(cluster);
      await cluster.writeServiceAccountDir(
        saDir,
        "dynamo-system",
        token,
      );
      await createDgd(
        cluster,
        v1beta1Dgd("slow", NS, {
          pre: { role: "prefill", replicas: 1 },
          dec: { role: "decode", replicas: 1 },
        }),
      );
      const env = { DYN_DISCOVERY_BACKEND: "etcd", ETCD_ENDPOINTS: etcd.endpoint };
      service = await startService({
        args: ["--service-account-dir", saDir],
        env: { ...env, ...cluster.inClusterEnv(), DYN_NAMESPACE: "gp-shutdown" },
      });
      const request = {
        caller_namespace: "c",
        graph_deployment_name: "slow",
        k8s_namespace: NS,
        blocking: true,
        target_replicas: [{ sub_component_type: "prefill", desired_replicas: 3 }],
      };
      const call = runDriver("call_endpoint.py", [
        "--endpoint",
        "gp-shutdown.GlobalPlanner.scale_request",
        "--as-string",
        "--payload",
        JSON.stringify(request),
        "--timeout",
        "60",
      ], env);
      // The write happened, so the request is in (or entering) its wait for Ready, which the
      // stand-in operator never reports: only a cancelled wait can answer (the message below).
      await waitFor(
        async () => replicasOf(await readDgd(cluster, "v1beta1", NS, "slow")).pre === 3,
        "the blocking request's write",
      );
      const code = await service.stop("SIGTERM");
      service = undefined;
      assert.equal(code, 0);
      const result = await call;
      const item = result.lines.find((l) => "item" in l)?.item as Record<string, unknown>;
      assert.ok(item, `no answer: ${JSON.stringify(result.lines)} ${result.stderr.slice(-500)}`);
      assert.equal(item.status, "error");
      assert.match(
        String(item.message),
        /^Blocking wait for graph deployment 'slow' cancelled: the Global Planner is shutting down/,
      );
      assert.deepEqual(await etcd.list("v1/instances/gp-shutdown/"), [], "registration left in etcd");
    } finally {
      await service?.stop("SIGKILL");
      await operator.stop();
      await etcd.stop();
      await cluster.stop();
      await Deno.remove(saDir, { recursive: true });
    }
  },
});
