/**
 * Two `--leader-elect` replicas as processes on the real kube-apiserver, with etcd discovery and
 * with Kubernetes discovery (DynamoWorkerMetadata CRs joined with an EndpointSlice, which the
 * test keeps as the endpoints controller of a Deployment would: a new pod name per start, the
 * stopped pod's entry removed at its signal), under continuous load from 8 real 1.6.1 planners (tests/interop/py/failover_driver.py): a
 * rolling restart of both (SIGTERM, restart, SIGTERM the other, restart), then a SIGKILL of the
 * leader. Asserted: no request lost, none hanging, every caller error a retriable
 * `Unavailable`, every answered scaling applied exactly once (each DGD's generation grew by the
 * number of answers) and in order; with Kubernetes discovery only the leader's CR lists endpoints,
 * a standby publishes none. A third test checks that a fresh leader lists its DGD cache again
 * before it registers. Timings are printed (docs/reliability.md), not asserted.
 */
import assert from "node:assert/strict";
import { createDgd, readDgd, replicasOf, v1alpha1Dgd } from "../support/dgd_fixtures.ts";
import { startEtcd } from "../support/etcd.ts";
import { startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { getDwm, putSlice } from "../support/kube_discovery.ts";
import { spawnDriver } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const GP_NS = "gp-ha";
const POOL = "ha-pool";
const PLANNERS = 8;
/** Short timings keep the suite fast; `FAILOVER_DEFAULT_TIMINGS=1` measures client-go's defaults (15 s/10 s/2 s). */
const DEFAULTS = Deno.env.get("FAILOVER_DEFAULT_TIMINGS") === "1";
const ELECTION = DEFAULTS
  ? []
  : ["--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s"];
const RETRY = DEFAULTS ? [] : ["--leader-elect-retry-period", "500ms"];

type Backend = "etcd" | "kubernetes";

for (const backend of ["etcd", "kubernetes"] as const) {
  Deno.test({
    name:
      `leader failover under load from 8 real 1.6.1 planners (${backend} discovery): rolling restart and SIGKILL, nothing lost`,
    fn: () => failover(backend),
  });
}

async function failover(backend: Backend): Promise<void> {
  {
    const kube = backend === "kubernetes";
    const cluster = await startKubeCluster(kube ? { extraCrdFiles: [upstreamDwmCrd()] } : {});
    const etcd = kube ? undefined : await startEtcd();
    const dir = await Deno.makeTempDir({ dir: cluster.dir, prefix: "sa-" });
    const running = new Set<ServiceProcess>();
    let driver: Awaited<ReturnType<typeof spawnDriver>> | undefined;
    try {
      await cluster.createNamespace(POOL);
      const generation0: number[] = [];
      for (let i = 0; i < PLANNERS; i++) {
        await createDgd(
          cluster,
          v1alpha1Dgd(`pool-${i}`, POOL, {
            Pre: { role: "prefill", replicas: 1 },
            Dec: { role: "decode", replicas: 1 },
          }),
        );
        generation0.push((await readDgd(cluster, "v1alpha1", POOL, `pool-${i}`)).metadata.generation);
      }
      await cluster.writeServiceAccountDir(dir, POOL, cluster.adminToken);
      /** What the 1.6.1 callers get: in kubernetes mode they need a pod identity of their own. */
      const discovery: Record<string, string> = kube
        ? {
          DYN_DISCOVERY_BACKEND: "kubernetes",
          KUBECONFIG: await cluster.kubeconfig(`${cluster.dir}/caller.kubeconfig`, cluster.adminToken, POOL),
          POD_NAME: "failover-planner-0",
          POD_UID: "uid-failover-planner-0",
          POD_NAMESPACE: POOL,
        }
        : { DYN_DISCOVERY_BACKEND: "etcd", ETCD_ENDPOINTS: etcd!.endpoint };
      const serviceDiscovery: Record<string, string> = kube
        ? { DYN_DISCOVERY_BACKEND: "kubernetes" }
        : { ...discovery, ETCD_LEASE_TTL: "3" };
      /** The ready pods behind the discovery-labelled Service (kubernetes mode). */
      const ready = new Set<string>();
      const slice = async () => {
        if (!kube) return;
        await putSlice(
          cluster,
          POOL,
          "global-planner",
          [...ready].map((pod) => ({ pod, uid: `uid-${pod}`, ready: true })),
        );
      };
      /** Only the leader's DynamoWorkerMetadata lists endpoints; a standby publishes none. */
      const onlyLeaderPublished = async (leaderPod: string, standbyPod: string) => {
        if (!kube) return;
        const mine = await getDwm(cluster, POOL, leaderPod);
        assert.ok(mine, `the leader ${leaderPod} published its DynamoWorkerMetadata`);
        assert.ok(Object.keys(mine.spec?.data?.endpoints ?? {}).length > 0, JSON.stringify(mine.spec));
        assert.equal(
          await getDwm(cluster, POOL, standbyPod),
          undefined,
          `the standby ${standbyPod} published none`,
        );
      };
      let pods = 0;
      const start = async () => {
        // A Deployment's new pod gets a new name (and uid).
        const pod = `gp-${++pods}`;
        const service = await startService({
          args: ["--leader-elect", ...ELECTION, ...RETRY, "--service-account-dir", dir],
          env: {
            DYN_NAMESPACE: GP_NS,
            POD_NAMESPACE: POOL,
            POD_NAME: pod,
            POD_UID: `uid-${pod}`,
            ...cluster.inClusterEnv(),
            ...serviceDiscovery,
            DYN_SYSTEM_PORT: "0",
            DYN_SYSTEM_HOST: "127.0.0.1",
            DYN_SHUTDOWN_GRACE_SECS: "5",
            DYN_LOG: "info",
          },
        });
        running.add(service);
        pods_.set(service, pod);
        ready.add(pod);
        await slice();
        return service;
      };
      const pods_ = new Map<ServiceProcess, string>();
      const podOf = (s: ServiceProcess) => pods_.get(s)!;
      const serving = (s: ServiceProcess) => s.waitForLog((l) => l.message === "serving as leader", 30_000);
      const role = async (s: ServiceProcess) => {
        const r = await fetch(`http://127.0.0.1:${s.ready.system_port}/health`);
        return { status: r.status, body: await r.json() };
      };
      /** The sum of all pools' prefill replicas grows by `by` (the load goes on). */
      const progress = async (by: number, what: string) => {
        const total = async () => {
          let sum = 0;
          for (let i = 0; i < PLANNERS; i++) {
            sum += replicasOf(await readDgd(cluster, "v1alpha1", POOL, `pool-${i}`)).Pre;
          }
          return sum;
        };
        const from = await total();
        await waitFor(async () => (await total()) >= from + by, what, 60_000, 100);
      };

      let leader = await start();
      await serving(leader);
      let standby = await start();
      await onlyLeaderPublished(podOf(leader), podOf(standby));
      assert.deepEqual([(await role(leader)).status, (await role(leader)).body.role], [200, "leader"]);
      assert.deepEqual([(await role(standby)).status, (await role(standby)).body.role], [200, "standby"]);

      driver = await spawnDriver("failover_driver.py", [
        "--endpoint",
        `${GP_NS}.GlobalPlanner.scale_request`,
        "--k8s-namespace",
        POOL,
        "--planners",
        String(PLANNERS),
      ], discovery);
      await driver.waitForLine((l) => l.ready === true, 60_000);
      await progress(PLANNERS * 3, "load through the first leader");

      const events: { what: string; at: number; takeoverMs: number }[] = [];
      const handover = async (what: string, signal: Deno.Signal) => {
        const old = leader;
        const next = standby;
        const at = Date.now();
        const t0 = performance.now();
        const stopped = old.stop(signal);
        // The endpoints controller drops a terminating or dead pod from the slice.
        ready.delete(podOf(old));
        const sliced = slice();
        await serving(next);
        await sliced;
        events.push({ what, at, takeoverMs: performance.now() - t0 });
        const code = await stopped;
        running.delete(old);
        if (signal === "SIGTERM") assert.equal(code, 0, `${what}: clean exit`);
        leader = next;
        standby = await start();
        assert.equal((await role(standby)).body.role, "standby");
        await onlyLeaderPublished(podOf(leader), podOf(standby));
        await progress(PLANNERS * 3, `load after ${what}`);
      };
      // Rolling restart of both replicas, then a crash of the leader.
      await handover("SIGTERM of the leader (rolling restart, 1 of 2)", "SIGTERM");
      await handover("SIGTERM of the leader (rolling restart, 2 of 2)", "SIGTERM");
      await handover("SIGKILL of the leader", "SIGKILL");

      await driver.stop(60_000);
      const summary = (await driver.waitForLine((l) => "summary" in l, 1_000)).summary as {
        ops: number;
        ok: number;
        answered_error: number;
        lost: number;
        hangs: number;
        retries: number;
        errors: Record<string, number>;
        answers: Record<string, number[]>;
        success_ms: number[];
        error_ms: number[];
      };
      driver = undefined;
      assert.equal(summary.lost, 0, JSON.stringify(summary.errors));
      assert.equal(summary.hangs, 0, JSON.stringify(summary.errors));
      assert.equal(summary.answered_error, 0, JSON.stringify(summary.errors));
      assert.equal(summary.ok, summary.ops);
      for (const key of Object.keys(summary.errors)) {
        assert.match(
          key,
          /^(Exception|ValueError): Unavailable: /,
          "every caller error is a retriable Unavailable",
        );
      }
      for (let i = 0; i < PLANNERS; i++) {
        const answers = summary.answers[`pool-${i}`];
        assert.deepEqual(
          answers,
          answers.map((_, k) => k + 2),
          `pool-${i}: every request answered once, in order`,
        );
        const dgd = await readDgd(cluster, "v1alpha1", POOL, `pool-${i}`);
        assert.equal(replicasOf(dgd).Pre, answers.at(-1));
        assert.equal(
          dgd.metadata.generation - generation0[i],
          answers.length,
          `pool-${i}: one write per answered scaling, none twice`,
        );
      }
      // Caller-side figures: the longest stretch without any success around each event.
      const gap = (at: number) => {
        const before = summary.success_ms.filter((t) => t <= at).at(-1) ?? at;
        const after = summary.success_ms.find((t) => t > at) ?? at;
        return { noSuccessMs: after - before, firstSuccessAfterMs: after - at };
      };
      for (const e of events) {
        const g = gap(e.at);
        console.log(
          `[${backend}] ${e.what}: standby serving after ${
            e.takeoverMs.toFixed(0)
          } ms; first answered request ` +
            `${g.firstSuccessAfterMs} ms after the signal (no success for ${g.noSuccessMs} ms)`,
        );
      }
      console.log(
        `[${backend}] ${summary.ops} requests from ${PLANNERS} planners: ${summary.ok} answered success, 0 lost, ` +
          `${summary.retries} retries; caller errors: ${JSON.stringify(summary.errors)}`,
      );
    } finally {
      await driver?.stop(5_000);
      for (const s of running) await s.stop("SIGKILL");
      await etcd?.stop();
      await cluster.stop();
    }
  }
}

Deno.test({
  name: "a fresh leader lists its DGD cache again before it registers (at start and at a takeover)",
  async fn() {
    const cluster = await startKubeCluster({ extraCrdFiles: [upstreamDwmCrd()] });
    const dir = await Deno.makeTempDir({ dir: cluster.dir, prefix: "sa-" });
    const running: ServiceProcess[] = [];
    try {
      await cluster.createNamespace(POOL);
      await createDgd(cluster, v1alpha1Dgd("pool-0", POOL, { Pre: { role: "prefill", replicas: 1 } }));
      await cluster.writeServiceAccountDir(dir, POOL, cluster.adminToken);
      const start = async (pod: string) => {
        const service = await startService({
          // A GPU budget gives the replica its DGD cache.
          args: [
            "--leader-elect",
            ...ELECTION,
            ...RETRY,
            "--service-account-dir",
            dir,
            "--max-total-gpus",
            "64",
          ],
          env: {
            DYN_NAMESPACE: GP_NS,
            POD_NAMESPACE: POOL,
            POD_NAME: pod,
            POD_UID: `uid-${pod}`,
            ...cluster.inClusterEnv(),
            DYN_DISCOVERY_BACKEND: "kubernetes",
            DYN_SYSTEM_PORT: "0",
            DYN_SYSTEM_HOST: "127.0.0.1",
            DYN_LOG: "info",
          },
        });
        running.push(service);
        return service;
      };
      /** After `became leader`: the list, then the CR published (registration), then `serving as leader`. */
      const listedBeforeRegistering = async (s: ServiceProcess) => {
        await s.waitForLog((l) => l.message === "serving as leader", 30_000);
        const messages = s.logs.map((l) => String(l.message));
        const became = messages.lastIndexOf("became leader");
        const listed = messages.indexOf("DGD cache listed", became);
        const published = messages.indexOf("DynamoWorkerMetadata published", became);
        const serving = messages.lastIndexOf("serving as leader");
        assert.ok(
          became >= 0 && became < listed && listed < published && published < serving,
          JSON.stringify(messages),
        );
      };
      const a = await start("gp-a");
      await listedBeforeRegistering(a);
      const b = await start("gp-b");
      assert.equal(b.logs.some((l) => l.message === "DynamoWorkerMetadata published"), false);
      assert.equal(await a.stop("SIGTERM"), 0);
      await listedBeforeRegistering(b);
      // The budget's intents left on the Lease are judged against that fresh list, before b registers.
      const messages = b.logs.map((l) => String(l.message));
      const inherited = messages.lastIndexOf("budget intents inherited from the previous leader");
      assert.ok(
        inherited > messages.lastIndexOf("DGD cache listed") &&
          inherited < messages.lastIndexOf("DynamoWorkerMetadata published"),
        JSON.stringify(messages),
      );
      assert.deepEqual(
        { intents: b.logs[inherited].intents, superseded: b.logs[inherited].superseded },
        { intents: 0, superseded: 0 },
      );
    } finally {
      for (const s of running) await s.stop("SIGKILL");
      await cluster.stop();
    }
  },
});
