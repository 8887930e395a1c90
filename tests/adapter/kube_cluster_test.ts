/**
 * Proves the envtest-style harness against a real kube-apiserver + etcd.
 *
 *   npx -y deno@2.9.6 test --allow-run --allow-net=127.0.0.1 --allow-read --allow-write --allow-env \
 *     tests/support/kube_cluster_test.ts
 */
import assert from "node:assert/strict";
import { startKubeCluster } from "../support/kube_cluster.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("kube_cluster harness: CRDs, scale subresource, RBAC, ServiceAccount tokens", async (t) => {
  const kube = await startKubeCluster();
  try {
    const ns = "harness-test";
    const dgdPath = (v: string, name = "") =>
      `/apis/nvidia.com/${v}/namespaces/${ns}/dynamographdeployments${name ? `/${name}` : ""}`;

    await t.step("namespace", async () => {
      await kube.createNamespace(ns);
      const r = await kube.request("GET", `/api/v1/namespaces/${ns}`);
      assert.equal(r.status, 200);
      assert.equal(r.json.metadata.name, ns);
      const v = await kube.request("GET", "/version");
      assert.equal(v.status, 200);
      assert.match(v.json.gitVersion, /^v1\.\d+\.\d+/);
    });

    await t.step("v1alpha1 DGD (spec.services map)", async () => {
      const r = await kube.request("POST", dgdPath("v1alpha1"), {
        apiVersion: "nvidia.com/v1alpha1",
        kind: "DynamoGraphDeployment",
        metadata: { name: "graph-a" },
        spec: {
          backendFramework: "vllm",
          services: {
            Frontend: { componentType: "frontend", replicas: 1 },
            VllmDecodeWorker: {
              componentType: "worker",
              subComponentType: "decode",
              replicas: 2,
              resources: { limits: { gpu: "1" } },
              multinode: {},
              scalingAdapter: { enabled: true },
              ingress: { enabled: false }, // not in the reduced schema: preserved, not pruned
            },
          },
        },
      });
      assert.equal(r.status, 201, r.text);
      const got = await kube.request("GET", dgdPath("v1alpha1", "graph-a"));
      assert.equal(got.status, 200);
      const w = got.json.spec.services.VllmDecodeWorker;
      assert.equal(w.replicas, 2);
      assert.equal(w.multinode.nodeCount, 2); // schema default
      assert.equal(w.scalingAdapter.enabled, true);
      assert.deepEqual(w.ingress, { enabled: false });

      // status subresource: state defaults to "initializing"
      const st = await kube.request("PATCH", `${dgdPath("v1alpha1", "graph-a")}/status`, {
        status: {
          conditions: [{
            type: "Ready",
            status: "False",
            reason: "pods_not_ready",
            message: "",
            lastTransitionTime: "2026-01-01T00:00:00Z",
          }],
        },
      });
      assert.equal(st.status, 200, st.text);
      assert.equal(st.json.status.state, "initializing");

      // schema validation is enforced (replicas >= 0)
      const bad = await kube.request("POST", dgdPath("v1alpha1"), {
        apiVersion: "nvidia.com/v1alpha1",
        kind: "DynamoGraphDeployment",
        metadata: { name: "graph-bad" },
        spec: { services: { W: { replicas: -1 } } },
      });
      assert.equal(bad.status, 422, bad.text);
    });

    await t.step("v1beta1 DGD (spec.components list) in the reduced CRD", async () => {
      const r = await kube.request("POST", dgdPath("v1beta1"), {
        apiVersion: "nvidia.com/v1beta1",
        kind: "DynamoGraphDeployment",
        metadata: { name: "graph-b" },
        spec: {
          backendFramework: "sglang",
          components: [
            { name: "frontend", type: "frontend", replicas: 1 },
            {
              name: "prefill",
              type: "prefill",
              replicas: 3,
              scalingAdapter: {},
              podTemplate: {
                spec: { containers: [{ name: "main", resources: { limits: { "nvidia.com/gpu": "2" } } }] },
              },
            },
          ],
        },
      });
      assert.equal(r.status, 201, r.text);
      const got = await kube.request("GET", dgdPath("v1beta1", "graph-b"));
      assert.equal(got.status, 200);
      assert.equal(got.json.apiVersion, "nvidia.com/v1beta1");
      const p = got.json.spec.components.find((c: { name: string }) => c.name === "prefill");
      assert.equal(p.replicas, 3);
      assert.deepEqual(p.scalingAdapter, {});
      assert.equal(p.podTemplate.spec.containers[0].resources.limits["nvidia.com/gpu"], "2");

      // type is immutable once set (CEL transition rule)
      const comps = got.json.spec.components.map((c: { name: string }) =>
        c.name === "prefill" ? { ...c, type: "decode" } : c
      );
      const imm = await kube.request("PATCH", dgdPath("v1beta1", "graph-b"), { spec: { components: comps } });
      assert.equal(imm.status, 422, imm.text);

      // both versions list the same stored objects (conversion None: only apiVersion changes)
      const list = await kube.request("GET", dgdPath("v1beta1"));
      assert.deepEqual(list.json.items.map((i: { metadata: { name: string } }) => i.metadata.name).sort(), [
        "graph-a",
        "graph-b",
      ]);
    });

    await t.step("DGDSA scale subresource", async () => {
      const base = `/apis/nvidia.com/v1alpha1/namespaces/${ns}/dynamographdeploymentscalingadapters`;
      const r = await kube.request("POST", base, {
        apiVersion: "nvidia.com/v1alpha1",
        kind: "DynamoGraphDeploymentScalingAdapter",
        metadata: { name: "graph-a-vllmdecodeworker" },
        spec: { replicas: 2, dgdRef: { name: "graph-a", serviceName: "VllmDecodeWorker" } },
      });
      assert.equal(r.status, 201, r.text);
      const patched = await kube.request("PATCH", `${base}/graph-a-vllmdecodeworker/scale`, {
        spec: { replicas: 3 },
      }, "application/merge-patch+json");
      assert.equal(patched.status, 200, patched.text);
      assert.equal(patched.json.kind, "Scale");
      assert.equal(patched.json.spec.replicas, 3);
      const scale = await kube.request("GET", `${base}/graph-a-vllmdecodeworker/scale`);
      assert.equal(scale.json.spec.replicas, 3);
      const obj = await kube.request("GET", `${base}/graph-a-vllmdecodeworker`);
      assert.equal(obj.json.spec.replicas, 3);
      // storage version of the DGDSA CRD is v1beta1; v1alpha1 <-> v1beta1 have identical schemas
      const beta = await kube.request(
        "GET",
        `/apis/nvidia.com/v1beta1/namespaces/${ns}/dynamographdeploymentscalingadapters/graph-a-vllmdecodeworker`,
      );
      assert.equal(beta.json.spec.replicas, 3);
    });

    await t.step("RBAC: ServiceAccount without a role gets 403; files for in-cluster config", async () => {
      const token = await kube.createServiceAccountToken(ns, "no-role", { expirationSeconds: 600 });
      const r = await kube.requestAs(token, "GET", dgdPath("v1alpha1"));
      assert.equal(r.status, 403, r.text);
      assert.equal(r.json.reason, "Forbidden");
      assert.match(r.json.message, /system:serviceaccount:harness-test:no-role/);

      // the token is a valid identity (authenticated, just not authorized)
      const review = await kube.requestAs(
        token,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {
          apiVersion: "authentication.k8s.io/v1",
          kind: "SelfSubjectReview",
        },
      );
      assert.equal(review.status, 201, review.text);
      assert.equal(review.json.status.userInfo.username, "system:serviceaccount:harness-test:no-role");

      // grant read on DGDs -> 200
      await kube.request("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
        metadata: { name: "dgd-reader" },
        rules: [{ apiGroups: ["nvidia.com"], resources: ["dynamographdeployments"], verbs: ["get", "list"] }],
      });
      const rb = await kube.request(
        "POST",
        `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`,
        {
          metadata: { name: "dgd-reader" },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "dgd-reader" },
          subjects: [{ kind: "ServiceAccount", name: "no-role", namespace: ns }],
        },
      );
      assert.equal(rb.status, 201, rb.text);
      let ok = 0;
      for (let i = 0; i < 40 && ok !== 200; i++) { // RBAC cache propagation is asynchronous
        ok = (await kube.requestAs(token, "GET", dgdPath("v1alpha1"))).status;
        if (ok !== 200) await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(ok, 200);

      const tmp = await Deno.makeTempDir({ prefix: "kube-cluster-test-" });
      try {
        const sa = await kube.writeServiceAccountDir(`${tmp}/serviceaccount`, ns, token);
        assert.equal(await Deno.readTextFile(`${sa}/namespace`), ns);
        assert.equal(await Deno.readTextFile(`${sa}/token`), token);
        assert.match(await Deno.readTextFile(`${sa}/ca.crt`), /BEGIN CERTIFICATE/);
        const kc = await Deno.readTextFile(await kube.kubeconfig(`${tmp}/kubeconfig`, token, ns));
        assert.match(kc, new RegExp(`server: ${kube.url}`));
        assert.equal(kube.inClusterEnv().KUBERNETES_SERVICE_PORT, String(kube.port));
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    });

    assert.match(kube.apiserverLogs(), /Serving securely|secure serving|Serving/i);
  } catch (e) {
    console.error(
      "---- kube-apiserver log tail ----\n" + kube.apiserverLogs().split("\n").slice(-40).join("\n"),
    );
    throw e;
  } finally {
    await kube.stop();
  }
  // stop() is idempotent and everything is gone
  await kube.stop();
});
