/**
 * The kubernetes discovery backend on a real kube-apiserver with upstream's DynamoWorkerMetadata
 * CRD: the CR our service writes equals, apart from names, ids and addresses, the one a real
 * 1.6.1 `serve_endpoint` writes; ids equal those a real 1.6.1 process derives; a deleted or
 * altered CR is re-applied; shutdown withdraws the endpoints; an API server that is down at
 * start is retried until it answers, or until the start timeout.
 */
import assert from "node:assert/strict";
import { KubeClient } from "../../src/kube/client.ts";
import { loadCredentials } from "../../src/kube/credentials.ts";
import { KubeWorkerMetadataApi } from "../../src/kube/worker_metadata.ts";
import { createLogger } from "../../src/ops/log.ts";
import type { EndpointRecord } from "../../src/runtime/discovery/discovery.ts";
import { kubeInstanceId } from "../../src/runtime/discovery/instance_id.ts";
import { KubernetesDiscovery } from "../../src/runtime/discovery/kubernetes.ts";
import { workerMetadataObject } from "../../src/runtime/discovery/worker_metadata.ts";
import type { KubeIdentity } from "../../src/config/env.ts";
import { DiscoveryError } from "../../src/errors.ts";
import { type KubeCluster, startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { DWM_PATH, getDwm, normalDwm } from "../support/kube_discovery.ts";
import { PY_DRIVERS, VENV_PYTHON } from "../support/paths.ts";
import { freePort } from "../support/ports.ts";
import { assertVenv } from "../support/python.ts";
import { startService } from "../support/service.ts";
import { startCountingProxy } from "../support/tcp_proxy.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "gp-disc";

/** A real 1.6.1 server in kubernetes mode, serving GlobalPlanner.scale_request and .health. */
async function startPythonServer(kubeconfig: string, env: Record<string, string>) {
  await assertVenv();
  const child = new Deno.Command(VENV_PYTHON, {
    args: [
      `${PY_DRIVERS}/echo_server.py`,
      "--endpoint",
      "gp-dyn.GlobalPlanner.scale_request",
      "--extra-endpoint",
      "gp-dyn.GlobalPlanner.health",
    ],
    env: {
      DYN_DISCOVERY_BACKEND: "kubernetes",
      DYN_TCP_RPC_HOST: "127.0.0.1",
      KUBECONFIG: kubeconfig,
      POD_NAMESPACE: NS,
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) break;
    text += value;
  }
  const ready = JSON.parse(text.split("\n")[0]) as { instance_id: number };
  return {
    instanceId: BigInt(ready.instance_id),
    async stop() {
      child.kill("SIGTERM");
      while (!(await lines.read()).done) { /* drain */ }
      return (await child.status).code;
    },
  };
}

/** Waits until the 1.6.1 server's two endpoints are both in its CR (it applies once per endpoint). */
async function waitForEndpoints(cluster: KubeCluster, name: string, count: number) {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const cr = await getDwm(cluster, NS, name);
    if (Object.keys(cr?.spec?.data?.endpoints ?? {}).length === count) return cr;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `CR ${name} never had ${count} endpoints: ${JSON.stringify(await getDwm(cluster, NS, name))}`,
  );
}

function identity(podName: string, podUid: string): KubeIdentity {
  return { podName, podUid, podNamespace: NS, mode: "pod", crName: podName, controller: true };
}

function records(id: bigint): EndpointRecord[] {
  return ["scale_request", "health"].map((endpoint) => ({
    namespace: "gp-dyn",
    component: "GlobalPlanner",
    endpoint,
    instanceId: id,
    transport: { tcp: `127.0.0.1:4000/${id.toString(16)}/gp-dyn/GlobalPlanner/${endpoint}` },
  }));
}

function captureLogger() {
  const logs: Record<string, unknown>[] = [];
  const waiters: { match: (l: Record<string, unknown>) => boolean; resolve: () => void }[] = [];
  const logger = createLogger({
    level: "debug",
    sink: (line) => {
      const parsed = JSON.parse(line);
      logs.push(parsed);
      for (const w of [...waiters]) if (w.match(parsed)) waiters.splice(waiters.indexOf(w), 1), w.resolve();
    },
  });
  /** Resolves at the next line matching (or at once if `since` lines already contain one). */
  const next = (message: string, since = logs.length, timeoutMs = 15_000) => {
    if (logs.slice(since).some((l) => l.message === message)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "${message}" log within ${timeoutMs} ms: ${JSON.stringify(logs)}`)),
        timeoutMs,
      );
      waiters.push({ match: (l) => l.message === message, resolve: () => (clearTimeout(timer), resolve()) });
    });
  };
  return { logger, logs, next };
}

Deno.test({
  name: "kubernetes discovery: same CR as 1.6.1, same ids, self-healing, shutdown, API down at start",
  async fn(t) {
    await assertVenv();
    const cluster = await startKubeCluster({
      dgdCrd: "none",
      dgdsaCrd: false,
      extraCrdFiles: [upstreamDwmCrd()],
    });
    const clients: KubeClient[] = [];
    try {
      await cluster.createNamespace(NS);
      const kubeconfig = await cluster.kubeconfig(`${cluster.dir}/admin.kubeconfig`, cluster.adminToken, NS);
      const openClient = async (path = kubeconfig) => {
        const credentials = await loadCredentials({
          serviceAccountDir: "/nonexistent",
          getEnv: (n) => (n === "KUBECONFIG" ? path : undefined),
        });
        const client = new KubeClient(credentials, createLogger({ level: "error" }));
        clients.push(client);
        return client;
      };

      await t.step("the CR our service writes equals the one a real 1.6.1 server writes", async () => {
        const py = await startPythonServer(kubeconfig, { POD_NAME: "py-planner-0", POD_UID: "uid-python-0" });
        const ours = await startService({
          args: ["--no-operation"],
          env: {
            DYN_NAMESPACE: "gp-dyn",
            DYN_DISCOVERY_BACKEND: "kubernetes",
            KUBECONFIG: kubeconfig,
            POD_NAME: "gp-planner-0",
            POD_UID: "uid-ours-0",
            POD_NAMESPACE: NS,
          },
        });
        try {
          const theirs = await waitForEndpoints(cluster, "py-planner-0", 2);
          // Published before "ready" is logged: no wait needed for ours.
          const mine = await getDwm(cluster, NS, "gp-planner-0");
          assert.equal(py.instanceId, kubeInstanceId("py-planner-0"));
          assert.equal(ours.ready.instance_id, kubeInstanceId("gp-planner-0").toString(16));
          const a = normalDwm(theirs, {
            name: "py-planner-0",
            uid: "uid-python-0",
            instanceId: py.instanceId,
          });
          const b = normalDwm(mine, {
            name: "gp-planner-0",
            uid: "uid-ours-0",
            instanceId: kubeInstanceId("gp-planner-0"),
          }) as { spec: { data: { endpoints: Record<string, Record<string, unknown>> } } };
          // The one deliberate difference: our values of the two advertised fields (README).
          for (const record of Object.values(b.spec.data.endpoints)) {
            assert.equal(record.device_type, "cpu");
            assert.equal(record.request_plane_codec, "json");
            record.device_type = "cuda";
            record.request_plane_codec = "msgpack";
          }
          assert.deepEqual(b, a);
        } finally {
          assert.equal(await ours.stop(), 0);
          assert.equal(await py.stop(), 0);
        }
        // Both withdraw their endpoints on SIGTERM and leave the (pod-owned) CR.
        assert.equal((await getDwm(cluster, NS, "py-planner-0")).spec.data.endpoints, null);
        assert.equal((await getDwm(cluster, NS, "gp-planner-0")).spec.data.endpoints, null);
      });

      await t.step("instance ids equal those a real 1.6.1 process derives for names we chose", async () => {
        const cases: { env: Record<string, string>; cr: string }[] = [
          { env: { POD_NAME: "a", POD_UID: "u1" }, cr: "a" },
          { env: { POD_NAME: "z9.example", POD_UID: "u2" }, cr: "z9.example" },
          {
            env: {
              POD_NAME: "p1",
              POD_UID: "u3",
              DYN_KUBE_DISCOVERY_MODE: "container",
              CONTAINER_NAME: "sidecar",
            },
            cr: "p1-sidecar",
          },
        ];
        for (const c of cases) {
          const py = await startPythonServer(kubeconfig, c.env);
          const stored = await waitForEndpoints(cluster, c.cr, 2);
          assert.equal(await py.stop(), 0);
          assert.equal(py.instanceId, kubeInstanceId(c.cr), c.cr);
          assert.equal(stored.metadata.ownerReferences[0].controller, c.cr === c.env.POD_NAME);
        }
      });

      await t.step("a deleted or altered CR is re-applied; close() withdraws the endpoints", async () => {
        const { logger, next } = captureLogger();
        const id = kubeInstanceId("heal-0");
        const discovery = new KubernetesDiscovery({
          identity: identity("heal-0", "uid-heal"),
          api: new KubeWorkerMetadataApi(await openClient()),
          logger,
        });
        await discovery.register(records(id));
        assert.equal(discovery.healthy, true);
        const published = await getDwm(cluster, NS, "heal-0");
        assert.deepEqual(published.spec, discovery.desired().spec);

        await next("DynamoWorkerMetadata published", 0);
        // Each wait below is armed before the edit and looks only at later lines.
        let healed = next("DynamoWorkerMetadata re-applied");
        assert.equal((await cluster.request("DELETE", DWM_PATH(NS, "heal-0"))).status, 200);
        await healed;
        assert.equal(discovery.healthy, true);
        assert.deepEqual((await getDwm(cluster, NS, "heal-0")).spec, discovery.desired().spec);

        const key = `gp-dyn/GlobalPlanner/health/${id.toString(16)}`;
        healed = next("DynamoWorkerMetadata re-applied");
        const patched = await cluster.request(
          "PATCH",
          DWM_PATH(NS, "heal-0"),
          { spec: { data: { endpoints: { [key]: { transport: { tcp: "10.9.9.9:1/x" } } } } } },
          "application/merge-patch+json",
        );
        assert.ok(patched.ok, patched.text);
        await healed;
        assert.deepEqual((await getDwm(cluster, NS, "heal-0")).spec, discovery.desired().spec);

        healed = next("DynamoWorkerMetadata re-applied");
        const owners = await cluster.request(
          "PATCH",
          DWM_PATH(NS, "heal-0"),
          { metadata: { ownerReferences: null } },
          "application/merge-patch+json",
        );
        assert.ok(owners.ok, owners.text);
        await healed;
        assert.equal((await getDwm(cluster, NS, "heal-0")).metadata.ownerReferences[0].uid, "uid-heal");

        await discovery.close();
        assert.equal(discovery.healthy, false);
        assert.equal((await getDwm(cluster, NS, "heal-0")).spec.data.endpoints, null);
      });

      await t.step(
        "a standby empties what a crashed process of its pod left, and creates no CR",
        async () => {
          const { logger, next } = captureLogger();
          const api = new KubeWorkerMetadataApi(await openClient());
          // What the crashed process left: its endpoints, published by the same pod's CR name.
          const left = await api.apply(workerMetadataObject(identity("crash-0", "uid-crash"), records(7n)));
          assert.ok(Object.keys(left.spec?.data?.endpoints ?? {}).length > 0);
          const withdrawn = next("endpoints left by a previous process of this pod withdrawn", 0);
          await new KubernetesDiscovery({ identity: identity("crash-0", "uid-crash"), api, logger })
            .withdrawPredecessor();
          await withdrawn;
          assert.deepEqual(
            (await getDwm(cluster, NS, "crash-0")).spec.data.endpoints,
            {},
            "no endpoint left",
          );
          assert.equal(
            (await getDwm(cluster, NS, "crash-0")).metadata.ownerReferences[0].uid,
            "uid-crash",
            "the CR stays, owned by its pod",
          );

          await new KubernetesDiscovery({ identity: identity("fresh-0", "uid-fresh"), api, logger })
            .withdrawPredecessor();
          const absent = await cluster.request("GET", DWM_PATH(NS, "fresh-0"));
          assert.equal(absent.status, 404, "a pod without a CR still has none");
        },
      );

      await t.step("API server down at start: retried with backoff until it answers", async () => {
        const port = freePort();
        const text = await Deno.readTextFile(kubeconfig);
        const viaProxy = `${cluster.dir}/proxy.kubeconfig`;
        await Deno.writeTextFile(viaProxy, text.replace(cluster.url, `https://127.0.0.1:${port}`));
        const { logger, logs, next } = captureLogger();
        const discovery = new KubernetesDiscovery({
          identity: identity("late-0", "uid-late"),
          api: new KubeWorkerMetadataApi(await openClient(viaProxy)),
          logger,
          startTimeoutMs: 60_000,
        });
        const registering = discovery.register(records(kubeInstanceId("late-0")));
        await next("cannot publish DynamoWorkerMetadata; retrying", 0);
        assert.equal(discovery.healthy, false);
        assert.equal(await getDwm(cluster, NS, "late-0"), undefined);
        const proxy = startCountingProxy(cluster.port, port);
        try {
          await registering;
          assert.equal(discovery.healthy, true);
          const retry = logs.find((l) => l.message === "cannot publish DynamoWorkerMetadata; retrying")!;
          assert.equal(retry.cr_name, "late-0");
          assert.match(String(retry.error), /cannot reach the Kubernetes API/);
          assert.deepEqual((await getDwm(cluster, NS, "late-0")).spec, discovery.desired().spec);
          await discovery.close();
        } finally {
          await proxy.close();
        }
      });

      await t.step(
        "API server down for longer than the start timeout: register fails, nothing written",
        async () => {
          const text = await Deno.readTextFile(kubeconfig);
          const nowhere = `${cluster.dir}/nowhere.kubeconfig`;
          await Deno.writeTextFile(nowhere, text.replace(cluster.url, `https://127.0.0.1:${freePort()}`));
          const { logger } = captureLogger();
          const discovery = new KubernetesDiscovery({
            identity: identity("never-0", "uid-never"),
            api: new KubeWorkerMetadataApi(await openClient(nowhere)),
            logger,
            startTimeoutMs: 300,
            backoffFirstMs: 50,
          });
          await assert.rejects(
            discovery.register(records(kubeInstanceId("never-0"))),
            (e: Error) =>
              e instanceof DiscoveryError &&
              /cannot publish DynamoWorkerMetadata 'never-0' in namespace 'gp-disc' within 300 ms/.test(
                e.message,
              ),
          );
          assert.equal(discovery.healthy, false);
          await discovery.close();
          assert.equal(await getDwm(cluster, NS, "never-0"), undefined);
        },
      );
    } finally {
      for (const c of clients) c.close();
      await cluster.stop();
    }
  },
});
