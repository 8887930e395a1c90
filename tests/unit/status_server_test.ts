import assert from "node:assert/strict";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/ops/log.ts";
import { PROMETHEUS_CONTENT_TYPE, Registry } from "../../src/ops/metrics.ts";
import { readStatusSettings, STATUS_ENV_VARS, type StatusSettings } from "../../src/config/status.ts";
import { type Readiness, startStatusServer } from "../../src/ops/status_server.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const SETTINGS: StatusSettings = { host: "127.0.0.1", port: 0, healthPath: "/health", livePath: "/live" };
const READY: Readiness = { ready: true, endpoints: { scale_request: "ready", health: "ready" } };

async function withServer(
  readiness: () => Readiness,
  test: (base: string, lines: string[]) => Promise<void>,
  settings: StatusSettings = SETTINGS,
) {
  const lines: string[] = [];
  const registry = new Registry();
  registry.counter({ name: "demo_total", help: "Demo." }).inc();
  const server = await startStatusServer(
    settings,
    readiness,
    registry,
    createLogger({ sink: (l) => lines.push(l) }),
  );
  try {
    await test(`http://127.0.0.1:${server.port}`, lines);
  } finally {
    await server.close();
  }
}

Deno.test("ready: 200 with the runtime's JSON on the health path; port is logged", async () => {
  await withServer(() => READY, async (base, lines) => {
    for (const path of ["/health"]) {
      const response = await fetch(base + path);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "text/plain; charset=utf-8");
      const body = await response.json();
      assert.deepEqual(Object.keys(body), ["status", "uptime", "endpoints"]);
      assert.equal(body.status, "ready");
      assert.deepEqual(body.endpoints, { scale_request: "ready", health: "ready" });
      assert.ok(Number.isInteger(body.uptime.secs) && body.uptime.secs >= 0);
      assert.ok(Number.isInteger(body.uptime.nanos) && body.uptime.nanos < 1e9);
    }
    const listening = lines.map((l) => JSON.parse(l)).find((l) => l.message.includes("listening"));
    assert.equal(listening.port, Number(new URL(base).port));
  });
});

Deno.test("not ready: 503 with notready and a reason", async () => {
  const readiness = (): Readiness => ({
    ready: false,
    endpoints: { scale_request: "notready", health: "ready" },
    reason: "not registered in discovery",
  });
  await withServer(readiness, async (base) => {
    const response = await fetch(base + "/health");
    assert.equal(response.status, 503);
    const body = await response.json();
    assert.equal(body.status, "notready");
    assert.deepEqual(body.endpoints, { scale_request: "notready", health: "ready" });
    assert.equal(body.reason, "not registered in discovery");
  });
});

Deno.test("a throwing readiness probe answers 503 instead of crashing", async () => {
  await withServer(() => {
    throw new Error("boom");
  }, async (base) => {
    const response = await fetch(base + "/health");
    assert.equal(response.status, 503);
    assert.match((await response.json()).reason, /boom/);
  });
});

Deno.test("/live reports the process only: 200 while readiness is 503 or its probe throws", async () => {
  let probed = 0;
  const cases: (() => Readiness)[] = [
    () => READY,
    () => ({ ready: false, endpoints: {}, reason: "Kubernetes API not reachable" }),
    () => {
      throw new Error("boom");
    },
  ];
  for (const readiness of cases) {
    await withServer(() => {
      probed++;
      return readiness();
    }, async (base) => {
      const response = await fetch(base + "/live");
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.deepEqual(Object.keys(body), ["status", "uptime"]);
      assert.equal(body.status, "live");
      assert.ok(Number.isInteger(body.uptime.secs));
      const head = await fetch(base + "/live", { method: "HEAD" });
      assert.equal(head.status, 200);
      await head.body?.cancel();
    });
  }
  assert.equal(probed, 0, "liveness never asks readiness");
});

Deno.test("custom health and live paths replace the defaults", async () => {
  await withServer(() => READY, async (base) => {
    const custom = await fetch(base + "/healthz");
    assert.equal(custom.status, 200);
    await custom.body?.cancel();
    const old = await fetch(base + "/health");
    assert.equal(old.status, 404);
    assert.equal(await old.text(), "Route not found");
  }, { ...SETTINGS, healthPath: "/healthz", livePath: "/livez" });
});

Deno.test("/metrics serves the Prometheus text format", async () => {
  await withServer(() => READY, async (base) => {
    const response = await fetch(base + "/metrics");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), PROMETHEUS_CONTENT_TYPE);
    assert.equal(await response.text(), "# HELP demo_total Demo.\n# TYPE demo_total counter\ndemo_total 1\n");
  });
});

Deno.test("unknown path → 404 Route not found; POST → 405; HEAD → headers only", async () => {
  await withServer(() => READY, async (base) => {
    const missing = await fetch(base + "/nope");
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), "Route not found");
    const post = await fetch(base + "/health", { method: "POST", body: "{}" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET,HEAD");
    assert.equal(await post.text(), "");
    const head = await fetch(base + "/health", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
  });
});

Deno.test("close stops the server and is idempotent", async () => {
  const server = await startStatusServer(
    SETTINGS,
    () => READY,
    new Registry(),
    createLogger({ sink: () => {} }),
  );
  const base = `http://127.0.0.1:${server.port}`;
  await (await fetch(base + "/live")).body?.cancel();
  await Promise.all([server.close(), server.close()]);
  await assert.rejects(fetch(base + "/live"));
});

Deno.test("a port already in use is a clear error", async () => {
  const first = await startStatusServer(
    SETTINGS,
    () => READY,
    new Registry(),
    createLogger({ sink: () => {} }),
  );
  try {
    await assert.rejects(
      startStatusServer(
        { ...SETTINGS, port: first.port },
        () => READY,
        new Registry(),
        createLogger({ sink: () => {} }),
      ),
      new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.port}`),
    );
  } finally {
    await first.close();
  }
});

const env = (vars: Record<string, string>) => (name: string) => vars[name];

function refused(vars: Record<string, string>): string {
  try {
    readStatusSettings(env(vars));
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("settings: disabled unless DYN_SYSTEM_PORT ≥ 0; runtime defaults", () => {
  assert.equal(readStatusSettings(env({})), null);
  assert.equal(readStatusSettings(env({ DYN_SYSTEM_PORT: "-1" })), null);
  assert.equal(readStatusSettings(env({ DYN_SYSTEM_PORT: "" })), null);
  assert.deepEqual(readStatusSettings(env({ DYN_SYSTEM_PORT: "9090" })), {
    host: "0.0.0.0",
    port: 9090,
    healthPath: "/health",
    livePath: "/live",
  });
  assert.deepEqual(
    readStatusSettings(env({
      DYN_SYSTEM_PORT: "0",
      DYN_SYSTEM_HOST: "127.0.0.1",
      DYN_SYSTEM_HEALTH_PATH: "/ready",
      DYN_SYSTEM_LIVE_PATH: "/alive",
    })),
    { host: "127.0.0.1", port: 0, healthPath: "/ready", livePath: "/alive" },
  );
  assert.deepEqual([...STATUS_ENV_VARS].sort(), [
    "DYN_SYSTEM_HEALTH_PATH",
    "DYN_SYSTEM_HOST",
    "DYN_SYSTEM_LIVE_PATH",
    "DYN_SYSTEM_PORT",
  ]);
});

Deno.test("settings: invalid values name the variable", () => {
  assert.match(refused({ DYN_SYSTEM_PORT: "abc" }), /^DYN_SYSTEM_PORT: /);
  assert.match(refused({ DYN_SYSTEM_PORT: "70000" }), /^DYN_SYSTEM_PORT: /);
  assert.match(
    refused({ DYN_SYSTEM_PORT: "9090", DYN_SYSTEM_HEALTH_PATH: "health" }),
    /^DYN_SYSTEM_HEALTH_PATH: /,
  );
  assert.match(refused({ DYN_SYSTEM_PORT: "9090", DYN_SYSTEM_HOST: "a b" }), /^DYN_SYSTEM_HOST: /);
});

Deno.test("a probe path on the metrics route is refused before listening, naming the variable", async () => {
  const metrics = new Registry();
  const logger = createLogger({ sink: () => {} });
  for (
    const [key, name] of [["healthPath", "DYN_SYSTEM_HEALTH_PATH"], ["livePath", "DYN_SYSTEM_LIVE_PATH"]]
  ) {
    await assert.rejects(
      startStatusServer({ ...SETTINGS, [key]: "/metrics" }, () => READY, metrics, logger),
      (error: Error) => error instanceof ConfigError && error.message === `${name}: must not be /metrics`,
    );
  }
});
