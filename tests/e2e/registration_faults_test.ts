/**
 * The service as a process (`deno run -P=service main.ts`) through registration and Kubernetes
 * faults: its etcd keys deleted, an API server that hangs, answers 5xx or cuts the DGD watch,
 * and an etcd outage longer than the lease followed by a restart. Each step asserts that the
 * process stays alive, `/live` answers 200 throughout, `/health` says what is wrong and
 * recovers, and a real 1.6.1 caller (ai-dynamo-runtime) is answered afterwards.
 */
import assert from "node:assert/strict";
import { createDgd, v1alpha1Dgd } from "../support/dgd_fixtures.ts";
import { startEtcd } from "../support/etcd.ts";
import { startKubeFaultProxy } from "../support/kube_fault_proxy.ts";
import { startKubeCluster } from "../support/kube_cluster.ts";
import { waitFor } from "../support/ports.ts";
import { runDriver } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const GP_NS = "gp-faults";
const POOL = "faults-pool";

Deno.test({
  name: "registration and Kubernetes faults: alive, health tells and recovers, callers answered",
  async fn(t) {
    const cluster = await startKubeCluster();
    // Serves the API server's own certificate, so the service's in-cluster credentials trust it.
    const proxy = startKubeFaultProxy(cluster.url, cluster.caPem, {
      cert: await Deno.readTextFile(`${cluster.dir}/certs/apiserver.crt`),
      key: await Deno.readTextFile(`${cluster.dir}/certs/apiserver.key`),
    });
    const etcd = await startEtcd();
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-faults-" });
    let service: ServiceProcess | undefined;
    try {
      await cluster.createNamespace(POOL);
      await createDgd(cluster, v1alpha1Dgd("d", POOL, { D: { role: "decode", replicas: 1, gpu: 1 } }));
      await cluster.writeServiceAccountDir(dir, POOL, cluster.adminToken);
      const discovery = { DYN_DISCOVERY_BACKEND: "etcd", ETCD_ENDPOINTS: etcd.endpoint };
      service = await startService({
        args: ["--max-total-gpus", "100", "--service-account-dir", dir],
        env: {
          DYN_NAMESPACE: GP_NS,
          POD_NAMESPACE: POOL,
          KUBERNETES_SERVICE_HOST: "127.0.0.1",
          KUBERNETES_SERVICE_PORT: new URL(proxy.url).port,
          ETCD_LEASE_TTL: "2",
          GLOBAL_PLANNER_KUBE_REQUEST_TIMEOUT_SECONDS: "1",
          GLOBAL_PLANNER_KUBE_WATCH_IDLE_SECONDS: "3",
          DYN_SYSTEM_PORT: "0",
          DYN_SYSTEM_HOST: "127.0.0.1",
          ...discovery,
        },
      });
      const running = service;
      const base = `http://127.0.0.1:${running.ready.system_port}`;
      const probe = async (path: string) => {
        const response = await fetch(base + path);
        return { status: response.status, body: await response.json() };
      };
      const health = () => probe("/health");
      const alive = async () => {
        assert.equal((await probe("/live")).status, 200, "/live must answer 200 whatever is down");
        const exited = await Promise.race([running.status.then(() => true), Promise.resolve(false)]);
        assert.equal(exited, false, "the process exited");
      };
      /** A real 1.6.1 caller asks our health endpoint and gets our answer. */
      const answered = async () => {
        const r = await runDriver(
          "call_endpoint.py",
          [
            "--endpoint",
            `${GP_NS}.GlobalPlanner.health`,
            "--payload",
            "{}",
            "--timeout",
            "20",
          ],
          discovery,
          40_000,
        );
        assert.equal(r.code, 0, r.stderr.slice(-2000));
        const item = r.lines.find((l) => "item" in l)?.item as { status?: string } | undefined;
        assert.equal(item?.status, "healthy", r.stdout);
      };
      // Measured durations, printed at the end for docs/reliability.md (never asserted).
      const figures: Record<string, number> = {};
      const since = (start: number) => Math.round(performance.now() - start);
      const keys = async () => (await etcd.list(`v1/instances/${GP_NS}/`)).map((kv) => kv.key).sort();
      /** Open descriptors of the service (Linux /proc; Deno itself needs --allow-all to list it). */
      const fds = async () => {
        const out = await new Deno.Command("ls", { args: ["-1", `/proc/${running.pid}/fd`] }).output();
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
        return new TextDecoder().decode(out.stdout).trim().split("\n").length;
      };
      assert.equal((await health()).status, 200);
      await answered();
      const baselineFds = await fds();

      await t.step("deleted registration keys are written again; health and callers recover", async () => {
        const before = await keys();
        assert.equal(before.length, 2);
        const prefix = `v1/instances/${GP_NS}/`;
        const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
        const deleted = performance.now();
        await etcd.call("/v3/kv/deleterange", { key: btoa(prefix), range_end: btoa(end) });
        await waitFor(async () => (await keys()).length === 2, "keys re-created", 10_000);
        figures.deleted_keys_back_ms = since(deleted);
        assert.deepEqual(await keys(), before);
        await alive();
        await waitFor(async () => (await health()).status === 200, "/health 200", 10_000);
        await answered();
      });

      await t.step("an API server that hangs: /health 503 naming it, /live 200, then recovery", async () => {
        proxy.mode = "hang";
        const hung = performance.now();
        await waitFor(async () => (await health()).status === 503, "/health 503", 20_000);
        figures.hang_to_health_503_ms = since(hung);
        assert.match((await health()).body.reason, /Kubernetes API .* not reachable: .*no answer within 1 s/);
        await alive();
        proxy.mode = "pass";
        const back = performance.now();
        await waitFor(async () => (await health()).status === 200, "/health 200 again", 20_000);
        figures.hang_end_to_health_200_ms = since(back);
        await answered();
      });

      await t.step("an API server answering 5xx: /health 503, /live 200, then recovery", async () => {
        proxy.mode = "5xx";
        await waitFor(async () => (await health()).status === 503, "/health 503", 20_000);
        assert.match((await health()).body.reason, /HTTP 503/);
        await alive();
        proxy.mode = "pass";
        await waitFor(async () => (await health()).status === 200, "/health 200 again", 20_000);
      });

      await t.step("the DGD watch going away mid-stream is re-established", async () => {
        const before = running.logs.filter((l) => l.message === "DGD watch re-established").length;
        const cut = performance.now();
        proxy.cut();
        await waitFor(
          () => running.logs.filter((l) => l.message === "DGD watch re-established").length > before,
          "watch re-established",
          20_000,
        );
        figures.cut_to_watch_back_ms = since(cut);
        await alive();
        await answered();
      });

      await t.step(
        "an etcd outage past the lease: re-registered under a new lease after restart",
        async () => {
          const first = String(running.ready.instance_id);
          const down = performance.now();
          await etcd.kill();
          await waitFor(async () => (await health()).status === 503, "/health 503 during the outage", 10_000);
          figures.etcd_down_to_health_503_ms = since(down);
          assert.match((await health()).body.reason, /discovery registration \(etcd\) is not alive/);
          await running.waitForLog((l) => String(l.message).startsWith("etcd lease lost;"), 15_000);
          await alive();
          figures.etcd_down_to_lease_lost_ms = since(down);
          const restarting = performance.now();
          await etcd.restart();
          const renewed = await running.waitForLog(
            (l) => l.message === "etcd registration re-created under a new lease",
            20_000,
          );
          assert.equal(renewed.previous_instance_id, first);
          assert.notEqual(renewed.instance_id, first);
          await waitFor(async () => (await health()).status === 200, "/health 200 again", 10_000);
          figures.etcd_restart_to_health_200_ms = since(restarting);
          const now = await keys();
          assert.equal(now.length, 2);
          assert.ok(now.every((k) => k.endsWith(`/${renewed.instance_id}`)), now.join(", "));
          await alive();
          await answered();
        },
      );

      // Every fault healed: no descriptor left behind by cut watches, hung requests or the outage
      // (a few pooled connections may differ from the baseline).
      const endFds = await fds();
      figures.fds_baseline = baselineFds;
      figures.fds_after = endFds;
      console.log(`registration/Kubernetes fault figures: ${JSON.stringify(figures)}`);
      assert.ok(endFds <= baselineFds + 4, `descriptors ${baselineFds} → ${endFds}`);
      assert.equal(await running.stop("SIGTERM"), 0);
      service = undefined;
    } finally {
      if (service) await service.stop("SIGKILL").catch(() => {});
      await etcd.stop();
      await proxy.close();
      await cluster.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS=true: a lost etcd lease ends the process with exit 1",
  async fn() {
    const etcd = await startEtcd();
    let service: ServiceProcess | undefined;
    try {
      service = await startService({
        args: ["--no-operation"],
        env: {
          DYN_NAMESPACE: "gp-exit",
          DYN_DISCOVERY_BACKEND: "etcd",
          ETCD_ENDPOINTS: etcd.endpoint,
          ETCD_LEASE_TTL: "2",
          GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS: "true",
        },
      });
      const lease = BigInt("0x" + String(service.ready.instance_id)).toString();
      await etcd.call("/v3/lease/revoke", { ID: lease });
      const status = await service.status;
      assert.equal(status.code, 1);
      const lost = service.logs.find((l) => l.message === "stopping: discovery registration lost");
      assert.match(String(lost?.error), /expired/);
      service = undefined;
    } finally {
      if (service) await service.stop("SIGKILL").catch(() => {});
      await etcd.stop();
    }
  },
});
