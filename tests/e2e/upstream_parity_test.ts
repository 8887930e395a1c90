/**
 * Side by side on one test cluster: upstream's Python Global Planner (ai-dynamo 1.6.1,
 * `python -m dynamo.global_planner` with KUBECONFIG) and ours (in-cluster, deploy/rbac.yaml), each
 * under its own Dynamo namespace on one file-discovery directory. The same requests are sent to
 * both by the real 1.6.1 Python runtime, and what the Python caller gets back is compared:
 * - malformed requests (tests/interop/py/call_endpoint.py): the exception text, identical;
 * - a negative desired_replicas through upstream's GlobalPlannerConnector: the same shape
 *   (status error, current_replicas {}, RuntimeError("GlobalPlanner scaling failed: ...")),
 *   our message, and the DGD unchanged by ours.
 */
import assert from "node:assert/strict";
import {
  applyManifest,
  createDgd,
  DGD_PATH,
  readDgd,
  replicasOf,
  v1beta1Dgd,
} from "../support/dgd_fixtures.ts";
import { parseAllDocuments, stringify as yamlStringify } from "yaml";
import { type KubeCluster, REDUCED_DGD_CRD, startKubeCluster } from "../support/kube_cluster.ts";
import { VENV_PYTHON } from "../support/paths.ts";
import { assertVenv, runDriver } from "../support/python.ts";
import { installRbac, SA_NAMESPACE } from "../support/rbac.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { UPSTREAM_RBAC, UPSTREAM_SA } from "../support/upstream_rbac.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const K8S_NS = "parity";
const DGD = "llama";
const CALLER = "parity-planner";
const OURS = "gp-ours";
const UPSTREAM = "gp-upstream";

/**
 * The operator's full status (as bench/_kube_scale.ts writes it): upstream reads per-component
 * replica counts before it lets a request reduce a component.
 */
async function reconcile(cluster: KubeCluster): Promise<void> {
  const path = DGD_PATH("v1beta1", K8S_NS, DGD);
  const dgd = (await cluster.request("GET", path)).json;
  const components: Record<string, unknown> = {};
  for (const c of dgd.spec.components as { name: string; replicas?: number }[]) {
    const n = c.replicas ?? 1;
    components[c.name] = {
      componentKind: "Deployment",
      componentName: `${DGD}-${c.name}`,
      gpusPerEngine: 1,
      gpusPerReplica: 1,
      replicas: n,
      updatedReplicas: n,
      readyReplicas: n,
      availableReplicas: n,
    };
  }
  const r = await cluster.request("PATCH", `${path}/status`, {
    status: {
      state: "successful",
      observedGeneration: dgd.metadata.generation,
      components,
      conditions: [{
        type: "Ready",
        status: "True",
        reason: "all_resources_are_ready",
        message: "ok",
        lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      }],
    },
  });
  assert.ok(r.ok, `status: ${r.status} ${r.text}`);
}

interface PlannerOutcome {
  response: { status: string; message: string; current_replicas: Record<string, number> } | null;
  raised: { exception: string; message: string } | null;
}

/** Starts upstream's Global Planner; resolves once the 1.6.1 runtime discovers its endpoint. */
async function startUpstream(dir: string, kubeconfig: string, discovery: Record<string, string>) {
  const stderr = await Deno.open(`${dir}/upstream.stderr`, { write: true, create: true });
  const child = new Deno.Command(VENV_PYTHON, {
    args: ["-m", "dynamo.global_planner"],
    env: {
      DYN_NAMESPACE: UPSTREAM,
      POD_NAMESPACE: K8S_NS,
      DYN_REQUEST_PLANE: "tcp",
      DYN_TCP_RPC_HOST: "127.0.0.1",
      KUBECONFIG: kubeconfig,
      HOME: dir,
      PYTHONUNBUFFERED: "1",
      PATH: "/usr/bin:/bin",
      ...discovery,
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = await Deno.open(`${dir}/upstream.stdout`, { write: true, create: true });
  const logs = Promise.all([child.stderr.pipeTo(stderr.writable), child.stdout.pipeTo(stdout.writable)]);
  const stop = async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await logs.catch(() => {});
  };
  // wait_for_instances() of the real runtime is the readiness condition (bounded by --wait-timeout).
  const probe = await runDriver(
    "call_endpoint.py",
    ["--endpoint", `${UPSTREAM}.GlobalPlanner.scale_request`, "--wait-timeout", "60", "--raw-text", "{}"],
    discovery,
    90_000,
  );
  if (!probe.lines.some((l) => "instances" in l)) {
    await stop();
    throw new Error(
      `upstream Global Planner never registered: ${await Deno.readTextFile(`${dir}/upstream.stderr`)}`,
    );
  }
  return { stop };
}

async function callRaw(discovery: Record<string, string>, namespace: string, args: string[]) {
  const result = await runDriver(
    "call_endpoint.py",
    ["--endpoint", `${namespace}.GlobalPlanner.scale_request`, "--timeout", "20", ...args],
    discovery,
  );
  assert.equal(result.code, 0, `call_endpoint.py failed: ${result.stderr.slice(-2000)}`);
  const failure = result.lines.find((l) => "exception" in l);
  assert.ok(failure, `expected an exception from ${namespace}: ${result.stdout}`);
  return { exception: failure.exception, message: failure.message };
}

async function plan(
  discovery: Record<string, string>,
  namespace: string,
  decode: number,
): Promise<PlannerOutcome> {
  const argv = ["--via", "connector", "--gp-namespace", namespace, "--caller-namespace", CALLER];
  argv.push(
    "--dgd",
    DGD,
    "--k8s-namespace",
    K8S_NS,
    "--timeout",
    "30",
    "--prefill",
    "1",
    "--decode",
    String(decode),
  );
  const result = await runDriver("planner_client.py", argv, discovery, 45_000);
  assert.equal(result.code, 0, `planner_client.py failed: ${result.stdout}\n${result.stderr.slice(-2000)}`);
  return result.lines[0] as unknown as PlannerOutcome;
}

Deno.test({
  name: "upstream's Python Global Planner and ours answer the same requests alike (real 1.6.1 callers)",
  async fn(t) {
    await assertVenv();
    let cluster: KubeCluster | undefined;
    let ours: ServiceProcess | undefined;
    let upstream: { stop(): Promise<void> } | undefined;
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-parity-" });
    try {
      // The reduced DGD CRD stores v1alpha1, whose status schema would prune the v1beta1
      // `status.components` upstream reads: the same CRD with v1beta1 as storage version.
      const crd = parseAllDocuments(await Deno.readTextFile(REDUCED_DGD_CRD))
        .map((d) => d.toJS({ maxAliasCount: -1 }))
        .find((o) => o?.kind === "CustomResourceDefinition");
      for (const v of crd.spec.versions) v.storage = v.name === "v1beta1";
      await Deno.writeTextFile(`${dir}/dgd-crd.yaml`, yamlStringify(crd, { aliasDuplicateObjects: false }));
      cluster = await startKubeCluster({ dgdCrd: "none", extraCrdFiles: [`${dir}/dgd-crd.yaml`] });
      await cluster.createNamespace(K8S_NS);
      const token = await installRbac(cluster);
      await applyManifest(cluster, UPSTREAM_RBAC);
      const upstreamToken = await cluster.createServiceAccountToken(SA_NAMESPACE, UPSTREAM_SA);
      await createDgd(
        cluster,
        v1beta1Dgd(DGD, K8S_NS, {
          prefill: { type: "prefill", replicas: 1 },
          decode: { type: "decode", replicas: 2 },
        }),
      );
      await reconcile(cluster);
      const discovery = { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: `${dir}/kv` };
      await Deno.mkdir(discovery.DYN_FILE_KV);
      const sa = await cluster.writeServiceAccountDir(`${dir}/sa`, SA_NAMESPACE, token);
      ours = await startService({
        args: ["--service-account-dir", sa],
        env: { DYN_NAMESPACE: OURS, POD_NAMESPACE: K8S_NS, ...cluster.inClusterEnv(), ...discovery },
      });
      upstream = await startUpstream(
        dir,
        await cluster.kubeconfig(`${dir}/kubeconfig`, upstreamToken, K8S_NS),
        {
          ...discovery,
        },
      );

      await t.step("malformed requests: the Python caller raises the same text for both", async () => {
        const base = { caller_namespace: CALLER, graph_deployment_name: DGD, k8s_namespace: K8S_NS };
        const cases: string[][] = [
          ["--raw-text", "not json at all"],
          ["--raw-text", '{"caller_namespace": "a", "target_replicas": [}'],
          ["--as-string", "--payload", JSON.stringify({ caller_namespace: "x".repeat(80) })],
          [
            "--payload",
            JSON.stringify({
              ...base,
              target_replicas: [{ sub_component_type: "middle", desired_replicas: "two" }],
            }),
          ],
          ["--payload", JSON.stringify({ ...base, target_replicas: { prefill: 1 }, blocking: "maybe" })],
          ["--as-string", "--payload", JSON.stringify([1, 2, 3])],
          ["--payload", "[1, 2, 3]"],
          [
            "--payload",
            JSON.stringify({ ...base, target_replicas: [5], timestamp: "soon", predicted_load: [1] }),
          ],
        ];
        for (const args of cases) {
          const theirs = await callRaw(discovery, UPSTREAM, args);
          const mine = await callRaw(discovery, OURS, args);
          assert.deepEqual(mine, theirs, `for ${args.join(" ")}`);
          assert.match(String(theirs.message), /^InvalidRequest: ValueError: Invalid request: /);
        }
      });

      await t.step("negative desired_replicas: upstream's shape, our message, nothing written", async () => {
        const before = await readDgd(cluster!, "v1beta1", K8S_NS, DGD);
        const theirs = await plan(discovery, UPSTREAM, -1);
        const afterUpstream = await readDgd(cluster!, "v1beta1", K8S_NS, DGD);
        const mine = await plan(discovery, OURS, -1);
        const message =
          "Invalid scale request: desired_replicas must be >= 0, got -1 for decode; nothing was changed";
        assert.deepEqual(mine.response, { status: "error", message, current_replicas: {} });
        assert.deepEqual(mine.raised, {
          exception: "RuntimeError",
          message: `GlobalPlanner scaling failed: ${message}`,
        });
        // The shape is upstream's.
        assert.equal(theirs.response?.status, "error");
        assert.deepEqual(theirs.response?.current_replicas, {});
        assert.equal(theirs.raised?.exception, "RuntimeError");
        // Upstream PATCHes the -1 and relays the API server's 422 as the raw client exception.
        assert.match(String(theirs.response?.message), /^\(422\)\nReason: Unprocessable Entity\n/);
        assert.equal(theirs.raised?.message, `GlobalPlanner scaling failed: ${theirs.response?.message}`);
        assert.deepEqual(replicasOf(afterUpstream), { prefill: 1, decode: 2 });
        const after = await readDgd(cluster!, "v1beta1", K8S_NS, DGD);
        assert.equal(after.metadata.generation, afterUpstream.metadata.generation, "ours wrote nothing");
        assert.deepEqual(replicasOf(before), { prefill: 1, decode: 2 });
      });
    } finally {
      await ours?.stop();
      await upstream?.stop();
      await cluster?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
