/**
 * `global-planner call` (run in-process through `runCall`) against (a) our service started as
 * users start it, with etcd and with file discovery, and (b) servers on the real Python runtime
 * (`ai-dynamo-runtime` 1.6.1), which advertise `request_plane_codec: "msgpack"`: proof that the
 * client speaks 1.6.1's protocol and not only our own.
 */
import assert from "node:assert/strict";
import { runCall } from "../../src/cli/call.ts";
import { PY_DRIVERS, VENV_PYTHON } from "../support/paths.ts";
import { waitFor } from "../support/ports.ts";
import { assertVenv } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { etcdBackend, fileBackend } from "../support/backends.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "gp-call";
const SCALE_FLAGS = ["--prefill", "2", "--decode", "3", "--dgd", "llama", "--k8s-namespace", "prod"];

interface Outcome {
  code: number;
  out: unknown[];
  err: string;
}

/** Runs `call` in-process with captured output; the env is the caller's whole environment. */
async function _call(env: Record<string, string>, args: string[]): Promise<Outcome> {
  const out: string[] = [];
  const err: string[] = [];
  const vars: Record<string, string> = { DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1", ...env };
  const code = await runCall(args, (n) => vars[n], (l) => out.push(l), (l) => err.push(l));
  return { code, out: out.map((l) => JSON.parse(l)), err: err.join("\n") };
}

for (const makeBackend of [etcdBackend, fileBackend]) {
  Deno.test({
    name: `call → our Global Planner (${makeBackend.name.replace(/Backend$/, "")} discovery)`,
    async fn(t) {
      const backend = await makeBackend();
      let service: ServiceProcess | undefined;
      try {
        service = await startService({
          // `prod-llama`: the caller namespace `call` derives from --k8s-namespace and --dgd.
          args: ["--no-operation", "--managed-namespaces", "prod-llama", "ns-a"],
          env: { DYN_NAMESPACE: NS, ...backend.env },
        });

        await t.step("--health → the health object, exit 0 (namespace from DYN_NAMESPACE)", async () => {
          const r = await _call({ DYN_NAMESPACE: NS, ...backend.env }, ["--health"]);
          assert.equal(r.code, 0, r.err);
          assert.deepEqual(r.out, [{
            status: "healthy",
            component: "GlobalPlanner",
            namespace: NS,
            managed_namespaces: ["prod-llama", "ns-a"],
          }]);
        });

        await t.step("no-op scale from flags → success JSON, exit 0", async () => {
          const r = await _call(backend.env, ["--namespace", NS, ...SCALE_FLAGS]);
          assert.equal(r.code, 0, r.err);
          assert.deepEqual(r.out, [{
            status: "success",
            message: "[no-operation] Scale request received and logged (not executed)",
            current_replicas: {},
          }]);
          const log = await service!.waitForLog((l) =>
            l.message === "scale request" && l.caller === "prod-llama"
          );
          assert.deepEqual(log.targets, { prefill: 2, decode: 3 });
        });

        await t.step("unauthorized caller → error JSON on stdout, message on stderr, exit 1", async () => {
          const r = await _call(backend.env, [
            "--namespace",
            NS,
            ...SCALE_FLAGS,
            "--caller-namespace",
            "ns-x",
          ]);
          assert.equal(r.code, 1);
          assert.deepEqual(r.out, [{
            status: "error",
            message: "Namespace ns-x not authorized",
            current_replicas: {},
          }]);
          assert.match(r.err, /error: Namespace ns-x not authorized/);
        });

        await t.step("malformed --request → the error item as a Python planner would raise it", async () => {
          const r = await _call(backend.env, ["--namespace", NS, "--request", '{"caller_namespace":"ns-a"}']);
          assert.equal(r.code, 1);
          assert.deepEqual(r.out, []);
          assert.match(r.err, /InvalidRequest: ValueError: Invalid request: /);
        });

        await t.step("a namespace nobody serves → not found, naming where it looked", async () => {
          const r = await _call(backend.env, ["--namespace", "nobody", "--health"]);
          assert.equal(r.code, 1);
          assert.match(r.err, /no instance of nobody\.GlobalPlanner\.health found \(looked in /);
        });
      } finally {
        await service?.stop();
        await backend.cleanup();
      }
    },
  });
}

// ---- (b) the real Python runtime ----

interface PyServer {
  stop(): Promise<void>;
}

/** Starts a tests/interop/py server and waits until its records are in the file backend. */
async function _startPython(
  script: string,
  args: string[],
  env: Record<string, string>,
  endpoints: string[],
): Promise<PyServer> {
  await assertVenv();
  const child = new Deno.Command(VENV_PYTHON, {
    args: [`${PY_DRIVERS}/${script}`, ...args],
    env: { DYN_TCP_RPC_HOST: "127.0.0.1", DYN_REQUEST_PLANE: "tcp", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Response(child.stdout).text();
  const stderr = new Response(child.stderr).text();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
    }, 5000);
    await child.status;
    clearTimeout(killer);
    await stdout;
    await stderr;
  };
  try {
    // Registration is visible once every endpoint has its file (names are percent-encoded).
    const dir = `${env.DYN_FILE_KV}/v1/instances`;
    await waitFor(
      async () => {
        try {
          const names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => decodeURIComponent(e.name));
          return endpoints.every((ep) => names.some((n) => n.startsWith(`${ep.replaceAll(".", "/")}/`)));
        } catch {
          return false;
        }
      },
      `${script} registering ${endpoints.join(", ")}`,
      30_000,
    );
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${await stderr}`);
  }
  return { stop };
}

async function _pythonRecords(kv: string): Promise<string[]> {
  const dir = `${kv}/v1/instances`;
  const names = (await Array.fromAsync(Deno.readDir(dir))).filter((e) => !e.name.startsWith("."));
  return await Promise.all(names.map((e) => Deno.readTextFile(`${dir}/${e.name}`)));
}

/** Each server gets its own discovery directory: a stopped 1.6.1 server's files may linger. */
async function _withPython(
  script: string,
  args: string[],
  endpoints: string[],
  fn: (env: Record<string, string>, kv: string) => Promise<void>,
) {
  const kv = await Deno.makeTempDir({ prefix: "gp-call-py-" });
  const env = { DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: kv };
  try {
    const server = await _startPython(script, args, { ...env, DYN_NAMESPACE: NS }, endpoints);
    try {
      await fn(env, kv);
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(kv, { recursive: true });
  }
}

const SCALE = `${NS}.GlobalPlanner.scale_request`;
const HEALTH = `${NS}.GlobalPlanner.health`;

Deno.test({
  name: "call → servers on the real ai-dynamo-runtime 1.6.1 (msgpack codec, file discovery)",
  async fn(t) {
    await t.step("echo server: the request arrives as a str, answers decode from msgpack", async () => {
      const args = ["--endpoint", SCALE, "--extra-endpoint", HEALTH, "--mode", "echo"];
      await _withPython("echo_server.py", args, [SCALE, HEALTH], async (env, kv) => {
        // The premise of this test: Python servers ask for msgpack.
        const records = await _pythonRecords(kv);
        assert.ok(records.every((r) => r.includes(`"request_plane_codec":"msgpack"`)), records.join("\n"));

        const h = await _call(env, ["--namespace", NS, "--health"]);
        assert.equal(h.code, 0, h.err);
        assert.deepEqual(h.out, [{ status: "healthy", got: { text: "health" } }]);

        const r = await _call(env, ["--namespace", NS, ...SCALE_FLAGS, "--blocking", "--timeout", "30"]);
        assert.equal(r.code, 0, r.err);
        const echoed = r.out[0] as { echo: string; type: string };
        assert.equal(echoed.type, "str"); // model_dump_json() text, not a dict
        const sent = JSON.parse(echoed.echo);
        assert.equal(sent.caller_namespace, "prod-llama");
        assert.equal(sent.blocking, true);
        assert.deepEqual(sent.target_replicas, [
          { sub_component_type: "prefill", component_name: null, desired_replicas: 2 },
          { sub_component_type: "decode", component_name: null, desired_replicas: 3 },
        ]);
      });
    });

    await t.step("a handler that raises → `InvalidRequest: ValueError: ...`, exit 1", async () => {
      await _withPython("echo_server.py", ["--endpoint", SCALE, "--mode", "raise"], [SCALE], async (env) => {
        const r = await _call(env, ["--namespace", NS, "--request", '{"a": 1}']);
        assert.equal(r.code, 1);
        assert.deepEqual(r.out, []);
        assert.equal(r.err, 'global-planner call: InvalidRequest: ValueError: boom: {"a":1}');
      });
    });

    await t.step(
      "upstream's ScaleRequest model on the Python side: rejected and unauthorized → exit 1",
      async () => {
        const args = ["--status", "rejected", "--managed-namespaces", "prod-llama"];
        await _withPython("fake_gp_server.py", args, [SCALE, HEALTH], async (env) => {
          const rejected = await _call(env, ["--namespace", NS, ...SCALE_FLAGS]);
          assert.equal(rejected.code, 1);
          assert.deepEqual(rejected.out, [{
            status: "rejected",
            message: "GPU budget breach: total 9 exceeds ceiling (8); no feasible pair packing",
            current_replicas: {},
          }]);
          assert.match(rejected.err, /rejected: GPU budget breach/);
          const denied = await _call(env, ["--namespace", NS, ...SCALE_FLAGS, "--caller-namespace", "ns-x"]);
          assert.equal(denied.code, 1);
          assert.deepEqual(denied.out, [{
            status: "error",
            message: "Namespace ns-x not authorized",
            current_replicas: {},
          }]);
          const h = await _call(env, ["--namespace", NS, "--health"]);
          assert.equal(h.code, 0, h.err);
          assert.deepEqual(h.out, [{
            status: "healthy",
            component: "GlobalPlanner",
            namespace: NS,
            managed_namespaces: ["prod-llama"],
          }]);
        });
      },
    );
  },
});
