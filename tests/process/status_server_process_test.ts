/** The system status server of the running service: probes, metrics, as operators scrape them. */
import assert from "node:assert/strict";
import { runDriver } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

/**
 * Starts watching `dir`; the returned wait resolves once it holds `count` published records (the
 * writer's `.tmp_*` names do not count), checked on each change, and throws after `timeoutMs`.
 */
function watchRecords(dir: string): (count: number, timeoutMs?: number) => Promise<void> {
  const watcher = Deno.watchFs(dir);
  const held = () => [...Deno.readDirSync(dir)].filter((e) => !e.name.startsWith(".")).length;
  return async (count, timeoutMs = 10_000) => {
    let timedOut = false;
    const timer = setTimeout(() => (timedOut = true, watcher.close()), timeoutMs);
    try {
      if (held() === count) return;
      for await (const _ of watcher) if (held() === count) return;
      throw new Error(`${dir} did not hold ${count} records${timedOut ? ` within ${timeoutMs} ms` : ""}`);
    } finally {
      clearTimeout(timer);
      if (!timedOut) watcher.close();
    }
  };
}

Deno.test({
  name: "status server: /health and /live ready after registration, /metrics counts outcomes, 404 otherwise",
  async fn() {
    const kv = await Deno.makeTempDir({ prefix: "gp-kv-" });
    const env = { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: kv };
    let service: ServiceProcess | undefined;
    try {
      service = await startService({
        args: ["--no-operation", "--managed-namespaces", "ns-a"],
        env: { ...env, DYN_NAMESPACE: "gp-status", DYN_SYSTEM_PORT: "0", DYN_SYSTEM_HOST: "127.0.0.1" },
      });
      const port = service.ready.system_port as number;
      assert.ok(port > 0, JSON.stringify(service.ready));
      const base = `http://127.0.0.1:${port}`;
      const health = await fetch(base + "/health");
      assert.equal(health.status, 200);
      const body = await health.json();
      assert.equal(body.status, "ready");
      assert.deepEqual(body.endpoints, { scale_request: "ready", health: "ready" });
      assert.equal(typeof body.uptime.secs, "number");
      const live = await fetch(base + "/live");
      assert.equal(live.status, 200);
      assert.equal((await live.json()).status, "live");
      const missing = await fetch(`${base}/nope`);
      assert.equal(missing.status, 404);
      assert.equal(await missing.text(), "Route not found");

      const request = {
        caller_namespace: "ns-a",
        graph_deployment_name: "d",
        k8s_namespace: "k",
        target_replicas: [],
      };
      for (const caller of ["ns-a", "ns-x"]) {
        const r = await runDriver("call_endpoint.py", [
          "--endpoint",
          "gp-status.GlobalPlanner.scale_request",
          "--as-string",
          "--payload",
          JSON.stringify({ ...request, caller_namespace: caller }),
        ], env);
        assert.equal(r.code, 0, r.stderr);
      }
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(
        metrics,
        /^dynamo_global_planner_scale_requests_total\{result="success",reason="no_operation"\} 1$/m,
      );
      assert.match(
        metrics,
        /^dynamo_global_planner_scale_requests_total\{result="error",reason="not_authorized"\} 1$/m,
      );
      assert.match(
        metrics,
        /^dynamo_global_planner_scale_request_duration_seconds_count\{result="success"\} 1$/m,
      );
      assert.match(metrics, /^dynamo_global_planner_build_info\{version="0\.1\.0",deno="2\.9\.6"\} 1$/m);
      assert.match(metrics, /^dynamo_global_planner_discovery_registered 1$/m);
      assert.match(metrics, /^dynamo_global_planner_inflight_requests 0$/m);
      // Every request is logged once with its outcome.
      const outcomes = service.logs.filter((l) => l.message === "scale request");
      assert.deepEqual(outcomes.map((l) => l.reason), ["no_operation", "not_authorized"]);
      assert.equal(await service.stop("SIGTERM"), 0);
      service = undefined;
      assert.deepEqual([...Deno.readDirSync(`${kv}/v1/instances`)], [], "discovery files left behind");
    } finally {
      await service?.stop("SIGKILL");
      await Deno.remove(kv, { recursive: true });
    }
  },
});

Deno.test({
  name: "logs: JSON lines with time, level and message; DYN_LOG=warn hides info lines",
  async fn() {
    const kv = await Deno.makeTempDir({ prefix: "gp-kv-" });
    let service: ServiceProcess | undefined;
    try {
      service = await startService({
        args: ["--no-operation"],
        env: { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: kv, DYN_NAMESPACE: "gp-logs", DYN_LOG: "info" },
      });
      const ready = service.ready;
      assert.equal(ready.level, "info");
      assert.ok(!isNaN(Date.parse(String(ready.time))));
      await service.stop();
      service = undefined;
    } finally {
      await service?.stop("SIGKILL");
    }
    // With DYN_LOG=warn the ready line is not printed, so wait for the registration instead,
    // watching the records' directory from before the service starts so no write goes unseen.
    const records = `${kv}/v1/instances`;
    await Deno.mkdir(records, { recursive: true });
    const published = watchRecords(records);
    const quiet = new Deno.Command(Deno.execPath(), {
      args: ["run", "-P=service", "--quiet", "main.ts", "--no-operation"],
      cwd: new URL("../../", import.meta.url).pathname,
      env: {
        DYN_DISCOVERY_BACKEND: "file",
        DYN_FILE_KV: kv,
        DYN_NAMESPACE: "gp-logs",
        DYN_LOG: "warn",
        DYN_TCP_RPC_HOST: "127.0.0.1",
      },
      clearEnv: true,
      stderr: "piped",
      stdout: "null",
    }).spawn();
    try {
      await published(2);
    } finally {
      quiet.kill("SIGTERM");
    }
    const out = await quiet.output();
    const lines = new TextDecoder().decode(out.stderr).split("\n").filter((l) => l.startsWith("{"));
    assert.deepEqual(lines.filter((l) => JSON.parse(l).level === "info"), []);
    assert.equal(out.code, 0);
    await Deno.remove(kv, { recursive: true });
  },
});

Deno.test({
  name: "status server: /health 503 with the reason while the Kubernetes API is unreachable; /live 200",
  async fn() {
    const kv = await Deno.makeTempDir({ prefix: "gp-kv-" });
    const sa = await Deno.makeTempDir({ prefix: "gp-sa-" });
    await Deno.writeTextFile(`${sa}/token`, "token");
    await Deno.writeTextFile(`${sa}/ca.crt`, "not a certificate the service will ever use");
    let service: ServiceProcess | undefined;
    try {
      service = await startService({
        args: ["--service-account-dir", sa],
        env: {
          DYN_DISCOVERY_BACKEND: "file",
          DYN_FILE_KV: kv,
          DYN_NAMESPACE: "gp-unready",
          DYN_SYSTEM_PORT: "0",
          DYN_SYSTEM_HOST: "127.0.0.1",
          KUBERNETES_SERVICE_HOST: "127.0.0.1",
          KUBERNETES_SERVICE_PORT: "1",
        },
      });
      const response = await fetch(`http://127.0.0.1:${service.ready.system_port}/health`);
      assert.equal(response.status, 503);
      const body = await response.json();
      assert.equal(body.status, "notready");
      assert.match(body.reason, /^Kubernetes API https:\/\/127\.0\.0\.1:1 not reachable/);
      // Liveness is the process only: the kubelet must not restart it for the API's outage.
      const live = await fetch(`http://127.0.0.1:${service.ready.system_port}/live`);
      assert.equal(live.status, 200);
      assert.equal((await live.json()).status, "live");
    } finally {
      await service?.stop("SIGKILL");
      await Deno.remove(kv, { recursive: true });
      await Deno.remove(sa, { recursive: true });
    }
  },
});
