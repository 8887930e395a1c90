/**
 * Readiness follows the DynamoWorkerMetadata registration, on a real kube-apiserver with
 * deploy/rbac.yaml: `/health` is 200 once the CR is published; when the CR is deleted and
 * cannot be re-applied (the Role lost `create`), `/health` answers 503 naming the
 * registration, so the pod's EndpointSlice entry turns not ready; once the permission is back,
 * the retrying re-apply restores the CR and `/health` turns 200 again.
 */
import assert from "node:assert/strict";
import { startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { DWM_PATH, getDwm } from "../support/kube_discovery.ts";
import { installRbac, readManifest, SA_NAME, SA_NAMESPACE, serviceAccountDir } from "../support/rbac.ts";
import { startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test({
  name: "kubernetes discovery: /health is 503 while the CR is gone and cannot be re-applied, 200 when back",
  async fn() {
    const cluster = await startKubeCluster({
      dgdCrd: "none",
      dgdsaCrd: false,
      extraCrdFiles: [upstreamDwmCrd()],
    });
    try {
      const token = await installRbac(cluster);
      const saDir = await serviceAccountDir(cluster, token);
      const role = (await readManifest("deploy/rbac.yaml")).find((m) => m.kind === "Role")!;
      /** Applies the Role with `verbs` and waits until the authorizer agrees about `create`. */
      const setRole = async (verbs: string[]) => {
        const path =
          `/apis/rbac.authorization.k8s.io/v1/namespaces/${SA_NAMESPACE}/roles/${role.metadata.name}`;
        const current = (await cluster.request("GET", path)).json;
        const put = await cluster.request("PUT", path, { ...current, rules: [{ ...role.rules[0], verbs }] });
        assert.ok(put.ok, put.text);
        for (let i = 0; i < 200; i++) {
          const review = await cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            apiVersion: "authorization.k8s.io/v1",
            kind: "SubjectAccessReview",
            spec: {
              user: `system:serviceaccount:${SA_NAMESPACE}:${SA_NAME}`,
              resourceAttributes: {
                namespace: SA_NAMESPACE,
                group: "nvidia.com",
                resource: "dynamoworkermetadatas",
                verb: "create",
              },
            },
          });
          if (Boolean(review.json.status?.allowed) === verbs.includes("create")) return;
          await new Promise((r) => setTimeout(r, 50));
        }
        throw new Error(`RBAC change to ${verbs} not in effect`);
      };

      const service = await startService({
        args: ["--no-operation", "--service-account-dir", saDir],
        env: {
          DYN_NAMESPACE: "gp-ready",
          ...cluster.inClusterEnv(),
          DYN_DISCOVERY_BACKEND: "kubernetes",
          POD_NAME: "gp-ready-0",
          POD_UID: "uid-gp-ready-0",
          POD_NAMESPACE: SA_NAMESPACE,
          DYN_SYSTEM_PORT: "0",
          DYN_SYSTEM_HOST: "127.0.0.1",
        },
      });
      try {
        const health = async () => {
          const response = await fetch(`http://127.0.0.1:${service.ready.system_port}/health`);
          return { status: response.status, body: await response.json() };
        };
        assert.equal((await health()).status, 200);
        assert.ok(await getDwm(cluster, SA_NAMESPACE, "gp-ready-0"), "published before ready");

        await setRole(["patch", "watch"]);
        const lost = service.waitForLog((l) =>
          l.message === "DynamoWorkerMetadata deleted by someone else; re-applying"
        );
        const denied = service.waitForLog((l) =>
          l.message === "cannot publish DynamoWorkerMetadata; retrying" && l.status === 403
        );
        assert.equal((await cluster.request("DELETE", DWM_PATH(SA_NAMESPACE, "gp-ready-0"))).status, 200);
        await lost;
        const retry = await denied;
        assert.match(String(retry.error), /needs RBAC verb "create" on "dynamoworkermetadatas"/);
        const down = await health();
        assert.equal(down.status, 503);
        assert.equal(down.body.reason, "discovery registration (kubernetes) is not alive");
        assert.equal(down.body.endpoints.scale_request, "notready");

        const healed = service.waitForLog((l) => l.message === "DynamoWorkerMetadata re-applied", 30_000);
        await setRole(role.rules[0].verbs);
        await healed;
        assert.equal((await health()).status, 200);
        assert.ok(await getDwm(cluster, SA_NAMESPACE, "gp-ready-0"));
        assert.equal(await service.stop(), 0);
      } finally {
        await service.stop("SIGKILL");
      }
    } finally {
      await cluster.stop();
    }
  },
});
