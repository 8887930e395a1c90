/**
 * Our opt-in policies as deployed: the service started as users start it (in-cluster, deploy/
 * rbac.yaml's ServiceAccount, file discovery) with `--caller-binding operator
 * --managed-k8s-namespaces llm --reject-stale --record-events`, then with `--dry-run`, and
 * upstream's own planner connector (ai-dynamo 1.6.1 `GlobalPlannerConnector`) as the caller.
 */
import assert from "node:assert/strict";
import { createDgd, DGD_PATH, readDgd, replicasOf, v1beta1Dgd } from "../support/dgd_fixtures.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { assertVenv, callConnector } from "../support/python.ts";
import { installRbac } from "../support/rbac.ts";
import { type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const GP_NS = "gp-policy";
const K8S_NS = "llm";
const OTHER_NS = "dev";
const SA_NS = "dynamo-system";
const P = "globalplanner.dynamo.example/";

const plan = (
  env: Record<string, string>,
  call: { caller: string; dgd: string; k8sNamespace?: string; prefill?: number },
) => callConnector(env, { gpNamespace: GP_NS, ...call, k8sNamespace: call.k8sNamespace ?? K8S_NS });

Deno.test({
  name: "upstream GlobalPlannerConnector under caller binding, stale guard, Events and dry run",
  async fn(t) {
    await assertVenv();
    let cluster: KubeCluster | undefined;
    let service: ServiceProcess | undefined;
    const temp: string[] = [];
    try {
      cluster = await startKubeCluster();
      await cluster.createNamespace(K8S_NS);
      await cluster.createNamespace(OTHER_NS);
      const token = await installRbac(cluster);
      const saDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-policy-sa-" });
      const kvDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-policy-kv-" });
      temp.push(saDir, kvDir);
      await cluster.writeServiceAccountDir(saDir, SA_NS, token);
      const components = {
        prefill: { type: "prefill", replicas: 1 },
        decode: { type: "decode", replicas: 1 },
      };
      await createDgd(cluster, v1beta1Dgd("llama", K8S_NS, components));
      await createDgd(cluster, v1beta1Dgd("llama", OTHER_NS, components));

      const discovery = { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: kvDir };
      const env = { DYN_NAMESPACE: GP_NS, ...cluster.inClusterEnv(), ...discovery };
      const common = ["--service-account-dir", saDir, "--caller-binding", "operator"];
      service = await startService({
        args: [...common, "--managed-k8s-namespaces", K8S_NS, "--reject-stale", "--record-events"],
        env,
      });
      assert.equal(service.ready.caller_binding, "operator");
      assert.deepEqual(service.ready.managed_k8s_namespaces, [K8S_NS]);

      await t.step("the operator's caller namespace ({k8s_namespace}-{dgd}) scales its DGD", async () => {
        const outcome = await plan(discovery, { caller: `${K8S_NS}-llama`, dgd: "llama", prefill: 3 });
        assert.equal(outcome.raised, null, JSON.stringify(outcome));
        assert.deepEqual(outcome.response, {
          status: "success",
          message: "Scaled llama successfully",
          current_replicas: { prefill: 3, decode: 1 },
        });
        const dgd = await readDgd(cluster!, "v1beta1", K8S_NS, "llama");
        assert.equal(replicasOf(dgd).prefill, 3);
        // The connector's own timestamp is what the stale guard keeps.
        const last = JSON.parse(dgd.metadata.annotations[`${P}last-request`]);
        assert.equal(last.timestamp, outcome.request?.timestamp);
        assert.equal(last.caller, `${K8S_NS}-llama`);
      });

      await t.step(
        "another caller → error naming caller and target; the connector raises; nothing written",
        async () => {
          const before = await readDgd(cluster!, "v1beta1", K8S_NS, "llama");
          const outcome = await plan(discovery, { caller: `${K8S_NS}-qwen`, dgd: "llama", prefill: 7 });
          const message =
            `Caller '${K8S_NS}-qwen' may not scale DynamoGraphDeployment '${K8S_NS}/llama': caller ` +
            `binding "operator" accepts only '${K8S_NS}-llama' for it; nothing was changed`;
          assert.deepEqual(outcome.response, { status: "error", message, current_replicas: {} });
          assert.deepEqual(outcome.raised, {
            exception: "RuntimeError",
            message: `GlobalPlanner scaling failed: ${message}`,
          });
          const after = await readDgd(cluster!, "v1beta1", K8S_NS, "llama");
          assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
        },
      );

      await t.step("a DGD outside --managed-k8s-namespaces → error, even for its own caller", async () => {
        const before = await readDgd(cluster!, "v1beta1", OTHER_NS, "llama");
        const outcome = await plan(discovery, {
          caller: `${OTHER_NS}-llama`,
          dgd: "llama",
          k8sNamespace: OTHER_NS,
          prefill: 4,
        });
        assert.equal(outcome.response?.status, "error");
        assert.equal(
          outcome.response?.message,
          `DynamoGraphDeployment '${OTHER_NS}/llama' requested by caller '${OTHER_NS}-llama' is in a Kubernetes ` +
            `namespace this Global Planner does not manage (managed: ${K8S_NS}); nothing was changed`,
        );
        assert.equal(outcome.raised?.exception, "RuntimeError");
        const after = await readDgd(cluster!, "v1beta1", OTHER_NS, "llama");
        assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
      });

      await t.step("paused DGD → rejected; the connector carries on (no exception)", async () => {
        const r = await cluster!.request("PATCH", DGD_PATH("v1beta1", K8S_NS, "llama"), {
          metadata: { annotations: { [`${P}paused`]: "true" } },
        });
        assert.ok(r.ok, r.text);
        const outcome = await plan(discovery, { caller: `${K8S_NS}-llama`, dgd: "llama", prefill: 5 });
        assert.equal(outcome.raised, null);
        assert.deepEqual(outcome.response, {
          status: "rejected",
          message:
            `Scaling of DynamoGraphDeployment '${K8S_NS}/llama' is paused (annotation ${P}paused: "true"); ` +
            "nothing was changed",
          current_replicas: { prefill: 3, decode: 1 },
        });
      });

      await t.step("the service's Events on the DGD, read back from the API server", async () => {
        // Events are written off the request path: wait for the recorder's own log line.
        await service!.waitForLog((l) => l.message === "Kubernetes Event recorded" && l.reason === "Paused");
        const list = await cluster!.request("GET", `/apis/events.k8s.io/v1/namespaces/${K8S_NS}/events`);
        assert.ok(list.ok, list.text);
        // deno-lint-ignore no-explicit-any
        const reasons = list.json.items.filter((e: any) => e.regarding.name === "llama").map((e: any) =>
          e.reason
        );
        assert.deepEqual(reasons.sort(), ["Paused", "Scaled"]);
        assert.equal(
          service!.logs.filter((l) => String(l.message).startsWith("cannot record")).length,
          0,
          "deploy/rbac.yaml lets the service write Events",
        );
      });

      await t.step("SIGTERM → clean exit", async () => {
        assert.equal(await service!.stop("SIGTERM"), 0);
        service = undefined;
      });

      await t.step(
        "--dry-run: the connector gets what would have happened; resourceVersion unchanged",
        async () => {
          const r = await cluster!.request("PATCH", DGD_PATH("v1beta1", K8S_NS, "llama"), {
            metadata: { annotations: { [`${P}paused`]: null } },
          });
          assert.ok(r.ok, r.text);
          service = await startService({ args: [...common, "--dry-run"], env });
          assert.equal(service.ready.dry_run, true);
          const before = await readDgd(cluster!, "v1beta1", K8S_NS, "llama");
          const outcome = await plan(discovery, { caller: `${K8S_NS}-llama`, dgd: "llama", prefill: 6 });
          assert.equal(outcome.raised, null, JSON.stringify(outcome));
          assert.deepEqual(outcome.response, {
            status: "success",
            message: "[dry-run] Would scale llama: prefill 3 → 6, decode 1 → 1 (nothing persisted)",
            current_replicas: { prefill: 6, decode: 1 },
          });
          const after = await readDgd(cluster!, "v1beta1", K8S_NS, "llama");
          assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
          assert.equal(replicasOf(after).prefill, 3);
          const refused = await plan(discovery, { caller: "intruder", dgd: "llama", prefill: 6 });
          assert.match(refused.response!.message, /^\[dry-run\] Caller 'intruder' may not scale/);
          assert.equal(await service.stop("SIGTERM"), 0);
          service = undefined;
        },
      );
    } finally {
      await service?.stop("SIGKILL");
      await cluster?.stop();
      for (const dir of temp) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
