/**
 * `global-planner call` with DYN_DISCOVERY_BACKEND=kubernetes against our service on a real
 * kube-apiserver: it finds the service through its DynamoWorkerMetadata CR joined with a ready
 * EndpointSlice entry (the caller authenticated by KUBECONFIG), and finds nothing once the entry
 * is not ready, as a 1.6.1 caller.
 */
import assert from "node:assert/strict";
import { startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { putSlice } from "../support/kube_discovery.ts";
import { installRbac, SA_NAMESPACE, serviceAccountDir } from "../support/rbac.ts";
import { serviceCommand, type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const GP_NS = "gp-call-kube";
const SLICE = "global-planner";

Deno.test({
  name: "call finds the service through Kubernetes discovery (CR ⋈ ready slice entry by pod uid)",
  async fn() {
    const cluster = await startKubeCluster();
    let service: ServiceProcess | undefined;
    const kubeconfig = await Deno.makeTempFile({ dir: "/tmp", prefix: "gp-call-kubeconfig-" });
    try {
      await cluster.installCrdFile(upstreamDwmCrd());
      const token = await installRbac(cluster);
      const saDir = await serviceAccountDir(cluster, token);
      service = await startService({
        args: ["--service-account-dir", saDir, "--managed-namespaces", "prod-llama"],
        env: {
          DYN_NAMESPACE: GP_NS,
          ...cluster.inClusterEnv(),
          DYN_DISCOVERY_BACKEND: "kubernetes",
          POD_NAME: "gp-0",
          POD_UID: "uid-gp-0",
          POD_NAMESPACE: SA_NAMESPACE,
        },
      });
      await service.waitForLog((l) => l.message === "DynamoWorkerMetadata published");
      await cluster.kubeconfig(kubeconfig, cluster.adminToken, SA_NAMESPACE);
      const callerEnv = {
        DYN_DISCOVERY_BACKEND: "kubernetes",
        POD_NAME: "planner-0",
        POD_UID: "uid-planner-0",
        POD_NAMESPACE: SA_NAMESPACE,
        KUBECONFIG: kubeconfig,
        DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1",
      };
      const call = async (args: string[]) => {
        const out = await serviceCommand(
          ["call", "--namespace", GP_NS, "--timeout", "20", ...args],
          callerEnv,
        )
          .output();
        return {
          code: out.code,
          stdout: new TextDecoder().decode(out.stdout),
          stderr: new TextDecoder().decode(out.stderr),
        };
      };

      // Before any slice entry: the CR alone does not make the instance callable.
      const unlisted = await call(["--health"]);
      assert.equal(unlisted.code, 1, unlisted.stderr);
      assert.match(unlisted.stderr, /no instance of gp-call-kube\.GlobalPlanner\.health found/);

      await putSlice(cluster, SA_NAMESPACE, SLICE, [{ pod: "gp-0", uid: "uid-gp-0", ready: true }]);
      const health = await call(["--health"]);
      assert.equal(health.code, 0, health.stderr);
      assert.deepEqual(JSON.parse(health.stdout), {
        status: "healthy",
        component: "GlobalPlanner",
        namespace: GP_NS,
        managed_namespaces: ["prod-llama"],
      });

      // The same pod's entry under another uid (a restarted pod) does not join.
      await putSlice(cluster, SA_NAMESPACE, SLICE, [{ pod: "gp-0", uid: "uid-other", ready: true }]);
      assert.equal((await call(["--health"])).code, 1);
      await putSlice(cluster, SA_NAMESPACE, SLICE, [{ pod: "gp-0", uid: "uid-gp-0", ready: false }]);
      const notReady = await call(["--health"]);
      assert.equal(notReady.code, 1);
      assert.match(notReady.stderr, /no instance of gp-call-kube\.GlobalPlanner\.health found/);
    } finally {
      await service?.stop();
      await cluster.stop();
      await Deno.remove(kubeconfig).catch(() => {});
    }
  },
});
