/**
 * Acceptance of the skeleton: the real Python runtime (`ai-dynamo-runtime` 1.6.1) discovers our
 * service and calls both endpoints, with etcd and with file discovery, over the TCP request
 * plane and the response plane 1.6.1 asks for.
 */
import assert from "node:assert/strict";
import { runDriver } from "../support/python.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { type DiscoveryBackend, etcdBackend, fileBackend } from "../support/backends.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "gp-interop";
const SCALE = `${NS}.GlobalPlanner.scale_request`;
const HEALTH = `${NS}.GlobalPlanner.health`;
const REQUEST = {
  caller_namespace: "ns-a",
  graph_deployment_name: "llama",
  k8s_namespace: "prod",
  target_replicas: [
    { sub_component_type: "prefill", desired_replicas: 2 },
    { sub_component_type: "decode", component_name: "VllmDecodeWorker", desired_replicas: 3 },
  ],
  blocking: false,
  timestamp: 1730000000.5,
  predicted_load: { num_requests: 10, isl: null, osl: 128 },
};

async function call(backend: DiscoveryBackend, endpoint: string, args: string[]) {
  const result = await runDriver(
    "call_endpoint.py",
    ["--endpoint", endpoint, "--timeout", "20", ...args],
    backend.env,
  );
  assert.deepEqual(result.code, 0, `driver failed: ${result.stderr.slice(-2000)}`);
  return result.lines;
}

function item(lines: Record<string, unknown>[]): Record<string, unknown> {
  const items = lines.filter((l) => "item" in l);
  assert.deepEqual(items.length, 1, `expected exactly one item: ${JSON.stringify(lines)}`);
  return items[0].item as Record<string, unknown>;
}

for (const makeBackend of [etcdBackend, fileBackend]) {
  Deno.test({
    name: `real ai-dynamo-runtime 1.6.1 caller ↔ Global Planner (${
      makeBackend.name.replace(/Backend$/, "")
    } discovery)`,
    async fn(t) {
      const backend = await makeBackend();
      let service: ServiceProcess | undefined;
      try {
        service = await startService({
          args: ["--no-operation", "--managed-namespaces", "ns-a", "ns-b"],
          env: { DYN_NAMESPACE: NS, ...backend.env },
        });
        const instanceHex = service.ready.instance_id as string;

        await t.step("discovers our single instance under its exact 64-bit id", async () => {
          const result = await runDriver(
            "call_endpoint.py",
            ["--endpoint", HEALTH, "--payload", "{}"],
            backend.env,
          );
          const instances = result.lines.find((l) => "instances" in l)?.instances as number[];
          assert.equal(instances.length, 1);
          // Checked on the text: Python prints the exact id, JSON.parse would round it.
          const exact = BigInt(`0x${instanceHex}`).toString();
          assert.ok(result.stdout.includes(`{"instances": [${exact}]}`), result.stdout);
        });

        await t.step(
          "authorized request sent as model_dump_json() text → success (no-operation)",
          async () => {
            const lines = await call(backend, SCALE, ["--as-string", "--payload", JSON.stringify(REQUEST)]);
            assert.deepEqual(item(lines), {
              status: "success",
              message: "[no-operation] Scale request received and logged (not executed)",
              current_replicas: {},
            });
            const log = await service!.waitForLog((l) =>
              l.message === "scale request" && l.reason === "no_operation"
            );
            assert.deepEqual(log.caller, "ns-a");
            assert.deepEqual(log.dgd, "llama");
            assert.deepEqual(log.k8s_namespace, "prod");
            assert.deepEqual(log.targets, { prefill: 2, decode: 3 });
          },
        );

        await t.step("authorized request sent as an object → success", async () => {
          const lines = await call(backend, SCALE, [
            "--payload",
            JSON.stringify({ ...REQUEST, caller_namespace: "ns-b", extra: 1 }),
          ]);
          assert.deepEqual(item(lines).status, "success");
        });

        await t.step("unauthorized caller → error, not authorized, {}", async () => {
          const lines = await call(backend, SCALE, [
            "--as-string",
            "--payload",
            JSON.stringify({ ...REQUEST, caller_namespace: "ns-x" }),
          ]);
          assert.deepEqual(item(lines), {
            status: "error",
            message: "Namespace ns-x not authorized",
            current_replicas: {},
          });
        });

        await t.step("malformed request → Python exception, no hang", async () => {
          const lines = await call(backend, SCALE, [
            "--as-string",
            "--payload",
            '{"caller_namespace":"ns-a","target_replicas":[{"sub_component_type":"middle","desired_replicas":1}]}',
          ]);
          const failure = lines.find((l) => "exception" in l);
          assert.ok(failure, `expected an exception: ${JSON.stringify(lines)}`);
          assert.deepEqual(failure.exception, "ValueError");
          assert.match(String(failure.message), /^InvalidRequest: ValueError: Invalid request: /);
          // pydantic's text (compared with upstream's in tests/interop/pydantic_errors_test.ts).
          assert.match(
            String(failure.message),
            /validation errors for ScaleRequest\ngraph_deployment_name\n {2}Field required/,
          );
          assert.match(
            String(failure.message),
            /\ntarget_replicas\.0\.sub_component_type\n {2}Input should be 'prefill' or 'decode'/,
          );
        });

        await t.step("non-JSON text and a non-object payload → Python exception", async () => {
          for (const args of [["--raw-text", "not json at all"], ["--payload", "[1,2,3]"]]) {
            const lines = await call(backend, SCALE, args);
            const failure = lines.find((l) => "exception" in l);
            assert.ok(failure, `expected an exception for ${args}: ${JSON.stringify(lines)}`);
            assert.match(String(failure.message), /Invalid request: /);
          }
        });

        await t.step("health → status, component, namespace, managed namespaces", async () => {
          const lines = await call(backend, HEALTH, ["--payload", '{"text":"health"}']);
          assert.deepEqual(item(lines), {
            status: "healthy",
            component: "GlobalPlanner",
            namespace: NS,
            managed_namespaces: ["ns-a", "ns-b"],
          });
        });

        await t.step("SIGTERM → exit 0 and the registration is gone", async () => {
          assert.deepEqual(await service!.stop("SIGTERM"), 0);
          service = undefined;
          const lines = await runDriver("call_endpoint.py", [
            "--endpoint",
            HEALTH,
            "--wait-timeout",
            "2",
            "--timeout",
            "10",
          ], backend.env);
          assert.deepEqual(
            lines.code,
            2,
            `expected no instance after stop (instance ${instanceHex}): ${JSON.stringify(lines.lines)}`,
          );
        });
      } finally {
        await service?.stop("SIGKILL");
        await backend.cleanup();
      }
    },
  });
}
