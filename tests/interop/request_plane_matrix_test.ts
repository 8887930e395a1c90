/**
 * Every discovery backend × request plane we support, each with a real ai-dynamo-runtime 1.6.1
 * caller configured the same way (DYN_DISCOVERY_BACKEND, DYN_REQUEST_PLANE, NATS_SERVER): it
 * finds our instance, calls `health` and `scale_request`; with kubernetes discovery upstream's
 * own GlobalPlannerConnector scales a real DGD through us. On NATS we also check that we
 * subscribe (queue group `q`) to exactly the subject we advertise.
 */
import assert from "node:assert/strict";
import {
  type DiscoveryBackend,
  etcdBackend,
  fileBackend,
  REQUEST_PLANES,
  type RequestPlaneSetup,
} from "../support/backends.ts";
import { createDgd, readDgd, replicasOf, v1beta1Dgd } from "../support/dgd_fixtures.ts";
import { startFakeOperator, waitSettled } from "../support/fake_operator.ts";
import { startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { putSlice } from "../support/kube_discovery.ts";
import { installRbac, SA_NAMESPACE, serviceAccountDir } from "../support/rbac.ts";
import { assertVenv, runDriver } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const GP_NS = "gp-matrix";
const CALLER = "llama-planner";
const UNAUTHORIZED = {
  caller_namespace: "intruder",
  graph_deployment_name: "llama",
  k8s_namespace: "prod",
  target_replicas: [],
};
const AUTHORIZED = {
  caller_namespace: CALLER,
  graph_deployment_name: "llama",
  k8s_namespace: "prod",
  target_replicas: [{ sub_component_type: "prefill", desired_replicas: 2 }],
};

async function call(env: Record<string, string>, endpoint: string, payload: unknown, extra: string[] = []) {
  const result = await runDriver(
    "call_endpoint.py",
    ["--endpoint", `${GP_NS}.GlobalPlanner.${endpoint}`, "--payload", JSON.stringify(payload), ...extra],
    env,
    60_000,
  );
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr.slice(-2000)}`);
  return result;
}

/** The 1.6.1 caller's single answer item, checked to come from our instance. */
function onlyItem(result: Awaited<ReturnType<typeof call>>, service: ServiceProcess): unknown {
  const exact = BigInt(`0x${service.ready.instance_id}`).toString();
  assert.ok(result.stdout.includes(`{"instances": [${exact}]}`), result.stdout);
  const items = result.lines.filter((l) => "item" in l);
  assert.equal(items.length, 1, result.stdout);
  return items[0].item;
}

/** Our subscriptions are exactly the advertised subjects, in the runtime's queue group. */
async function assertSubscribedAsAdvertised(plane: RequestPlaneSetup, service: ServiceProcess) {
  if (!plane.nats) return;
  const hex = service.ready.instance_id as string;
  const ours = (await plane.nats.subscriptions()).filter((s) => s.subject.startsWith(`${GP_NS}_`));
  assert.deepEqual(ours.sort((a, b) => a.subject.localeCompare(b.subject)), [
    { subject: `${GP_NS}_GlobalPlanner.health-${hex}`, qgroup: "q" },
    { subject: `${GP_NS}_GlobalPlanner.scale_request-${hex}`, qgroup: "q" },
  ]);
}

for (const makeBackend of [etcdBackend, fileBackend]) {
  for (const makePlane of REQUEST_PLANES) {
    const cell = `${makeBackend.name.replace(/Backend$/, "")} discovery × ${
      makePlane.name.replace(/Plane$/, "")
    }`;
    Deno.test({
      name: `matrix: a real 1.6.1 caller calls health and scale_request (${cell})`,
      // etcd, nats-server, the service and the Python drivers are subprocesses whose pipes Deno
      // counts as ours.
      async fn() {
        await assertVenv();
        const backend: DiscoveryBackend = await makeBackend();
        const plane = await makePlane();
        let service: ServiceProcess | undefined;
        try {
          const env = { ...backend.env, ...plane.env };
          service = await startService({
            args: ["--no-operation", "--managed-namespaces", CALLER],
            env: { DYN_NAMESPACE: GP_NS, ...env },
          });
          assert.equal(service.ready.request_plane, plane.name);
          await assertSubscribedAsAdvertised(plane, service);
          assert.deepEqual(onlyItem(await call(env, "health", {}), service), {
            status: "healthy",
            component: "GlobalPlanner",
            namespace: GP_NS,
            managed_namespaces: [CALLER],
          });
          assert.deepEqual(onlyItem(await call(env, "scale_request", UNAUTHORIZED), service), {
            status: "error",
            message: "Namespace intruder not authorized",
            current_replicas: {},
          });
          assert.deepEqual(
            onlyItem(await call(env, "scale_request", AUTHORIZED, ["--as-string"]), service),
            {
              status: "success",
              message: "[no-operation] Scale request received and logged (not executed)",
              current_replicas: {},
            },
          );
        } finally {
          await service?.stop("SIGKILL");
          await plane.cleanup();
          await backend.cleanup();
        }
      },
    });
  }
}

Deno.test({
  name:
    "matrix: kubernetes discovery × tcp and nats — health, scale_request, GlobalPlannerConnector scales a DGD",
  // kube-apiserver, etcd, nats-server and the Python drivers are subprocesses (see above).
  async fn(t) {
    await assertVenv();
    const ns = SA_NAMESPACE;
    const cluster = await startKubeCluster({ extraCrdFiles: [upstreamDwmCrd()] });
    const operator = startFakeOperator(cluster, ns, { readyDelayMs: 200 });
    try {
      const saDir = await serviceAccountDir(cluster, await installRbac(cluster));
      const kubeconfig = await cluster.kubeconfig(`${cluster.dir}/caller.kubeconfig`, cluster.adminToken, ns);
      const callerEnv = {
        DYN_DISCOVERY_BACKEND: "kubernetes",
        KUBECONFIG: kubeconfig,
        POD_NAME: "llama-planner-0",
        POD_UID: "uid-llama-planner-0",
        POD_NAMESPACE: ns,
      };
      await createDgd(
        cluster,
        v1beta1Dgd("llama", ns, {
          prefill: { type: "prefill", replicas: 1 },
          decode: { type: "decode", replicas: 1 },
        }),
        { ready: false },
      );
      let prefill = 1;
      for (const makePlane of REQUEST_PLANES) {
        await t.step(makePlane.name.replace(/Plane$/, ""), async () => {
          const plane = await makePlane();
          const pod = `global-planner-${plane.name}`;
          let service: ServiceProcess | undefined;
          try {
            service = await startService({
              args: ["--service-account-dir", saDir, "--managed-namespaces", CALLER],
              env: {
                DYN_NAMESPACE: GP_NS,
                ...cluster.inClusterEnv(),
                ...plane.env,
                DYN_DISCOVERY_BACKEND: "kubernetes",
                POD_NAME: pod,
                POD_UID: `uid-${pod}`,
                POD_NAMESPACE: ns,
              },
            });
            // Only this replica is routable (the previous cell's pod is gone from the slice).
            await putSlice(cluster, ns, "global-planner", [{ pod, uid: `uid-${pod}`, ready: true }]);
            await assertSubscribedAsAdvertised(plane, service);
            const env = { ...callerEnv, ...plane.env };
            assert.deepEqual(onlyItem(await call(env, "health", {}), service), {
              status: "healthy",
              component: "GlobalPlanner",
              namespace: GP_NS,
              managed_namespaces: [CALLER],
            });
            assert.deepEqual(
              onlyItem(await call(env, "scale_request", { ...UNAUTHORIZED, k8s_namespace: ns }), service),
              { status: "error", message: "Namespace intruder not authorized", current_replicas: {} },
            );
            await waitSettled(cluster, ns, "llama", "v1beta1");
            prefill += 1;
            const result = await runDriver(
              "planner_client.py",
              [
                "--gp-namespace",
                GP_NS,
                "--caller-namespace",
                CALLER,
                "--dgd",
                "llama",
                "--k8s-namespace",
                ns,
                "--prefill",
                String(prefill),
                "--decode",
                "2",
                "--blocking",
                "--timeout",
                "40",
              ],
              env,
              60_000,
            );
            assert.equal(result.code, 0, `${result.stdout}\n${result.stderr.slice(-2000)}`);
            const planned = result.lines[0] as { response: unknown; raised: unknown };
            assert.equal(planned.raised, null, result.stdout);
            assert.deepEqual(planned.response, {
              status: "success",
              message: "Scaled llama successfully",
              current_replicas: { prefill, decode: 2 },
            });
            assert.deepEqual(replicasOf(await readDgd(cluster, "v1beta1", ns, "llama")), {
              prefill,
              decode: 2,
            });
          } finally {
            if (service) assert.equal(await service.stop("SIGTERM"), 0);
            await plane.cleanup();
          }
        });
      }
    } finally {
      await operator.stop();
      await cluster.stop();
    }
  },
});
