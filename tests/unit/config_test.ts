import assert from "node:assert/strict";
import { loadConfig, loadConfigParsers } from "../../src/config/mod.ts";
import { DYN_NAMESPACE_MISSING } from "../../src/config/env.ts";
import { ConfigError } from "../../src/errors.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

// The entry point loads the YAML parser when the command line names --config; so do these tests.
await loadConfigParsers();

const env = (vars: Record<string, string>) => (name: string) => vars[name];
const BASE = { DYN_NAMESPACE: "prod-gp" };

function config(argv: string[], vars: Record<string, string> = BASE) {
  const result = loadConfig(argv, env(vars));
  assert.equal(result.kind, "config");
  return (result as { kind: "config"; config: ReturnType<typeof Object> })
    .config as import("../../src/config/mod.ts").Config;
}

function refused(argv: string[], vars: Record<string, string> = BASE): string {
  try {
    loadConfig(argv, env(vars));
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail("configuration was accepted");
}

Deno.test("defaults match the upstream service and the Dynamo runtime", () => {
  const c = config([]);
  assert.equal(c.dynNamespace, "prod-gp");
  assert.equal(c.podNamespace, "default");
  assert.equal(c.managedNamespaces, null);
  assert.equal(c.environment, "kubernetes");
  assert.equal(c.noOperation, false);
  assert.equal(c.runtime.discovery, "etcd");
  assert.deepEqual(c.runtime.etcd.endpoints, ["http://localhost:2379"]);
  assert.equal(c.runtime.etcd.leaseTtlSeconds, 30);
  assert.equal(c.runtime.fileKv.root, "/tmp/dynamo_store_kv");
  assert.equal(c.runtime.requestPlane, "tcp");
  assert.equal(c.runtime.tcp.port, 0);
  assert.equal(c.runtime.tcp.maxMessageSize, 32 * 1024 * 1024);
});

Deno.test("DYN_NAMESPACE is required, with upstream's message", () => {
  assert.equal(refused([], {}), DYN_NAMESPACE_MISSING);
  assert.equal(refused([], { DYN_NAMESPACE: "" }), DYN_NAMESPACE_MISSING);
});

Deno.test("--managed-namespaces takes several values after one flag, as argparse nargs='+'", () => {
  assert.deepEqual(config(["--managed-namespaces", "a", "b", "c", "--no-operation"]).managedNamespaces, [
    "a",
    "b",
    "c",
  ]);
  assert.deepEqual(config(["--no-operation", "--managed-namespaces", "x"]).managedNamespaces, ["x"]);
  assert.deepEqual(config(["--managed-namespaces=a", "b"]).managedNamespaces, ["a", "b"]);
  assert.deepEqual(config(["--managed-namespaces", "a", "--managed-namespaces", "b"]).managedNamespaces, [
    "a",
    "b",
  ]);
  assert.match(refused(["--managed-namespaces"]), /managed-namespaces/);
});

Deno.test("stray positional arguments are refused", () => {
  assert.match(refused(["extra"]), /unrecognized argument: extra/);
});

Deno.test("--environment accepts only kubernetes", () => {
  assert.equal(config(["--environment", "kubernetes"]).environment, "kubernetes");
  assert.match(refused(["--environment", "virtual"]), /--environment: invalid choice "virtual"/);
});

Deno.test("unknown flags are refused with the usage text", () => {
  assert.match(refused(["--max-gpus", "3"]), /Unknown option '--max-gpus'/);
});

Deno.test("--help is a result, not an error", () => {
  assert.deepEqual(loadConfig(["--help"], env({})), { kind: "help" });
});

Deno.test("runtime variables mean what they mean to the Dynamo runtime", () => {
  const c = config([], {
    ...BASE,
    POD_NAMESPACE: "prod",
    DYN_DISCOVERY_BACKEND: "file",
    DYN_FILE_KV: "/tmp/kv",
    ETCD_ENDPOINTS: "http://10.0.0.1:2379, http://10.0.0.2:2379",
    ETCD_LEASE_TTL: "5",
    DYN_TCP_RPC_HOST: "127.0.0.1",
    DYN_TCP_RPC_PORT: "45000",
    DYN_TCP_RPC_ADVERTISE_HOST: "10.1.2.3",
  });
  assert.equal(c.podNamespace, "prod");
  assert.equal(c.runtime.discovery, "file");
  assert.equal(c.runtime.fileKv.root, "/tmp/kv");
  assert.deepEqual(c.runtime.etcd.endpoints, ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]);
  assert.equal(c.runtime.etcd.leaseTtlSeconds, 5);
  assert.deepEqual(c.runtime.tcp, {
    host: "127.0.0.1",
    port: 45000,
    advertiseHost: "10.1.2.3",
    maxMessageSize: 32 << 20,
    maxConnections: 1024,
    idleTimeoutMs: 600_000,
    maxInFlight: 256,
    writeTimeoutMs: 10_000,
  });
  assert.equal(config([], { ...BASE, TMPDIR: "/var/tmp/" }).runtime.fileKv.root, "/var/tmp/dynamo_store_kv");
});

Deno.test("an invalid value names the variable and what was expected", () => {
  assert.match(
    refused([], { ...BASE, DYN_TCP_RPC_PORT: "70000" }),
    /DYN_TCP_RPC_PORT: DYN_TCP_RPC_PORT must be an integer between 0 and 65535/,
  );
  assert.match(
    refused([], { ...BASE, DYN_DISCOVERY_BACKEND: "zookeeper" }),
    /DYN_DISCOVERY_BACKEND must be "etcd", "file" or "kubernetes", got "zookeeper"/,
  );
  assert.match(
    refused([], { ...BASE, DYN_DISCOVERY_BACKEND: "mem" }),
    /DYN_DISCOVERY_BACKEND=mem is process-local/,
  );
  assert.match(
    refused([], { ...BASE, DYN_DISCOVERY_BACKEND: "kubernetes" }),
    /DYN_DISCOVERY_BACKEND=kubernetes needs the pod's identity: POD_NAME and POD_UID are not set/,
  );
  assert.match(
    refused([], { ...BASE, DYN_REQUEST_PLANE: "grpc" }),
    /DYN_REQUEST_PLANE must be "tcp" or "nats", got "grpc"/,
  );
  assert.match(
    refused([], { ...BASE, ETCD_ENDPOINTS: "localhost:2379" }),
    /ETCD_ENDPOINTS must be a comma list/,
  );
  assert.match(refused([], { DYN_NAMESPACE: "a.b" }), /DYN_NAMESPACE must not contain '\.'/);
});

Deno.test("request-plane limits: set, and refused one past each bound", () => {
  const tcp = config([], {
    ...BASE,
    DYN_TCP_MAX_CONNECTIONS: "1",
    DYN_TCP_IDLE_TIMEOUT_SECS: "0",
    DYN_TCP_MAX_INFLIGHT: "65535",
    DYN_TCP_WRITE_TIMEOUT_SECS: "3600",
  }).runtime.tcp;
  assert.deepEqual(
    [tcp.maxConnections, tcp.idleTimeoutMs, tcp.maxInFlight, tcp.writeTimeoutMs],
    [1, 0, 65535, 3_600_000],
  );
  assert.equal(
    config([], { ...BASE, DYN_TCP_IDLE_TIMEOUT_SECS: "86400" }).runtime.tcp.idleTimeoutMs,
    86_400_000,
  );
  for (
    const [name, value, range] of [
      ["DYN_TCP_MAX_CONNECTIONS", "0", "1 and 65535"],
      ["DYN_TCP_MAX_CONNECTIONS", "65536", "1 and 65535"],
      ["DYN_TCP_IDLE_TIMEOUT_SECS", "86401", "0 and 86400"],
      ["DYN_TCP_MAX_INFLIGHT", "0", "1 and 65535"],
      ["DYN_TCP_WRITE_TIMEOUT_SECS", "0", "1 and 3600"],
      ["DYN_TCP_WRITE_TIMEOUT_SECS", "3601", "1 and 3600"],
      ["DYN_TCP_WRITE_TIMEOUT_SECS", "1.5", "1 and 3600"],
    ]
  ) {
    assert.match(
      refused([], { ...BASE, [name]: value }),
      new RegExp(`${name}: ${name} must be an integer between ${range}`),
    );
  }
});

Deno.test("budget flags: defaults off, integers >= -1, TTL > 0", () => {
  assert.deepEqual(config([]).budget, { maxTotalGpus: -1, minTotalGpus: -1, intentCacheTtlSeconds: 360 });
  assert.deepEqual(
    config(["--max-total-gpus", "16", "--min-total-gpus", "4", "--intent-cache-ttl-seconds", "30.5"]).budget,
    { maxTotalGpus: 16, minTotalGpus: 4, intentCacheTtlSeconds: 30.5 },
  );
  assert.match(refused(["--max-total-gpus", "-2"]), /--max-total-gpus expects an integer >= -1/);
  assert.equal(config(["--max-total-gpus", "-1", "--min-total-gpus", "0"]).budget.maxTotalGpus, -1);
  assert.match(refused(["--min-total-gpus", "1.5"]), /--min-total-gpus expects an integer >= -1/);
  assert.match(
    refused(["--intent-cache-ttl-seconds", "0"]),
    /--intent-cache-ttl-seconds expects a number of seconds > 0/,
  );
});

Deno.test("min > max is refused at start with upstream's message; min == max is valid", () => {
  assert.equal(
    refused(["--max-total-gpus", "4", "--min-total-gpus", "8"]),
    "min_total_gpus (8) exceeds max_total_gpus (4): no total GPU count satisfies this band",
  );
  assert.equal(config(["--max-total-gpus", "4", "--min-total-gpus", "4"]).budget.minTotalGpus, 4);
});

Deno.test("--config inline JSON, flags on the command line override it", () => {
  const inline = JSON.stringify({
    managed_namespaces: ["a", "b"],
    no_operation: true,
    max_total_gpus: 8,
    min_total_gpus: 2,
    intent_cache_ttl_seconds: 60,
  });
  const c = config(["--config", inline]);
  assert.deepEqual(c.managedNamespaces, ["a", "b"]);
  assert.equal(c.noOperation, true);
  assert.deepEqual(c.budget, { maxTotalGpus: 8, minTotalGpus: 2, intentCacheTtlSeconds: 60 });
  const overridden = config(["--config", inline, "--max-total-gpus", "12", "--managed-namespaces", "z"]);
  assert.equal(overridden.budget.maxTotalGpus, 12);
  assert.equal(overridden.budget.minTotalGpus, 2);
  assert.deepEqual(overridden.managedNamespaces, ["z"]);
});

Deno.test("--config files: .yaml, .yml and .json by suffix", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gp-config-" });
  await Deno.writeTextFile(`${dir}/gp.yaml`, "managed_namespaces: [x]\nmax_total_gpus: 10\n");
  await Deno.writeTextFile(`${dir}/gp.yml`, "min_total_gpus: 3\n");
  await Deno.writeTextFile(`${dir}/gp.json`, '{"intent_cache_ttl_seconds": 5}');
  assert.deepEqual(config(["--config", `${dir}/gp.yaml`]).managedNamespaces, ["x"]);
  assert.equal(config(["--config", `${dir}/gp.yaml`]).budget.maxTotalGpus, 10);
  assert.equal(config(["--config", `${dir}/gp.yml`]).budget.minTotalGpus, 3);
  assert.equal(config(["--config", `${dir}/gp.json`]).budget.intentCacheTtlSeconds, 5);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--config refuses unknown keys, bad values and values that are neither a file nor JSON", () => {
  assert.match(refused(["--config", '{"max_total_gpu": 3}']), /--config: unknown key\(s\): max_total_gpu/);
  assert.match(refused(["--config", '{"max_total_gpus": -5}']), /max_total_gpus must be >= -1/);
  assert.match(refused(["--config", '{"environment": "virtual"}']), /environment must be "kubernetes"/);
  assert.match(
    refused(["--config", '{"intent_cache_ttl_seconds": 0}']),
    /intent_cache_ttl_seconds must be > 0/,
  );
  assert.match(
    refused(["--config", "/nonexistent/gp.yaml"]),
    /--config value is neither a valid file path nor valid JSON/,
  );
  assert.match(
    refused(["--config", '{"max_total_gpus": 2, "min_total_gpus": 3}']),
    /min_total_gpus \(3\) exceeds max_total_gpus \(2\)/,
  );
});

Deno.test("our policies are off by default (upstream's answers)", () => {
  assert.deepEqual(config([]).policy, {
    callerBinding: "off",
    callerMap: {},
    managedK8sNamespaces: null,
    rejectStale: false,
    dryRun: false,
    recordEvents: false,
  });
});

Deno.test("policy flags and --config keys; flags win", () => {
  const c = config([
    "--caller-binding",
    "map",
    "--caller-map",
    "a=prod/llama,prod/qwen",
    "--caller-map",
    "b=dev/x",
    "--managed-k8s-namespaces",
    "prod",
    "dev",
    "--reject-stale",
    "--dry-run",
    "--record-events",
  ]);
  assert.deepEqual(c.policy, {
    callerBinding: "map",
    callerMap: { a: ["prod/llama", "prod/qwen"], b: ["dev/x"] },
    managedK8sNamespaces: ["prod", "dev"],
    rejectStale: true,
    dryRun: true,
    recordEvents: true,
  });
  const file = JSON.stringify({
    caller_binding: "map",
    caller_map: { a: ["prod/llama"] },
    managed_k8s_namespaces: ["prod"],
    reject_stale: true,
    dry_run: false,
    record_events: true,
  });
  const fromFile = config(["--config", file]).policy;
  assert.deepEqual(fromFile.callerMap, { a: ["prod/llama"] });
  assert.equal(fromFile.recordEvents, true);
  assert.deepEqual(config(["--config", file, "--caller-map", "z=p/q"]).policy.callerMap, { z: ["p/q"] });
});

Deno.test("policy options are validated at start with clear errors", () => {
  assert.equal(
    refused(["--caller-binding", "strict"]),
    '--caller-binding: invalid choice "strict" (choose from off, operator, map)',
  );
  assert.equal(
    refused(["--caller-binding", "map"]),
    "--caller-binding map needs --caller-map (or caller_map in --config)",
  );
  assert.equal(
    refused(["--caller-map", "a=prod/llama"]),
    "--caller-map is only used with --caller-binding map (caller binding is off)",
  );
  assert.match(
    refused(["--caller-binding", "map", "--caller-map", "a"]),
    /--caller-map expects CALLER=NAMESPACE\/DGD/,
  );
  assert.match(refused(["--caller-binding", "map", "--caller-map", "=p/q"]), /--caller-map expects/);
  assert.match(
    refused(["--caller-binding", "map", "--caller-map", "a=llama"]),
    /caller "a" must map to one or more "namespace\/dgd" names, got "llama"/,
  );
  assert.match(refused(["--managed-k8s-namespaces"]), /--managed-k8s-namespaces <value>' argument missing/);
  assert.match(
    refused(["--managed-k8s-namespaces", ""]),
    /--managed-k8s-namespaces expects one or more non-empty/,
  );
  assert.match(refused(["--dry-run", "--no-operation"]), /--dry-run and --no-operation exclude each other/);
  // Every policy works with a GPU budget (the budget arbitrates the targets the policy allows).
  assert.deepEqual(
    config([
      "--max-total-gpus",
      "8",
      "--min-total-gpus",
      "2",
      "--dry-run",
      "--record-events",
      "--reject-stale",
    ])
      .policy,
    {
      callerBinding: "off",
      callerMap: {},
      managedK8sNamespaces: null,
      rejectStale: true,
      dryRun: true,
      recordEvents: true,
    },
  );
  assert.match(
    refused(["--max-total-gpus", "8", "--dry-run", "--no-operation"]),
    /--dry-run and --no-operation exclude each other/,
  );
  assert.match(refused(["--config", '{"caller_binding": 1}']), /caller_binding must be a string/);
  assert.match(refused(["--config", '{"caller_map": {"a": "p/q"}}']), /caller_map values must be lists/);
  assert.match(refused(["--config", '{"reject_stale": "yes"}']), /reject_stale must be true or false/);
});
