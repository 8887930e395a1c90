/** The service as a process: exit codes and messages for configuration errors; the permission set. */
import assert from "node:assert/strict";
import { parse as parseJsonc } from "jsonc-parser";
import { ENV_VARS } from "../../src/config/env.ts";
import { VERSION } from "../../src/version.ts";
import { PROJECT_ROOT } from "../support/paths.ts";
import { serviceCommand } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

async function run(args: string[], env: Record<string, string>) {
  const out = await serviceCommand(args, env).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("missing DYN_NAMESPACE → one line naming it on stderr, exit 2, nothing registered", async () => {
  const kv = await Deno.makeTempDir({ prefix: "gp-kv-" });
  try {
    const { code, stderr } = await run(["--no-operation"], {
      DYN_DISCOVERY_BACKEND: "file",
      DYN_FILE_KV: kv,
    });
    assert.equal(code, 2);
    const lines = stderr.trim().split("\n").filter((l) => !l.includes("experimental feature"));
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0], /DYN_NAMESPACE environment variable is required but not set/);
    assert.deepEqual([...Deno.readDirSync(kv)], []);
  } finally {
    await Deno.remove(kv, { recursive: true });
  }
});

Deno.test("an invalid --environment or variable is a clear error with exit 2", async () => {
  const bad = await run(["--environment", "virtual"], { DYN_NAMESPACE: "n" });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--environment: invalid choice "virtual" \(choose from "kubernetes"\)/);
  const port = await run([], { DYN_NAMESPACE: "n", DYN_TCP_RPC_PORT: "http" });
  assert.equal(port.code, 2);
  assert.match(port.stderr, /DYN_TCP_RPC_PORT must be an integer between 0 and 65535/);
});

Deno.test("without --no-operation and without Kubernetes credentials → a clear error, exit 2", async () => {
  const { code, stderr } = await run([], {
    DYN_NAMESPACE: "n",
    DYN_DISCOVERY_BACKEND: "file",
    DYN_FILE_KV: "/tmp/gp-never",
  });
  assert.equal(code, 2);
  assert.match(stderr, /no Kubernetes credentials: KUBERNETES_SERVICE_HOST is not set/);
});

Deno.test("--help prints the usage and exits 0", async () => {
  const { code, stdout } = await run(["--help"], {});
  assert.equal(code, 0);
  assert.match(stdout, /--managed-namespaces NS \[NS \.\.\.\]/);
  assert.match(stdout, /--no-operation/);
});

Deno.test("an unreachable etcd fails start-up with exit 1 and says where it looked", async () => {
  const { code, stderr } = await run(["--no-operation"], {
    DYN_NAMESPACE: "n",
    ETCD_ENDPOINTS: "http://127.0.0.1:1",
    DYN_TCP_RPC_HOST: "127.0.0.1",
  });
  assert.equal(code, 1);
  assert.match(stderr, /cannot grant an etcd lease at http:\/\/127\.0\.0\.1:1/);
});

Deno.test("the service permission set lists exactly the variables the config reads, and no blanket grants", async () => {
  const config = parseJsonc(await Deno.readTextFile(`${PROJECT_ROOT}/deno.json`));
  const service = config.permissions.service;
  assert.deepEqual([...service.env.allow].sort(), [...ENV_VARS].sort());
  // Not read by us: npm:yaml's debug switches, read as unset (tests/process/start_paths_test.ts).
  assert.deepEqual([...service.env.ignore].sort(), ["LOG_STREAM", "LOG_TOKENS"]);
  assert.ok(Array.isArray(service.read) && Array.isArray(service.write), "read/write must be path lists");
  assert.ok(!("all" in service) && !("run" in service) && !("ffi" in service));
  for (const task of ["start", "compile"]) assert.match(config.tasks[task], /-P=service/);
  assert.equal(config.version, VERSION, "src/version.ts must match deno.json");
  assert.doesNotMatch(JSON.stringify(config.tasks), /(-A\b|--allow-all)/);
});

Deno.test("kubernetes discovery without POD_UID (or with a name no CR can have) → one line naming it, exit 2", async () => {
  const missing = await run(["--no-operation"], {
    DYN_NAMESPACE: "n",
    DYN_DISCOVERY_BACKEND: "kubernetes",
    POD_NAME: "gp-0",
  });
  assert.equal(missing.code, 2);
  const lines = missing.stderr.trim().split("\n").filter((l) => !l.includes("experimental feature"));
  assert.deepEqual(lines, [
    "global-planner: DYN_DISCOVERY_BACKEND=kubernetes needs the pod's identity: POD_UID is not set " +
    "(nor /etc/podinfo/pod_uid); set them from the downward API (metadata.name, metadata.uid)",
  ]);
  const badName = await run(["--no-operation"], {
    DYN_NAMESPACE: "n",
    DYN_DISCOVERY_BACKEND: "kubernetes",
    POD_NAME: "GP_0",
    POD_UID: "u",
  });
  assert.equal(badName.code, 2);
  assert.match(
    badName.stderr,
    /DynamoWorkerMetadata name "GP_0" \(from POD_NAME\) is not a valid Kubernetes object name/,
  );
});

Deno.test("kubernetes discovery with --no-operation still needs Kubernetes credentials → clear error, exit 2", async () => {
  const { code, stderr } = await run(["--no-operation"], {
    DYN_NAMESPACE: "n",
    DYN_DISCOVERY_BACKEND: "kubernetes",
    POD_NAME: "gp-0",
    POD_UID: "u",
  });
  assert.equal(code, 2);
  assert.match(
    stderr,
    /DYN_DISCOVERY_BACKEND=kubernetes publishes through the Kubernetes API: no Kubernetes credentials: KUBERNETES_SERVICE_HOST is not set \(not in a cluster\) and KUBECONFIG names no file"/,
  );
});
