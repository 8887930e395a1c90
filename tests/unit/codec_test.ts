import assert from "node:assert/strict";
import { ByteReader } from "../../src/runtime/codec/byte_reader.ts";
import { decodeTwoPart, encodeTwoPart, readTwoPartPrefix } from "../../src/runtime/codec/two_part.ts";
import { recordJson, recordKey } from "../../src/runtime/discovery/discovery.ts";
import { encodeFileName } from "../../src/runtime/discovery/file.ts";
import { ProtocolError } from "../../src/errors.ts";
import { MSGPACK_CODEC } from "../../src/runtime/codec/msgpack_codec.ts";
import { JSON_CODEC, payloadCodec } from "../../src/runtime/codec/payload_codec.ts";
import { errorItem } from "../../src/runtime/codec/annotated.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
const utf8 = (s: string) => new TextEncoder().encode(s);

Deno.test("TwoPart: the spec's worked call-home frames, byte for byte", () => {
  const handshake = encodeTwoPart(utf8(`{"subject":"s1","stream_type":"response"}`));
  assert.equal(handshake.length, 24 + 41);
  assert.equal(hex(handshake.subarray(0, 24)), "00 00 00 00 00 00 00 29 " + "00 ".repeat(16).trim());
  const final = encodeTwoPart(undefined, utf8(`{"complete_final":true}`));
  assert.equal(
    hex(final.subarray(0, 24)),
    "00 ".repeat(8) + "00 00 00 00 00 00 00 17 " + "00 ".repeat(8).trim(),
  );
});

Deno.test("TwoPart: round trip keeps absent parts absent", () => {
  const both = decodeTwoPart(encodeTwoPart(utf8("h"), utf8("data")));
  assert.deepEqual([both.header, both.data], [utf8("h"), utf8("data")]);
  const headerOnly = decodeTwoPart(encodeTwoPart(utf8("h")));
  assert.equal(headerOnly.data, undefined);
  const dataOnly = decodeTwoPart(encodeTwoPart(undefined, utf8("d")));
  assert.equal(dataOnly.header, undefined);
});

Deno.test("TwoPart: a nonzero checksum is ignored, inconsistent lengths are a ProtocolError", () => {
  const frame = encodeTwoPart(utf8("h"), utf8("d"));
  frame[23] = 0x7f;
  assert.deepEqual(decodeTwoPart(frame).data, utf8("d"));
  assert.throws(() => decodeTwoPart(frame.subarray(0, frame.length - 1)), ProtocolError);
  assert.throws(() => decodeTwoPart(new Uint8Array(10)), ProtocolError);
});

Deno.test("ByteReader: exact reads across chunk boundaries, clean EOF vs EOF inside a frame", async () => {
  const chunks = [utf8("ab"), utf8("cdef"), utf8("g")];
  const source = {
    read(p: Uint8Array) {
      const next = chunks.shift();
      if (!next) return Promise.resolve(null);
      p.set(next);
      return Promise.resolve(next.length);
    },
  };
  const reader = new ByteReader(source);
  assert.equal(new TextDecoder().decode(await reader.readExactOrThrow(3)), "abc");
  assert.equal(new TextDecoder().decode(await reader.readExactOrThrow(3)), "def");
  await assert.rejects(reader.readExact(2), Deno.errors.UnexpectedEof);
  assert.equal(await new ByteReader({ read: () => Promise.resolve(null) }).readExact(1), null);
});

/** A source that hands out `bytes` in chunks of at most `chunk` bytes. */
function chunked(bytes: Uint8Array, chunk: number) {
  let offset = 0;
  return {
    read(p: Uint8Array) {
      if (offset >= bytes.length) return Promise.resolve(null);
      const n = Math.min(chunk, p.length, bytes.length - offset);
      p.set(bytes.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
  };
}

Deno.test("ByteReader: a large part read with readOwned never grows the buffer; a grown buffer shrinks back", async () => {
  const data = new Uint8Array(300_000).map((_, i) => i % 251);
  const reader = new ByteReader(chunked(data, 70_000), 1024);
  const head = await reader.readExactOrThrow(10);
  assert.deepEqual([...head], [...data.subarray(0, 10)]);
  const owned = await reader.readOwned(200_000);
  assert.deepEqual(owned, data.subarray(10, 200_010));
  assert.equal(reader.capacity, 1024, "readOwned grew the shared buffer");
  // A large exact read (a 64 KiB path) has to grow it...
  const big = await reader.readExactOrThrow(65_535);
  assert.deepEqual(big, data.subarray(200_010, 265_545));
  assert.ok(reader.capacity >= 65_535);
  // ...and the next small read gives the memory back, keeping what was buffered.
  const small = await reader.readExactOrThrow(1024);
  assert.deepEqual(small, data.subarray(265_545, 266_569));
  assert.equal(reader.capacity, 1024);
  const rest = await reader.readOwned(data.length - 266_569);
  assert.deepEqual(rest, data.subarray(266_569));
  assert.equal(await reader.readExact(1), null);
  await assert.rejects(
    new ByteReader(chunked(data.subarray(0, 5), 2)).readOwned(6),
    Deno.errors.UnexpectedEof,
  );
});

Deno.test("file discovery names: every byte outside A-Za-z0-9 is %XX (spec example)", () => {
  assert.equal(
    encodeFileName("default-gp/GlobalPlanner/scale_request/1f2e"),
    "default%2Dgp%2FGlobalPlanner%2Fscale%5Frequest%2F1f2e",
  );
  assert.equal(encodeFileName("é.x"), "%C3%A9%2Ex");
});

Deno.test("endpoint record: instance_id keeps all 64 bits and the key carries the same id in hex", () => {
  const record = {
    namespace: "prod-gp",
    component: "GlobalPlanner",
    endpoint: "scale_request",
    instanceId: 7587887766544332211n,
    transport: { tcp: "10.0.0.5:43121/694d97b8a86835b3/prod-gp/GlobalPlanner/scale_request" },
  };
  const json = recordJson(record);
  assert.match(json, /"instance_id":7587887766544332211,/);
  assert.deepEqual(JSON.parse(json), {
    type: "Endpoint",
    component: "GlobalPlanner",
    endpoint: "scale_request",
    namespace: "prod-gp",
    instance_id: 7587887766544332211,
    transport: record.transport,
  });
  assert.equal(recordKey(record), "prod-gp/GlobalPlanner/scale_request/694d97b8a86835b3");
});

Deno.test("payload codecs: absent = JSON, msgpack named maps round trip, unknown = none", async () => {
  assert.equal(payloadCodec(undefined), JSON_CODEC);
  assert.equal(payloadCodec("json"), JSON_CODEC);
  assert.equal(payloadCodec("cbor"), undefined);
  // MessagePack is loaded on first use (a promise), then the same codec every time.
  assert.ok(payloadCodec("msgpack") instanceof Promise);
  assert.equal(await payloadCodec("msgpack"), MSGPACK_CODEC);
  const value = { data: { data: { status: "success" } }, complete_final: false };
  assert.deepEqual(MSGPACK_CODEC.decode(MSGPACK_CODEC.encode(value)), value);
  // {"a":1,"b":"x"} as captured from a 1.6.1 caller
  assert.deepEqual(MSGPACK_CODEC.decode(new Uint8Array([0x82, 0xa1, 0x61, 0x01, 0xa1, 0x62, 0xa1, 0x78])), {
    a: 1,
    b: "x",
  });
});

Deno.test("error items copy the 1.6.1 Python ValueError shape and keep a comment", () => {
  assert.deepEqual(errorItem("Invalid request: x"), {
    data: {
      event: "error",
      comment: ["Invalid request: x"],
      error: {
        error_type: { Backend: "InvalidArgument" },
        class: "InvalidRequest",
        reason: "backend.invalid_argument",
        message: "ValueError: Invalid request: x",
        diagnostic: "ValueError: Invalid request: x",
      },
    },
    complete_final: false,
  });
});

Deno.test("TwoPart prefix: lengths up to 2^53 - 1 read exactly, one past it is out of range", () => {
  const prefix = (high: number, low: number) => {
    const bytes = new Uint8Array(24);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, high);
    view.setUint32(4, low);
    view.setUint32(8, high);
    view.setUint32(12, low);
    return bytes;
  };
  assert.deepEqual(readTwoPartPrefix(prefix(0x1f_ffff, 0xffff_ffff)), {
    headerLength: Number.MAX_SAFE_INTEGER,
    dataLength: Number.MAX_SAFE_INTEGER,
  });
  assert.deepEqual(readTwoPartPrefix(prefix(1, 5)), { headerLength: 2 ** 32 + 5, dataLength: 2 ** 32 + 5 });
  assert.throws(() => readTwoPartPrefix(prefix(0x20_0000, 0)), ProtocolError);
  // The encoder writes both halves (checked on the header/data lengths of a small frame).
  const frame = encodeTwoPart(new Uint8Array(0x1_0203), new Uint8Array(7));
  assert.equal(hex(frame.subarray(0, 16)), "00 00 00 00 00 01 02 03 00 00 00 00 00 00 00 07");
});
