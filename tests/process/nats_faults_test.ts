/**
 * The service on the NATS request plane as users run it, through faults, with a real 1.6.1
 * caller: nats-server restarted while we serve (readiness turns 503 with a reason and back,
 * requests succeed again without a restart of ours), a server unreachable at start (retried,
 * then exit 1 with the address), SIGTERM (drains and exits 0).
 */
import assert from "node:assert/strict";
import { fileBackend, natsPlane } from "../support/backends.ts";
import { freePort, waitFor } from "../support/ports.ts";
import { runDriver } from "../support/python.ts";
import { serviceCommand, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "gp-nats-faults";

async function health(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${port}/health`);
  return { status: response.status, body: await response.json() };
}

Deno.test({
  name: "NATS faults: nats-server restarts → readiness 503 then 200, a 1.6.1 caller is answered again",
  // nats-server, the service and the Python driver are subprocesses whose pipes Deno counts.
  async fn() {
    const backend = await fileBackend();
    const plane = await natsPlane();
    const env = { ...backend.env, ...plane.env };
    const service = await startService({
      args: ["--no-operation"],
      env: { DYN_NAMESPACE: NS, DYN_SYSTEM_PORT: "0", ...env },
    });
    const callHealth = () =>
      runDriver("call_endpoint.py", [
        "--endpoint",
        `${NS}.GlobalPlanner.health`,
        "--payload",
        "{}",
        "--timeout",
        "20",
      ], env);
    try {
      const port = service.ready.system_port as number;
      assert.equal((await health(port)).status, 200);
      assert.ok((await callHealth()).lines.some((l) => "item" in l));

      await plane.nats!.kill();
      await service.waitForLog((l) => l.message === "NATS connection lost; reconnecting");
      const down = await health(port);
      assert.equal(down.status, 503);
      assert.equal(down.body.reason, "request plane (nats) is not connected");

      await plane.nats!.start();
      await service.waitForLog((l) => l.message === "NATS reconnected; subscriptions restored", 30_000);
      await waitFor(async () => (await health(port)).status === 200, "readiness after the reconnect");
      const again = await callHealth();
      assert.deepEqual(again.lines.find((l) => "item" in l), {
        item: { status: "healthy", component: "GlobalPlanner", namespace: NS, managed_namespaces: "all" },
      });
      assert.equal(await service.stop("SIGTERM"), 0);
    } finally {
      await service.stop("SIGKILL");
      await plane.cleanup();
      await backend.cleanup();
    }
  },
});

Deno.test({
  name: "NATS faults: an unreachable server is retried at start, then exit 1 naming it",
  async fn() {
    const backend = await fileBackend();
    const url = `nats://127.0.0.1:${freePort()}`;
    try {
      const child = serviceCommand(["--no-operation"], {
        DYN_NAMESPACE: NS,
        DYN_TCP_RPC_HOST: "127.0.0.1",
        DYN_REQUEST_PLANE: "nats",
        NATS_SERVER: url,
        NATS_STARTUP_CONNECT_TIMEOUT_SECONDS: "2",
        ...backend.env,
      }).spawn();
      const { code, stderr } = await child.output();
      const text = new TextDecoder().decode(stderr);
      assert.equal(code, 1, text);
      assert.match(text, /NATS not reachable yet; retrying/);
      assert.ok(text.includes(`NATS server ${url} not reachable within 2 s`), text);
    } finally {
      await backend.cleanup();
    }
  },
});

Deno.test({
  name: "NATS faults: refused credentials fail at once with exit 1",
  async fn() {
    const backend = await fileBackend();
    const plane = await natsPlane({ args: ["--user", "gp", "--pass", "right"] });
    try {
      const base = { DYN_NAMESPACE: NS, DYN_TCP_RPC_HOST: "127.0.0.1", ...backend.env, ...plane.env };
      const child = serviceCommand(["--no-operation"], {
        ...base,
        NATS_AUTH_USERNAME: "gp",
        NATS_AUTH_PASSWORD: "wrong",
      }).spawn();
      const { code, stderr } = await child.output();
      const text = new TextDecoder().decode(stderr);
      assert.equal(code, 1, text);
      assert.match(text, /NATS server nats:\/\/127\.0\.0\.1:\d+ refused the connection/);
      // The right ones (and the runtime's variables) connect.
      const service = await startService({
        args: ["--no-operation"],
        env: { ...base, NATS_AUTH_USERNAME: "gp", NATS_AUTH_PASSWORD: "right" },
      });
      assert.equal(await service.stop("SIGTERM"), 0);
    } finally {
      await plane.cleanup();
      await backend.cleanup();
    }
  },
});
