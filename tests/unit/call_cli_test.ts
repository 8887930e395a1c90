/**
 * `global-planner call`: flags, the ScaleRequest it builds, environment, record parsing, how
 * failures are rendered (as a 1.6.1 caller renders them), and the wire against a hand-written
 * server on loopback for the failure shapes a real server does not produce on demand.
 */
import assert from "node:assert/strict";
import { buildScaleRequest, CALL_ENV_VARS, exitCodeFor, parseCallArgs, runCall } from "../../src/cli/call.ts";
import { readCallEnv } from "../../src/client/env.ts";
import { renderAck, renderErrorItem } from "../../src/client/error_text.ts";
import { decodeFileName } from "../../src/client/lookup.ts";
import { parseInstanceRecord, requestTarget } from "../../src/client/records.ts";
import { readEnv } from "../../src/config/env.ts";
import { ConfigError } from "../../src/errors.ts";
import { ByteReader } from "../../src/runtime/codec/byte_reader.ts";
import { decodeTwoPart, encodeTwoPart } from "../../src/runtime/codec/two_part.ts";
import { encodeFileName } from "../../src/runtime/discovery/file.ts";
import { writeAll } from "../../src/runtime/net.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("flags: --health, --request, scale flags and their defaults", () => {
  assert.deepEqual(parseCallArgs(["--health"]), {
    kind: "call",
    namespace: undefined,
    endpoint: "health",
    payload: { text: "health" },
    timeoutMs: 60_000,
  });
  const request = parseCallArgs(["--namespace", "gp", "--timeout", "2.5", "--request", '{ "a": [1, 2] }']);
  assert.deepEqual(request, {
    kind: "call",
    namespace: "gp",
    endpoint: "scale_request",
    payload: '{"a":[1,2]}', // compact JSON text, as model_dump_json()
    timeoutMs: 2500,
  });
  const scale = parseCallArgs([
    "--prefill",
    "2",
    "--decode",
    "3",
    "--dgd",
    "llama",
    "--k8s-namespace",
    "prod",
  ]);
  assert.equal(scale.kind, "call");
  if (scale.kind !== "call") return;
  const sent = JSON.parse(scale.payload as string);
  assert.equal(sent.caller_namespace, "prod-llama");
  assert.equal(sent.blocking, false);
  assert.deepEqual(sent.target_replicas.map((t: { desired_replicas: number }) => t.desired_replicas), [2, 3]);
  const decodeOnly = parseCallArgs([
    "--decode=0",
    "--dgd=d",
    "--k8s-namespace=k",
    "--caller-namespace=ns-a",
    "--blocking",
  ]);
  if (decodeOnly.kind !== "call") throw new Error("expected a call");
  const body = JSON.parse(decodeOnly.payload as string);
  assert.equal(body.caller_namespace, "ns-a");
  assert.equal(body.blocking, true);
  assert.deepEqual(body.target_replicas, [{
    sub_component_type: "decode",
    component_name: null,
    desired_replicas: 0,
  }]);
  assert.deepEqual(parseCallArgs(["-h"]), { kind: "help" });
});

Deno.test("flags: misuse is a ConfigError naming the problem", () => {
  const cases: [string[], RegExp][] = [
    [[], /say what to send/],
    [["--health", "--request", "{}"], /--health, --request cannot be combined/],
    [["--request", "{}", "--prefill", "1"], /--request, --prefill\/--decode cannot be combined/],
    [["--dgd", "d", "--k8s-namespace", "k"], /give --prefill N and\/or --decode M/],
    [["--prefill=-1", "--dgd", "d", "--k8s-namespace", "k"], /--prefill must be a non-negative integer/],
    [["--prefill", "-1", "--dgd", "d", "--k8s-namespace", "k"], /argument is ambiguous/],
    [["--prefill", "1.5", "--dgd", "d", "--k8s-namespace", "k"], /--prefill must be a non-negative integer/],
    [["--prefill", "1", "--k8s-namespace", "k"], /--dgd is required/],
    [["--prefill", "1", "--dgd", "d"], /--k8s-namespace is required/],
    [["--request", "not json"], /--request is not JSON/],
    [["--request", "[1]"], /must be a JSON object/],
    [["--health", "--timeout", "0"], /--timeout must be a number of seconds/],
    [["--health", "--timeout", "soon"], /--timeout must be a number of seconds/],
    [["--health", "--bogus"], /Unknown option '--bogus'/],
    [["--health", "extra"], /positional argument/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(
      () => parseCallArgs(argv),
      (e) => e instanceof ConfigError && message.test(e.message),
      argv.join(" "),
    );
  }
});

Deno.test("the built ScaleRequest is what upstream's planner sends (model_dump_json field order)", () => {
  const request = buildScaleRequest(
    { prefill: 2, decode: 3, dgd: "d1", k8sNamespace: "k1", callerNamespace: "ns-a", blocking: false },
    1795750194728.25,
  );
  assert.equal(
    JSON.stringify(request),
    '{"caller_namespace":"ns-a","graph_deployment_name":"d1","k8s_namespace":"k1","target_replicas":[' +
      '{"sub_component_type":"prefill","component_name":null,"desired_replicas":2},' +
      '{"sub_component_type":"decode","component_name":null,"desired_replicas":3}],' +
      '"blocking":false,"timestamp":1795750194.72825,"predicted_load":null}',
  );
});

Deno.test("error items render as 1.6.1 callers render them", () => {
  const full = {
    event: "error",
    comment: ["ignored when error is present"],
    error: {
      error_type: { Backend: "InvalidArgument" },
      class: "InvalidRequest",
      reason: "backend.invalid_argument",
      message: "ValueError: Invalid request: x",
      diagnostic: "ValueError: Invalid request: x",
    },
  };
  const rows: [Record<string, unknown>, string][] = [
    [full, "InvalidRequest: ValueError: Invalid request: x"],
    [
      { error: { error_type: { Backend: "InvalidArgument" }, message: "ValueError: m" } },
      "InvalidRequest: ValueError: m",
    ],
    [{ error: { error_type: "InvalidArgument", message: "m3" } }, "InvalidRequest: m3"],
    [{ error: { class: "InvalidRequest", message: "m9" } }, "InvalidRequest: m9"],
    [{ error: { message: "m4" } }, "Internal: m4"],
    [{ error: { error_type: "Unknown", message: "m" } }, "Internal: m"],
    [{ event: "error", comment: ["Invalid request: c"] }, "Internal: Invalid request: c"],
    [{ event: "error", comment: ["c1", "c2"] }, "Internal: c1, c2"],
    [{ event: "error" }, "Internal: unknown error"],
  ];
  for (const [item, text] of rows) assert.equal(renderErrorItem(item), text);
  assert.equal(renderAck("Server overloaded: fake", "a:1"), "CapacityExhausted: Server overloaded: fake");
  assert.equal(renderAck("Server unavailable: fake", "a:1"), "Unavailable: Server unavailable: fake");
  assert.match(
    renderAck("Unknown endpoint: p", "127.0.0.1:9"),
    /request refused by 127\.0\.0\.1:9: Unknown endpoint: p/,
  );
});

Deno.test("exit codes: success/healthy 0; error, rejected, error items and silence 1", () => {
  const ok = { status: "success", message: "m", current_replicas: {} };
  assert.deepEqual(exitCodeFor("scale_request", { items: [ok] }), { code: 0 });
  assert.deepEqual(exitCodeFor("scale_request", { items: [{ ...ok, status: "scaling" }] }), { code: 0 });
  assert.deepEqual(
    exitCodeFor("scale_request", { items: [{ ...ok, status: "rejected", message: "not ready" }] }),
    {
      code: 1,
      problem: "rejected: not ready",
    },
  );
  assert.equal(exitCodeFor("scale_request", { items: [{ ...ok, status: "error" }] }).code, 1);
  assert.equal(exitCodeFor("scale_request", { items: [], error: "Internal: x" }).code, 1);
  assert.equal(exitCodeFor("scale_request", { items: [] }).code, 1);
  assert.equal(exitCodeFor("health", { items: [{ status: "healthy" }] }).code, 0);
  assert.equal(exitCodeFor("health", { items: [{ status: "unhealthy" }] }).code, 1);
});

Deno.test("records: full-range u64 ids, codec, transport split; file names decode", () => {
  const text = '{"type":"Endpoint","component":"Echo","endpoint":"gen","namespace":"t",' +
    '"instance_id":14722534171404504140,"transport":{"tcp":"127.0.0.1:45785/cc50f2d3581d8c4c/t/Echo/gen"},' +
    '"device_type":"cuda","request_plane_codec":"msgpack"}';
  const record = parseInstanceRecord(text, "test")!;
  assert.equal(record.instanceId, 14722534171404504140n);
  assert.equal(record.codec, "msgpack");
  assert.deepEqual(requestTarget(record), {
    hostname: "127.0.0.1",
    port: 45785,
    path: "cc50f2d3581d8c4c/t/Echo/gen",
  });
  const v6 = parseInstanceRecord(
    '{"component":"C","endpoint":"e","namespace":"n","instance_id":1,"transport":{"tcp":"[::1]:9/1/e"}}',
    "test",
  )!;
  assert.equal(v6.codec, undefined);
  assert.deepEqual(requestTarget(v6), { hostname: "::1", port: 9, path: "1/e" });
  assert.equal(
    parseInstanceRecord(
      '{"type":"Endpoint","component":"C","endpoint":"e","namespace":"n","instance_id":1,"transport":{"nats":"x"}}',
      "t",
    ),
    null,
  );
  const onNats = parseInstanceRecord(
    '{"type":"Endpoint","component":"C","endpoint":"e","namespace":"n","instance_id":1,' +
      '"transport":{"nats_tcp":"n_C.e-1"}}',
    "t",
  )!;
  assert.deepEqual([onNats.nats, onNats.tcp], ["n_C.e-1", undefined]);
  assert.throws(() => requestTarget(onNats), /unusable TCP transport/);
  assert.throws(() => parseInstanceRecord('{"transport":{"tcp":"a"},"instance_id":-1}', "t"), /instance_id/);
  const key = "my-ns_1/Global_Planner/scale_request/432eb9f37de84b81";
  assert.equal(decodeFileName(encodeFileName(key)), key);
  assert.equal(decodeFileName("bad%zz"), null);
});

Deno.test("env: --namespace replaces DYN_NAMESPACE; runtime settings are the service's", () => {
  const vars: Record<string, string> = {
    DYN_DISCOVERY_BACKEND: "file",
    DYN_FILE_KV: "/tmp/kv",
    DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1",
    DYN_TCP_RESPONSE_STREAM_PORT: "4567",
  };
  const env = readCallEnv((n) => vars[n], "gp");
  assert.equal(env.namespace, "gp");
  assert.deepEqual(
    env.runtime,
    readEnv((n) => ({ ...vars, DYN_NAMESPACE: "gp" } as Record<string, string>)[n]).runtime,
  );
  assert.deepEqual(env.responseStream, { host: "127.0.0.1", port: 4567 });
  assert.equal(
    readCallEnv((n) => ({ DYN_NAMESPACE: "from-env" } as Record<string, string>)[n]).namespace,
    "from-env",
  );
  assert.deepEqual(readCallEnv(() => undefined, "gp").responseStream, { host: undefined, port: 0 });
  assert.throws(() => readCallEnv(() => undefined), /pass --namespace NS or set DYN_NAMESPACE/);
  assert.throws(() => readCallEnv(() => undefined, "a.b"), /--namespace must not contain/);
  // The NATS plane: the service's NATS settings, read from the same variables.
  const onNats = readCallEnv(
    (n) => ({ DYN_REQUEST_PLANE: "nats", NATS_SERVER: "nats://127.0.0.1:4333" } as Record<string, string>)[n],
    "gp",
  );
  assert.equal(onNats.runtime.requestPlane, "nats");
  assert.deepEqual(onNats.runtime.nats?.servers, ["127.0.0.1:4333"]);
  assert.throws(
    () => readCallEnv((n) => (n === "DYN_TCP_RESPONSE_STREAM_PORT" ? "70000" : undefined), "gp"),
    /DYN_TCP_RESPONSE_STREAM_PORT/,
  );
  assert.throws(
    () => readCallEnv((n) => (n === "DYN_DISCOVERY_BACKEND" ? "zk" : undefined), "gp"),
    /DYN_DISCOVERY_BACKEND/,
  );
  assert.deepEqual([...CALL_ENV_VARS], ["DYN_TCP_RESPONSE_STREAM_HOST", "DYN_TCP_RESPONSE_STREAM_PORT"]);
});

// ---- wire, against a hand-written server (file discovery, loopback) ----

type Mode = "ack" | "prologue" | "close" | "silent" | "answer";
interface Seen {
  path: string;
  headers: Record<string, string>;
  control: Record<string, unknown>;
  payload: unknown;
}

const _frame = (header?: string, data?: string) =>
  encodeTwoPart(
    header ? new TextEncoder().encode(header) : undefined,
    data ? new TextEncoder().encode(data) : undefined,
  );

/** Registers `ns.GlobalPlanner.health` in `kv` and answers one request the way `mode` says. */
async function _rawServer(kv: string, mode: Mode) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = `${kv}/v1/instances`;
  await Deno.mkdir(dir, { recursive: true });
  const hex = "f00000000000000a"; // id above 2^63
  const record = `{"type":"Endpoint","component":"GlobalPlanner","endpoint":"health","namespace":"ns",` +
    `"instance_id":${
      BigInt("0x" + hex)
    },"transport":{"tcp":"127.0.0.1:${listener.addr.port}/${hex}/ns/GlobalPlanner/health"}}`;
  await Deno.writeTextFile(`${dir}/${encodeFileName(`ns/GlobalPlanner/health/${hex}`)}`, record);
  await Deno.writeTextFile(`${dir}/.tmp_0123456789abcdef`, "{half"); // a write in progress: ignored
  const seen = (async (): Promise<Seen> => {
    const conn = await listener.accept();
    const reader = new ByteReader(conn);
    const u16 = async () => new DataView((await reader.readExactOrThrow(2)).slice().buffer).getUint16(0);
    const text = async (n: number) => new TextDecoder().decode(await reader.readExactOrThrow(n));
    const path = await text(await u16());
    const headers = JSON.parse(await text(await u16()));
    const bodyLength = new DataView((await reader.readExactOrThrow(4)).slice().buffer).getUint32(0);
    const body = decodeTwoPart((await reader.readExactOrThrow(bodyLength)).slice());
    const control = JSON.parse(new TextDecoder().decode(body.header));
    const payload = JSON.parse(new TextDecoder().decode(body.data));
    if (mode === "ack") await writeAll(conn, new Uint8Array([0, 0, 0, 4, 110, 111, 112, 101])); // "nope"
    if (mode !== "ack" && mode !== "silent") {
      await writeAll(conn, new Uint8Array(4));
      const info = JSON.parse((control.connection_info as { info: string }).info);
      const [host, port] = [
        info.address.slice(0, info.address.lastIndexOf(":")),
        info.address.split(":").pop(),
      ];
      const home = await Deno.connect({ hostname: host, port: Number(port) });
      await writeAll(home, _frame(JSON.stringify({ subject: info.subject, stream_type: "response" })));
      await writeAll(
        home,
        _frame(mode === "prologue" ? '{"error":"fake prologue failure"}' : '{"error":null}'),
      );
      if (mode === "answer") {
        await writeAll(home, _frame(undefined, '{"data":{"comment":["progress"]},"complete_final":false}'));
        await writeAll(
          home,
          _frame(undefined, '{"data":{"data":{"status":"healthy"}},"complete_final":false}'),
        );
        await writeAll(home, _frame(undefined, '{"complete_final":true}'));
        await writeAll(home, _frame('"sentinel"'));
      }
      home.close();
    }
    // Held open until the caller drops it (answered, refused, or given up at its deadline); a
    // caller that never gives up sees the connection close after 10 s and fails on the message.
    const drain = new Uint8Array(64);
    const dropped = (async () => {
      while ((await conn.read(drain)) !== null) { /* nothing more is expected */ }
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([dropped, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
    clearTimeout(timer);
    conn.close();
    await dropped.catch(() => {});
    return { path, headers, control, payload };
  })();
  return { seen, close: () => listener.close() };
}

for (
  const [mode, code, expected] of [
    ["answer", 0, ""],
    ["ack", 1, "Unavailable: request refused by 127.0.0.1:"],
    ["prologue", 1, "Unavailable: Worker generate() failed before response stream: fake prologue failure"],
    ["close", 1, "Unavailable: Stream ended before generation completed"],
    ["silent", 1, "DeadlineExceeded: no complete response from ns.GlobalPlanner.health within 1 s"],
  ] as [Mode, number, string][]
) {
  Deno.test(`wire against a raw server: ${mode} → exit ${code}`, async () => {
    const kv = await Deno.makeTempDir({ prefix: "gp-call-kv-" });
    const server = await _rawServer(kv, mode);
    const out: string[] = [];
    const err: string[] = [];
    const vars: Record<string, string> = {
      DYN_DISCOVERY_BACKEND: "file",
      DYN_FILE_KV: kv,
      DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1",
    };
    try {
      const exit = await runCall(
        ["--namespace", "ns", "--health", "--timeout", "1"],
        (n) => vars[n],
        (l) => out.push(l),
        (l) => err.push(l),
      );
      assert.equal(exit, code, err.join("\n"));
      if (mode === "answer") {
        assert.deepEqual(out, ['{"status":"healthy"}']); // the comment-only item is not an answer
        assert.deepEqual(err, []);
      } else {
        assert.deepEqual(out, []);
        assert.ok(err.join("\n").includes(expected), err.join("\n"));
      }
      const seen = await server.seen;
      // What 1.6.1 sends: the path after the first `/`, three headers, its control header.
      assert.equal(seen.path, "f00000000000000a/ns/GlobalPlanner/health");
      assert.deepEqual(Object.keys(seen.headers).sort(), [
        "request-id",
        "x-endpoint-path",
        "x-frontend-send-ts-ns",
      ]);
      assert.equal(seen.headers["x-endpoint-path"], seen.path);
      assert.equal(seen.headers["request-id"], seen.control.id);
      assert.deepEqual(Object.keys(seen.control), [
        "id",
        "request_type",
        "response_type",
        "payload_codec",
        "connection_info",
      ]);
      assert.equal(seen.control.payload_codec, "json"); // the record names no codec
      assert.deepEqual(seen.payload, { text: "health" });
    } finally {
      server.close();
      await Deno.remove(kv, { recursive: true });
    }
  });
}
