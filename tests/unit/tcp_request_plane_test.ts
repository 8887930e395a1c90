import assert from "node:assert/strict";
import { createLogger } from "../../src/ops/log.ts";
import { ByteReader } from "../../src/runtime/codec/byte_reader.ts";
import { Dispatcher } from "../../src/runtime/dispatcher.ts";
import type { Endpoint } from "../../src/runtime/endpoint.ts";
import { responseOpener } from "../../src/runtime/host.ts";
import { frameBuffered, TcpRequestPlane } from "../../src/runtime/request_plane/tcp.ts";
import type { TcpSettings } from "../../src/config/env.ts";
import { acceptCallHome, readAcks, requestBody, requestFrame, writeAll } from "../support/fake_caller.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const logger = createLogger({ level: "error", sink: () => {} });
const HEX = "1f2e";
const openResponse = responseOpener(5_000);

function settings(overrides: Partial<TcpSettings> = {}): TcpSettings {
  return {
    host: "127.0.0.1",
    port: 0,
    maxMessageSize: 1 << 20,
    maxConnections: 64,
    idleTimeoutMs: 0,
    maxInFlight: 64,
    writeTimeoutMs: 5_000,
    ...overrides,
  };
}

async function withPlane(
  endpoints: Endpoint[],
  fn: (ctx: { port: number; callHome: Deno.TcpListener; callHomeAddress: string }) => Promise<void>,
  overrides: Partial<TcpSettings> = {},
  opener = openResponse,
) {
  const plane = TcpRequestPlane.listen(settings(overrides), logger);
  const dispatcher = new Dispatcher(endpoints, opener, logger);
  for (const e of endpoints) {
    plane.route(dispatcher, { namespace: "ns", component: "Comp", endpoint: e.name }, HEX);
  }
  plane.serve(dispatcher);
  const callHome = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await fn({
      port: Number(plane.address.split(":")[1]),
      callHome,
      callHomeAddress: `127.0.0.1:${callHome.addr.port}`,
    });
  } finally {
    callHome.close();
    await plane.close();
    await dispatcher.drain(1000);
  }
}

const echo: Endpoint = {
  name: "echo",
  async *handler(request) {
    yield { echo: request };
  },
};
const failing: Endpoint = {
  name: "fail",
  // deno-lint-ignore require-yield
  async *handler() {
    throw new Error("Invalid request: nope");
  },
};

Deno.test("advertises the 1.6.1 long path and routes it, the short form and the bare name", async () => {
  const plane = TcpRequestPlane.listen(settings({ maxMessageSize: 1024 }), logger);
  const dispatcher = new Dispatcher([echo], openResponse, logger);
  const transport = plane.route(dispatcher, { namespace: "ns", component: "Comp", endpoint: "echo" }, HEX);
  assert.equal(transport.tcp, `${plane.address}/1f2e/ns/Comp/echo`);
  for (const path of ["1f2e/ns/Comp/echo", "1f2e/echo", "echo"]) assert.equal(dispatcher.route(path), echo);
  for (const path of ["ffff/ns/Comp/echo", "1f2e/ns/Comp/other", "1f2e/ns/Comp"]) {
    assert.equal(dispatcher.route(path), undefined);
  }
  await plane.close();
});

Deno.test("one ACK per frame, in order, for pipelined frames; unknown paths keep the stream in sync", async () => {
  await withPlane([echo], async ({ port, callHome, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const frames = [
      requestFrame("1f2e/ns/Comp/echo", requestBody("r1", callHomeAddress, '"one"')),
      requestFrame("1f2e/ns/Comp/nope", requestBody("r2", callHomeAddress, '"two"')),
      requestFrame("echo", requestBody("r3", callHomeAddress, '{"three":3}')),
    ];
    await writeAll(conn, new Uint8Array(frames.flatMap((f) => [...f])));
    const acks = await readAcks(new ByteReader(conn), 3);
    assert.deepEqual(acks, ["", "Server unavailable: unknown endpoint 1f2e/ns/Comp/nope", ""]);
    const answers = await Promise.all([acceptCallHome(callHome), acceptCallHome(callHome)]);
    const data = answers.map((frames) => frames.find((f) => f.data && f.data.includes("echo"))?.data).sort();
    assert.deepEqual(data, [
      `{"data":{"data":{"echo":"one"}},"complete_final":false}`,
      `{"data":{"data":{"echo":{"three":3}}},"complete_final":false}`,
    ]);
    conn.close();
  });
});

Deno.test("call-home sequence: handshake, prologue, item, final, sentinel", async () => {
  await withPlane([echo], async ({ port, callHome, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, requestFrame("1f2e/ns/Comp/echo", requestBody("rid", callHomeAddress, '"hi"')));
    assert.deepEqual(await readAcks(new ByteReader(conn), 1), [""]);
    assert.deepEqual(await acceptCallHome(callHome), [
      { header: `{"subject":"subject-rid","stream_type":"response"}` },
      { header: `{"error":null}` },
      { data: `{"data":{"data":{"echo":"hi"}},"complete_final":false}` },
      { data: `{"complete_final":true}` },
      { header: `"sentinel"` },
    ]);
    conn.close();
  });
});

Deno.test("a handler failure becomes one error item followed by the final frame", async () => {
  await withPlane([failing], async ({ port, callHome, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, requestFrame("fail", requestBody("r", callHomeAddress, "{}")));
    await readAcks(new ByteReader(conn), 1);
    const frames = await acceptCallHome(callHome);
    const error = JSON.parse(frames[2].data!);
    assert.equal(error.data.event, "error");
    assert.equal(error.data.error.message, "ValueError: Invalid request: nope");
    assert.deepEqual(frames.slice(3), [{ data: `{"complete_final":true}` }, { header: `"sentinel"` }]);
    conn.close();
  });
});

Deno.test("a body the codec cannot decode is answered with an error item, never silence", async () => {
  await withPlane([echo], async ({ port, callHome, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, requestFrame("echo", requestBody("r", callHomeAddress, "{not json")));
    await writeAll(
      conn,
      requestFrame("echo", requestBody("s", callHomeAddress, "{}", { payload_codec: "cbor" })),
    );
    await readAcks(new ByteReader(conn), 2);
    for (const frames of await Promise.all([acceptCallHome(callHome), acceptCallHome(callHome)])) {
      const item = JSON.parse(frames[2].data!);
      assert.match(
        item.data.comment[0],
        /^Invalid request: (body is not valid json|unsupported payload_codec "cbor")/,
      );
    }
    conn.close();
  });
});

Deno.test("msgpack requests are answered in msgpack", async () => {
  const { MSGPACK_CODEC } = await import("../../src/runtime/codec/msgpack_codec.ts");
  const { encodeTwoPart } = await import("../../src/runtime/codec/two_part.ts");
  await withPlane([echo], async ({ port, callHome, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const json = new TextDecoder().decode(requestBody("m", callHomeAddress, "").subarray(24));
    const control = JSON.parse(json);
    control.payload_codec = "msgpack";
    const body = encodeTwoPart(
      new TextEncoder().encode(JSON.stringify(control)),
      MSGPACK_CODEC.encode({ a: 1 }),
    );
    await writeAll(conn, requestFrame("echo", body));
    await readAcks(new ByteReader(conn), 1);
    const frames = await acceptCallHome(callHome);
    conn.close();
    const data = frames.filter((f) => f.dataBytes).map((f) => MSGPACK_CODEC.decode(f.dataBytes!));
    assert.deepEqual(data, [{ data: { data: { echo: { a: 1 } } }, complete_final: false }, {
      complete_final: true,
    }]);
  });
});

Deno.test("a zero path length is an unknown endpoint, as in 1.6.1; the connection goes on", async () => {
  await withPlane([echo], async ({ port, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, new Uint8Array([0, 0, 0, 2, 0x7b, 0x7d, 0, 0, 0, 0]));
    await writeAll(conn, requestFrame("nope", requestBody("r", callHomeAddress, "{}")));
    assert.deepEqual(await readAcks(new ByteReader(conn), 2), [
      "Server unavailable: unknown endpoint ",
      "Server unavailable: unknown endpoint nope",
    ]);
    conn.close();
  });
});

Deno.test("a frame over DYN_TCP_MAX_MESSAGE_SIZE is refused before its body is read", async () => {
  await withPlane([echo], async ({ port, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const big = requestFrame("echo", requestBody("r", callHomeAddress, JSON.stringify("x".repeat(5000))));
    await writeAll(conn, big.subarray(0, 200)); // the header says 5000+ bytes; send only a part
    const reader = new ByteReader(conn);
    const [ack] = await readAcks(reader, 1);
    assert.equal(ack, `Read error: message too large: ${big.length} bytes (max: 4096 bytes)`);
    assert.equal(await reader.readExact(1), null);
    conn.close();
  }, { maxMessageSize: 4096 });
});

/** `true` once the server has closed `conn` (EOF or reset on read); `false` if not within 10 s. */
async function closedByServer(conn: Deno.Conn): Promise<boolean> {
  const buf = new Uint8Array(1024);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 10_000)));
  const closed = (async () => {
    try {
      while (true) if ((await conn.read(buf)) === null) return true;
    } catch {
      return true;
    }
  })();
  const result = await Promise.race([closed, deadline]);
  clearTimeout(timer);
  if (!result) conn.close(); // ends the pending read
  await closed;
  return result;
}

Deno.test("DYN_TCP_MAX_CONNECTIONS: the connection over the limit is closed at once; a freed slot is reused", async () => {
  await withPlane([echo], async ({ port, callHome, callHomeAddress }) => {
    const open: Deno.TcpConn[] = [];
    for (let i = 0; i < 2; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      // Served, so the plane has counted it before the next connect.
      await writeAll(conn, requestFrame("echo", requestBody(`c${i}`, callHomeAddress, '"x"')));
      assert.deepEqual(await readAcks(new ByteReader(conn), 1), [""]);
      await acceptCallHome(callHome);
      open.push(conn);
    }
    const third = await Deno.connect({ hostname: "127.0.0.1", port });
    assert.equal(await closedByServer(third), true);
    third.close();
    open.pop()!.close();
    // The freed slot is taken again once the plane has seen the close.
    const again = await retryUntilServed(port, callHome, callHomeAddress);
    again.close();
    open.forEach((c) => c.close());
  }, { maxConnections: 2 });
});

/** Connects until a connection is served (the plane learns of a client's close asynchronously). */
async function retryUntilServed(port: number, callHome: Deno.TcpListener, callHomeAddress: string) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, requestFrame("echo", requestBody(`r${attempt}`, callHomeAddress, '"x"')));
    const acks = await readAcks(new ByteReader(conn), 1).catch(() => null);
    if (acks) {
      assert.deepEqual(acks, [""]);
      await acceptCallHome(callHome);
      return conn;
    }
    conn.close();
  }
  throw new Error("no connection was served after the slot was freed");
}

Deno.test("DYN_TCP_IDLE_TIMEOUT_SECS: a connection without a complete frame is closed after the idle time", async () => {
  await withPlane([echo], async ({ port, callHome, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, requestFrame("echo", requestBody("r", callHomeAddress, '"x"')));
    assert.deepEqual(await readAcks(new ByteReader(conn), 1), [""]);
    await acceptCallHome(callHome);
    // Half a frame, then silence: a slow or dead peer is cut off too.
    await writeAll(conn, requestFrame("echo", requestBody("s", callHomeAddress, '"x"')).subarray(0, 10));
    assert.equal(await closedByServer(conn), true);
    conn.close();
  }, { idleTimeoutMs: 200 });
});

Deno.test("DYN_TCP_MAX_INFLIGHT: the frame over the limit is ACKed `Server overloaded:`; the limit itself is served", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const slow: Endpoint = {
    name: "slow",
    async *handler(request) {
      await gate;
      yield { echo: request };
    },
  };
  await withPlane([slow], async ({ port, callHome, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const reader = new ByteReader(conn);
    const streams = [];
    for (const id of ["a", "b"]) {
      await writeAll(conn, requestFrame("slow", requestBody(id, callHomeAddress, '"x"')));
      assert.deepEqual(await readAcks(reader, 1), [""]);
      streams.push(acceptCallHome(callHome));
    }
    await writeAll(conn, requestFrame("slow", requestBody("c", callHomeAddress, '"x"')));
    assert.deepEqual(await readAcks(reader, 1), ["Server overloaded: 2 requests in flight (limit 2)"]);
    release();
    for (const frames of await Promise.all(streams)) assert.equal(frames.at(-1)?.header, `"sentinel"`);
    // Answered, so no longer in flight: the next frame is taken again.
    await writeAll(conn, requestFrame("slow", requestBody("d", callHomeAddress, '"x"')));
    assert.deepEqual(await readAcks(reader, 1), [""]);
    assert.equal((await acceptCallHome(callHome)).at(-1)?.header, `"sentinel"`);
    conn.close();
  }, { maxInFlight: 2 });
});

Deno.test("DYN_TCP_WRITE_TIMEOUT_SECS: a caller that stops reading its response stream is cut off", async () => {
  const huge: Endpoint = {
    name: "huge",
    async *handler() {
      yield "y".repeat(16 << 20);
    },
  };
  const plane = TcpRequestPlane.listen(settings({ maxMessageSize: 1 << 20 }), logger);
  const dispatcher = new Dispatcher([huge], responseOpener(300), logger);
  plane.route(dispatcher, { namespace: "ns", component: "Comp", endpoint: "huge" }, HEX);
  plane.serve(dispatcher);
  const callHome = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(plane.address.split(":")[1]) });
  try {
    await writeAll(conn, requestFrame("huge", requestBody("h", `127.0.0.1:${callHome.addr.port}`, '"x"')));
    assert.deepEqual(await readAcks(new ByteReader(conn), 1), [""]);
    const stalled = await callHome.accept(); // never read until the server has given up
    await waitFor(() => dispatcher.inFlight === 0, "the stalled request to end");
    let received = 0;
    try {
      const buf = new Uint8Array(1 << 20);
      for (let n; (n = await stalled.read(buf)) !== null;) received += n;
    } catch { /* reset */ }
    stalled.close();
    assert.ok(received < 16 << 20, `the whole answer (${received} bytes) arrived`);
  } finally {
    conn.close();
    callHome.close();
    await plane.close();
    await dispatcher.drain(1000);
  }
});

Deno.test("maxRequestBytes: a larger body is skipped unread and answered with an error item; the limit itself is served", async () => {
  const limited: Endpoint = { ...echo, name: "limited", maxRequestBytes: 1024 };
  await withPlane([limited], async ({ port, callHome, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const reader = new ByteReader(conn);
    const sized = (id: string, bytes: number) => {
      const empty = requestBody(id, callHomeAddress, "").length;
      return requestBody(id, callHomeAddress, JSON.stringify("z".repeat(bytes - empty - 2)));
    };
    for (const [id, bytes] of [["over", 1025], ["at", 1024]] as const) {
      const body = sized(id, bytes);
      assert.equal(body.length, bytes);
      await writeAll(conn, requestFrame("limited", body));
      assert.deepEqual(await readAcks(reader, 1), [""]);
      const frames = await acceptCallHome(callHome);
      const item = JSON.parse(frames[2].data!);
      if (id === "over") {
        assert.equal(
          item.data.error.message,
          "ValueError: Invalid request: request body of 1025 bytes exceeds the 1024-byte limit of limited",
        );
      } else {
        assert.equal(item.data.data.echo.length, bytes - requestBody(id, callHomeAddress, "").length - 2);
      }
      assert.deepEqual(frames.slice(3), [{ data: `{"complete_final":true}` }, { header: `"sentinel"` }]);
    }
    // The skipped body left the stream in sync.
    await writeAll(conn, requestFrame("nope", requestBody("n", callHomeAddress, "{}")));
    assert.deepEqual(await readAcks(reader, 1), ["Server unavailable: unknown endpoint nope"]);
    conn.close();
  });
});

Deno.test("frameBuffered: true for a whole frame, false one byte short at every part", () => {
  const frame = requestFrame("echo", requestBody("r1", "127.0.0.1:1", '"x"'), '{"a":"b"}');
  assert.equal(frameBuffered(frame), true);
  assert.equal(frameBuffered(new Uint8Array([...frame, 0, 7])), true);
  for (let n = 0; n < frame.length; n++) {
    assert.equal(frameBuffered(frame.subarray(0, n)), false, `${n} bytes`);
  }
});

Deno.test("pipelined frames: ACKs in order across batches of more than 64 frames", async () => {
  await withPlane([echo], async ({ port }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const frames = Array.from({ length: 130 }, (_, i) => requestFrame(`nope${i}`, new Uint8Array(0)));
    await writeAll(conn, new Uint8Array(frames.flatMap((f) => [...f])));
    const acks = await readAcks(new ByteReader(conn), 130);
    assert.deepEqual(acks, frames.map((_, i) => `Server unavailable: unknown endpoint nope${i}`));
    conn.close();
  });
});

Deno.test("DYN_TCP_MAX_INFLIGHT: frames that arrive together count as in flight before they start", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const slow: Endpoint = {
    name: "slow",
    async *handler(request) {
      await gate;
      yield { echo: request };
    },
  };
  await withPlane([slow], async ({ port, callHome, callHomeAddress }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const frames = ["a", "b", "c"].map((id) => requestFrame("slow", requestBody(id, callHomeAddress, '"x"')));
    await writeAll(conn, new Uint8Array(frames.flatMap((f) => [...f])));
    assert.deepEqual(await readAcks(new ByteReader(conn), 3), [
      "",
      "",
      "Server overloaded: 2 requests in flight (limit 2)",
    ]);
    const streams = [acceptCallHome(callHome), acceptCallHome(callHome)];
    release();
    for (const frames of await Promise.all(streams)) assert.equal(frames.at(-1)?.header, `"sentinel"`);
    conn.close();
  }, { maxInFlight: 2 });
});
