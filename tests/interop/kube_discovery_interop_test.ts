/**
 * Real callers in kubernetes discovery mode, as in a Dynamo operator deployment: our service runs
 * with `DYN_DISCOVERY_BACKEND=kubernetes`, in-cluster credentials of deploy/rbac.yaml, pod
 * identity from the downward-API variables; real ai-dynamo-runtime 1.6.1 clients (their own
 * KUBECONFIG, POD_NAME/POD_UID, same namespace) find it through its DynamoWorkerMetadata joined
 * with a ready EndpointSlice entry (created here, as the operator's Service would produce it) and
 * call `health`, `scale_request`, and upstream's GlobalPlannerConnector scales a real DGD through
 * it, blocking and not. A not-ready slice entry or withdrawn endpoints stop the routing; two
 * replicas are both discovered and both answer.
 */
import assert from "node:assert/strict";
import { createDgd, readDgd, replicasOf, v1beta1Dgd } from "../support/dgd_fixtures.ts";
import { startFakeOperator, waitSettled } from "../support/fake_operator.ts";
import { type KubeCluster, startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { putSlice, type SliceTarget } from "../support/kube_discovery.ts";
import { installRbac, SA_NAMESPACE, serviceAccountDir } from "../support/rbac.ts";
import { PY_DRIVERS, VENV_PYTHON } from "../support/paths.ts";
import { assertVenv, runDriver } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

/** Planners discover in their own namespace: the DGDs, their planners and the GP share it. */
const NS = SA_NAMESPACE;
const GP_NS = "gp-kube";
const CALLER = "llama-planner";
const SLICE = "global-planner";

interface Replica {
  pod: string;
  uid: string;
  service: ServiceProcess;
}

async function startReplica(cluster: KubeCluster, saDir: string, pod: string): Promise<Replica> {
  const uid = `uid-${pod}`;
  const service = await startService({
    args: [
      "--service-account-dir",
      saDir,
      "--managed-namespaces",
      CALLER,
      "--blocking-timeout-seconds",
      "20",
    ],
    env: {
      DYN_NAMESPACE: GP_NS,
      ...cluster.inClusterEnv(),
      DYN_DISCOVERY_BACKEND: "kubernetes",
      POD_NAME: pod,
      POD_UID: uid,
      POD_NAMESPACE: NS,
    },
  });
  return { pod, uid, service };
}

/** A long-lived 1.6.1 client (watch_instances.py): the instance lists it routes over, as they change. */
function watchInstances(env: Record<string, string>, endpoint: string) {
  const child = new Deno.Command(VENV_PYTHON, {
    args: [`${PY_DRIVERS}/watch_instances.py`, "--endpoint", endpoint],
    env: { DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1", ...env },
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const seen: string[][] = [];
  let buffered = "";
  /** Resolves with the first list (from now on) that equals `ids`, sorted. */
  const until = async (ids: bigint[], timeoutMs = 20_000) => {
    const want = JSON.stringify(ids.map(String).sort());
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    try {
      while (true) {
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          // The ids are beyond 2^53 only for other backends; kubernetes ids fit a number.
          const list = (JSON.parse(line).instances as number[]).map(String).sort();
          seen.push(list);
          if (JSON.stringify(list) === want) return;
        }
        const { value, done } = await reader.read();
        if (done) {
          throw new Error(`watch_instances.py ended before ${want}; lists seen: ${JSON.stringify(seen)}`);
        }
        buffered += value;
      }
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    until,
    async stop() {
      await child.stdin.close();
      await reader.cancel().catch(() => {});
      await child.status;
    },
  };
}

Deno.test({
  name: "real 1.6.1 callers in kubernetes discovery mode find and call our service",
  async fn(t) {
    await assertVenv();
    const cluster = await startKubeCluster({ extraCrdFiles: [upstreamDwmCrd()] });
    const operator = startFakeOperator(cluster, NS, { readyDelayMs: 500 });
    const replicas: Replica[] = [];
    let watcher: ReturnType<typeof watchInstances> | undefined;
    try {
      const token = await installRbac(cluster);
      const saDir = await serviceAccountDir(cluster, token);
      const kubeconfig = await cluster.kubeconfig(`${cluster.dir}/caller.kubeconfig`, cluster.adminToken, NS);
      /** The caller's identity: a 1.6.1 client in kubernetes mode needs one too. */
      const callerEnv = {
        DYN_DISCOVERY_BACKEND: "kubernetes",
        KUBECONFIG: kubeconfig,
        POD_NAME: "llama-planner-0",
        POD_UID: "uid-llama-planner-0",
        POD_NAMESPACE: NS,
      };
      const slice = (targets: SliceTarget[]) => putSlice(cluster, NS, SLICE, targets);
      const call = (endpoint: string, payload: unknown, extra: string[] = []) =>
        runDriver(
          "call_endpoint.py",
          [
            "--endpoint",
            `${GP_NS}.GlobalPlanner.${endpoint}`,
            "--payload",
            JSON.stringify(payload),
            ...extra,
          ],
          callerEnv,
          60_000,
        );
      const plan = async (dgd: string, prefill: number, blocking: boolean) => {
        const argv = [
          "--gp-namespace",
          GP_NS,
          "--caller-namespace",
          CALLER,
          "--dgd",
          dgd,
          "--k8s-namespace",
          NS,
        ];
        argv.push("--prefill", String(prefill), "--decode", "2", "--timeout", "40");
        if (blocking) argv.push("--blocking");
        const result = await runDriver("planner_client.py", argv, callerEnv, 60_000);
        assert.equal(result.code, 0, `${result.stdout}\n${result.stderr.slice(-2000)}`);
        return result.lines[0] as {
          response: { status: string; message: string; current_replicas: Record<string, number> } | null;
          raised: unknown;
        };
      };

      await createDgd(
        cluster,
        v1beta1Dgd("llama", NS, {
          prefill: { type: "prefill", replicas: 1 },
          decode: { type: "decode", replicas: 1 },
        }),
        { ready: false },
      );

      const first = await startReplica(cluster, saDir, "global-planner-0");
      replicas.push(first);
      await slice([{ pod: first.pod, uid: first.uid, ready: true }]);
      const id = String(first.service.ready.instance_id);
      const idOf = (r: Replica) => BigInt(`0x${r.service.ready.instance_id}`);
      watcher = watchInstances(callerEnv, `${GP_NS}.GlobalPlanner.health`);
      await watcher.until([idOf(first)]);

      await t.step("health: discovered through CR + ready slice entry, answered", async () => {
        const result = await call("health", {});
        assert.equal(result.code, 0, result.stderr.slice(-2000));
        assert.match(result.stdout, new RegExp(`"instances": \\[${BigInt(`0x${id}`)}\\]`));
        assert.deepEqual(result.lines[1], {
          item: {
            status: "healthy",
            component: "GlobalPlanner",
            namespace: GP_NS,
            managed_namespaces: [CALLER],
          },
        });
      });

      await t.step("scale_request: an unauthorized caller gets upstream's error", async () => {
        const result = await call("scale_request", {
          caller_namespace: "intruder",
          graph_deployment_name: "llama",
          k8s_namespace: NS,
          target_replicas: [],
        });
        assert.equal(result.code, 0, result.stderr.slice(-2000));
        assert.deepEqual(result.lines[1], {
          item: { status: "error", message: "Namespace intruder not authorized", current_replicas: {} },
        });
      });

      await t.step("GlobalPlannerConnector scales the DGD: blocking, then non-blocking", async () => {
        await waitSettled(cluster, NS, "llama", "v1beta1"); // the stand-in operator reports the first generation
        const blocking = await plan("llama", 3, true);
        assert.equal(blocking.raised, null, JSON.stringify(blocking));
        assert.deepEqual(blocking.response, {
          status: "success",
          message: "Scaled llama successfully",
          current_replicas: { prefill: 3, decode: 2 },
        });
        const settled = await readDgd(cluster, "v1beta1", NS, "llama");
        assert.equal(settled.status.observedGeneration, settled.metadata.generation, "answered after Ready");
        const quick = await plan("llama", 4, false);
        assert.equal(quick.raised, null, JSON.stringify(quick));
        assert.equal(quick.response?.status, "success");
        assert.equal(replicasOf(await readDgd(cluster, "v1beta1", NS, "llama")).prefill, 4);
      });

      await t.step("the slice entry turns not ready → callers stop routing to us, and resume", async () => {
        await slice([{ pod: first.pod, uid: first.uid, ready: false }]);
        await watcher!.until([]); // the long-lived client drops us
        const result = await call("health", {}, ["--wait-timeout", "3"]);
        assert.equal(result.code, 2, result.stdout);
        assert.equal((result.lines[0] as { exception?: string }).exception, "TimeoutError");
        await slice([{ pod: first.pod, uid: first.uid, ready: true }]);
        await watcher!.until([idOf(first)]);
      });

      await t.step("two replicas: both discovered, both answer", async () => {
        const second = await startReplica(cluster, saDir, "global-planner-1");
        replicas.push(second);
        await slice(replicas.map((r) => ({ pod: r.pod, uid: r.uid, ready: true })));
        await watcher!.until(replicas.map(idOf));
        // Wait until the caller's listing has both, then send enough requests to reach both.
        let listed = "";
        for (let attempt = 0; attempt < 20 && !listed.includes(","); attempt++) {
          const result = await call("health", {});
          listed = JSON.stringify(result.lines[0]);
        }
        const ids = replicas.map((r) => BigInt(`0x${r.service.ready.instance_id}`).toString());
        for (const i of ids) assert.match(listed, new RegExp(i));
        const before = replicas.map((r) =>
          r.service.logs.filter((l) => l.message === "scale request").length
        );
        const result = await call("scale_request", {
          caller_namespace: "intruder",
          graph_deployment_name: "llama",
          k8s_namespace: NS,
          target_replicas: [],
        }, ["--repeat", "40"]);
        assert.equal(result.code, 0, result.stderr.slice(-2000));
        const answered = replicas.map((r, i) =>
          r.service.logs.filter((l) => l.message === "scale request").length - before[i]
        );
        assert.ok(answered.every((n) => n > 0), `requests per replica: ${answered}`);
        assert.equal(answered[0] + answered[1], 40);
      });

      await t.step("SIGTERM withdraws the endpoints → a caller no longer finds the replica", async () => {
        const second = replicas.pop()!;
        assert.equal(await second.service.stop("SIGTERM"), 0);
        // The slice still lists it as ready (no kubelet here): only the withdrawn CR hides it,
        // from the long-lived client and from a new one.
        await watcher!.until([idOf(first)]);
        const result = await call("health", {});
        assert.equal(result.code, 0, result.stderr.slice(-2000));
        assert.match(result.stdout, new RegExp(`"instances": \\[${BigInt(`0x${id}`)}\\]`));
      });
    } finally {
      await watcher?.stop();
      for (const r of replicas) await r.service.stop("SIGKILL");
      await operator.stop();
      await cluster.stop();
    }
  },
});
