/** `global-planner call` as a process with the service's permission set, against the running service. */
import assert from "node:assert/strict";
import { encodeFileName } from "../../src/runtime/discovery/file.ts";
import { startNats } from "../support/nats.ts";
import { serviceCommand, type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test({
  name:
    "call subcommand (deno run -P=service main.ts call ...) against the service: health, scale, rejection",
  async fn() {
    const kv = await Deno.makeTempDir({ prefix: "gp-kv-" });
    const env = { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: kv, DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1" };
    let service: ServiceProcess | undefined;
    const call = async (args: string[]) => {
      const out = await serviceCommand(["call", "--namespace", "gp-call", ...args], env).output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    };
    try {
      service = await startService({
        args: ["--no-operation", "--managed-namespaces", "prod-llama"],
        env: { ...env, DYN_NAMESPACE: "gp-call" },
      });
      const health = await call(["--health"]);
      assert.equal(health.code, 0, health.stderr);
      assert.deepEqual(JSON.parse(health.stdout), {
        status: "healthy",
        component: "GlobalPlanner",
        namespace: "gp-call",
        managed_namespaces: ["prod-llama"],
      });
      const scaled = await call([
        "--prefill",
        "2",
        "--decode",
        "3",
        "--dgd",
        "llama",
        "--k8s-namespace",
        "prod",
      ]);
      assert.equal(scaled.code, 0, scaled.stderr);
      assert.equal(JSON.parse(scaled.stdout).status, "success");
      const log = await service.waitForLog((l) => l.message === "scale request" && l.caller === "prod-llama");
      assert.deepEqual(log.targets, { prefill: 2, decode: 3 });
      const refused = await call(["--decode", "1", "--dgd", "other", "--k8s-namespace", "prod"]);
      assert.equal(refused.code, 1);
      assert.deepEqual(JSON.parse(refused.stdout), {
        status: "error",
        message: "Namespace prod-other not authorized",
        current_replicas: {},
      });
      const usage = await call(["--prefill", "x"]);
      assert.equal(usage.code, 2);
    } finally {
      await service?.stop();
      await Deno.remove(kv, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "call subcommand over the NATS request plane (DYN_REQUEST_PLANE=nats): health, scale, a stale record skipped",
  async fn() {
    const nats = await startNats();
    const kv = await Deno.makeTempDir({ prefix: "gp-kv-" });
    const env = {
      DYN_DISCOVERY_BACKEND: "file",
      DYN_FILE_KV: kv,
      DYN_REQUEST_PLANE: "nats",
      NATS_SERVER: nats.url,
      DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1",
    };
    let service: ServiceProcess | undefined;
    const call = async (args: string[]) => {
      const out = await serviceCommand(["call", "--namespace", "gp-call-nats", ...args], env).output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    };
    try {
      service = await startService({
        args: ["--no-operation", "--managed-namespaces", "prod-llama"],
        env: { ...env, DYN_NAMESPACE: "gp-call-nats" },
      });
      // A record whose instance is gone (nobody subscribes to its subject) beside the live one.
      const instances = `${kv}/v1/instances`;
      assert.ok([...Deno.readDirSync(instances)].length > 0, "the service registered in the file backend");
      const stale = {
        type: "Endpoint",
        namespace: "gp-call-nats",
        component: "GlobalPlanner",
        endpoint: "health",
        instance_id: 7,
        transport: { nats_tcp: "gp-call-nats_GlobalPlanner.health-7" },
      };
      await Deno.writeTextFile(
        `${instances}/${encodeFileName("gp-call-nats/GlobalPlanner/health/7")}`,
        JSON.stringify(stale),
      );
      // Instances are tried in random order: 8 calls all answered leave a 1/256 chance that a
      // client which does not skip the stale one was never sent there first.
      for (let i = 0; i < 8; i++) {
        const health = await call(["--health"]);
        assert.equal(health.code, 0, health.stderr);
        assert.equal(JSON.parse(health.stdout).status, "healthy");
      }
      const scaled = await call(["--decode", "3", "--dgd", "llama", "--k8s-namespace", "prod"]);
      assert.equal(scaled.code, 0, scaled.stderr);
      assert.equal(JSON.parse(scaled.stdout).status, "success");
      const log = await service.waitForLog((l) => l.message === "scale request" && l.caller === "prod-llama");
      assert.deepEqual(log.targets, { decode: 3 });
    } finally {
      await service?.stop();
      await nats.stop();
      await Deno.remove(kv, { recursive: true });
    }
  },
});
