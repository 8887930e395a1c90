/**
 * The request plane's error semantics, decided by the real runtime: the same bytes go to a real
 * 1.6.1 `serve_endpoint` (echo_server.py) and to our service, and the ACK texts, whether the
 * connection survives and whether a request queued behind the bad frame is still answered must
 * be the same. A real 1.6.1 caller routed to a path we do not serve fails over at once.
 */
import assert from "node:assert/strict";
import { ByteReader } from "../../src/runtime/codec/byte_reader.ts";
import { encodeFileName } from "../../src/runtime/discovery/file.ts";
import { INSTANCES_BUCKET, recordJson, recordKey } from "../../src/runtime/discovery/discovery.ts";
import { fileBackend } from "../support/backends.ts";
import { CallHomeCollector, requestBody, requestFrame, writeAll } from "../support/fake_caller.ts";
import { waitFor } from "../support/ports.ts";
import { runDriver, spawnDriver } from "../support/python.ts";
import { startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

/** Small enough to test the limit cheaply; the same for both servers. */
const MAX = 65_536;
const utf8 = (s: string) => new TextEncoder().encode(s);
const cat = (...parts: (Uint8Array | number[])[]) => new Uint8Array(parts.flatMap((p) => [...p]));
const u16 = (n: number) => [n >> 8, n & 0xff];
const u32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const twoPart = (header: Uint8Array, data: Uint8Array, declaredHeader = header.length) =>
  cat([0, 0, 0, 0], u32(declaredHeader), [0, 0, 0, 0], u32(data.length), new Array(8).fill(0), header, data);

/** A frame with raw parts (any bytes, any declared lengths). */
function rawFrame(path: Uint8Array, headers: Uint8Array, body: Uint8Array): Uint8Array {
  return cat(u16(path.length), path, u16(headers.length), headers, u32(body.length), body);
}

interface Case {
  name: string;
  /** The bad frame, given the server's real path, a call-home address and a request id. */
  bad(path: string, callHome: string, id: string): Uint8Array;
  /** What the real runtime does (pinned, so a change of reference shows up here too). */
  acks: string[];
  closed: boolean;
  /** The bad frame itself gets a response stream. */
  answered: boolean;
}

const control = (id: string, callHome: string) => requestBody(id, callHome, '"x"').subarray(24, -3);
const goodBody = (id: string, callHome: string) => requestBody(id, callHome, '"x"');
const headersOf = (path: string) => utf8(JSON.stringify({ "x-endpoint-path": path }));

const CASES: Case[] = [
  {
    name: "unknown endpoint path",
    bad: (_p, ch, id) => requestFrame("0bad/ns/Comp/nope", goodBody(id, ch)),
    acks: ["Server unavailable: unknown endpoint 0bad/ns/Comp/nope", ""],
    closed: false,
    answered: false,
  },
  {
    name: "zero-length path",
    bad: (p, ch, id) => rawFrame(new Uint8Array(0), headersOf(p), goodBody(id, ch)),
    acks: ["Server unavailable: unknown endpoint ", ""],
    closed: false,
    answered: false,
  },
  {
    name: "2000-byte path",
    bad: (_p, ch, id) => requestFrame("a".repeat(2000), goodBody(id, ch)),
    acks: [`Server unavailable: unknown endpoint ${"a".repeat(2000)}`, ""],
    closed: false,
    answered: false,
  },
  {
    name: "path with a UTF-8 BOM (not stripped)",
    bad: (p, ch, id) => rawFrame(cat([0xef, 0xbb, 0xbf], utf8(p)), headersOf(p), goodBody(id, ch)),
    acks: ["Server unavailable: unknown endpoint \ufeff<path>", ""],
    closed: false,
    answered: false,
  },
  {
    name: "non-UTF-8 path",
    bad: (p, ch, id) => rawFrame(cat([0xff, 0xfe], utf8(p)), headersOf(p), goodBody(id, ch)),
    acks: ["Invalid endpoint path", ""],
    closed: false,
    answered: false,
  },
  {
    name: "overlong UTF-8 in the path",
    bad: (p, ch, id) => rawFrame(cat([0xc0, 0xaf], utf8(p)), headersOf(p), goodBody(id, ch)),
    acks: ["Invalid endpoint path", ""],
    closed: false,
    answered: false,
  },
  {
    name: "non-UTF-8 headers section",
    bad: (p, ch, id) => rawFrame(utf8(p), cat(utf8('{"a":"'), [0xff], utf8('"}')), goodBody(id, ch)),
    acks: ["", ""],
    closed: false,
    answered: true,
  },
  {
    name: "headers section not JSON",
    bad: (p, ch, id) => rawFrame(utf8(p), utf8("nope"), goodBody(id, ch)),
    acks: ["", ""],
    closed: false,
    answered: true,
  },
  {
    name: "headers section a JSON array",
    bad: (p, ch, id) => rawFrame(utf8(p), utf8("[1]"), goodBody(id, ch)),
    acks: ["", ""],
    closed: false,
    answered: true,
  },
  {
    name: "empty headers section",
    bad: (p, ch, id) => rawFrame(utf8(p), new Uint8Array(0), goodBody(id, ch)),
    acks: ["", ""],
    closed: false,
    answered: true,
  },
  {
    name: "control header not JSON",
    bad: (p) => rawFrame(utf8(p), headersOf(p), twoPart(utf8("nope"), utf8('"x"'))),
    acks: ["", ""],
    closed: false,
    answered: false,
  },
  {
    name: "control header without connection_info",
    bad: (p) => rawFrame(utf8(p), headersOf(p), twoPart(utf8('{"id":"bad"}'), utf8('"x"'))),
    acks: ["", ""],
    closed: false,
    answered: false,
  },
  {
    name: "control header not UTF-8",
    bad: (p) =>
      rawFrame(utf8(p), headersOf(p), twoPart(cat(utf8('{"id":"'), [0xff], utf8('"}')), utf8('"x"'))),
    acks: ["", ""],
    closed: false,
    answered: false,
  },
  {
    name: "body not a TwoPart message",
    bad: (p) => rawFrame(utf8(p), headersOf(p), utf8("garbage")),
    acks: ["", ""],
    closed: false,
    answered: false,
  },
  {
    name: "TwoPart lengths larger than the body",
    bad: (p, ch, id) => rawFrame(utf8(p), headersOf(p), twoPart(control(id, ch), utf8('"x"'), 5000)),
    acks: ["", ""],
    closed: false,
    answered: false,
  },
  {
    name: "empty body",
    bad: (p) => rawFrame(utf8(p), headersOf(p), new Uint8Array(0)),
    acks: ["", ""],
    closed: false,
    answered: false,
  },
  {
    name: "a frame of exactly the size limit",
    bad: (p) => {
      const fixed = 2 + utf8(p).length + 2 + headersOf(p).length + 4;
      return rawFrame(utf8(p), headersOf(p), new Uint8Array(MAX - fixed));
    },
    acks: ["", ""],
    closed: false,
    answered: false,
  },
  {
    name: "a frame one byte over the size limit",
    bad: (p) => {
      const fixed = 2 + utf8(p).length + 2 + headersOf(p).length + 4;
      return rawFrame(utf8(p), headersOf(p), new Uint8Array(MAX + 1 - fixed));
    },
    acks: [`Read error: message too large: ${MAX + 1} bytes (max: ${MAX} bytes)`],
    closed: true,
    answered: false,
  },
  {
    name: "body length 2^32-1 announced, body never sent",
    bad: (p) => cat(u16(utf8(p).length), utf8(p), u16(2), utf8("{}"), u32(0xffffffff)),
    acks: [`Read error: message too large: <4294967295+prefix> bytes (max: ${MAX} bytes)`],
    closed: true,
    answered: false,
  },
];

interface Observed {
  acks: string[];
  closed: boolean;
  queuedAnswered: boolean;
  badAnswered: boolean;
}

/** Sends a bad frame and a good one behind it on one connection; reports what happened. */
async function observe(port: number, path: string, collector: CallHomeCollector, c: Case): Promise<Observed> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    // Unique per attempt; requestBody names the call-home subject after the id.
    const id = crypto.randomUUID();
    const badId = `bad-${id}`;
    const bad = c.bad(path, collector.address, badId);
    const good = requestFrame(
      path,
      requestBody(`good-${id}`, collector.address, '"x"'),
      JSON.stringify({
        "x-endpoint-path": path,
      }),
    );
    await writeAll(conn, cat(bad, good));
    const reader = new ByteReader(conn);
    const acks: string[] = [];
    let closed = false;
    for (let i = 0; i < 2; i++) {
      const prefix = await reader.readExact(4).catch(() => null);
      if (prefix === null) {
        closed = true;
        break;
      }
      const len = new DataView(prefix.slice().buffer).getUint32(0);
      acks.push(len ? new TextDecoder().decode(await reader.readExactOrThrow(len)) : "");
    }
    if (!closed && c.closed) closed = await reader.readExact(1).then((b) => b === null).catch(() => true);
    const queuedAnswered = acks[1] === "" ? isAnswer(await collector.stream(`subject-good-${id}`)) : false;
    const badAnswered = c.answered && acks[0] === ""
      ? isAnswer(await collector.stream(`subject-${badId}`))
      : false;
    return { acks, closed, queuedAnswered, badAnswered };
  } finally {
    conn.close();
  }
}

function isAnswer(frames: { header?: string; data?: string }[]): boolean {
  return frames.at(-1)?.header === `"sentinel"` && frames.some((f) => f.data?.startsWith('{"data":{"data":'));
}

/** Puts the server's own path where the expectation names it. */
function expected(c: Case, path: string, pathBytesLength: number): string[] {
  return c.acks.map((a) =>
    a.replace("<path>", path).replace(
      "<4294967295+prefix>",
      String(2 + pathBytesLength + 2 + 2 + 4 + 0xffffffff),
    )
  );
}

Deno.test({
  name: "request-plane error semantics are those of a real 1.6.1 serve_endpoint, case by case",
  async fn(t) {
    const backend = await fileBackend();
    const env = { ...backend.env, DYN_TCP_MAX_MESSAGE_SIZE: String(MAX) };
    const real = await spawnDriver("echo_server.py", ["--endpoint", "ref.Echo.gen", "--mode", "raw"], env);
    const collector = CallHomeCollector.listen();
    let service;
    try {
      await real.waitForLine((l) => l.ready === true);
      const recordDir = `${backend.env.DYN_FILE_KV}/${INSTANCES_BUCKET}`;
      let realTcp = "";
      await waitFor(async () => {
        for await (const entry of Deno.readDir(recordDir)) {
          if (!entry.name.startsWith("ref%2FEcho")) continue;
          realTcp = JSON.parse(await Deno.readTextFile(`${recordDir}/${entry.name}`)).transport.tcp;
          return true;
        }
        return false;
      }, "the real server's discovery record");
      service = await startService({ args: ["--no-operation"], env: { ...env, DYN_NAMESPACE: "ours" } });
      const ourPort = Number(String(service.ready.address).split(":").at(-1));
      const ourPath = `${service.ready.instance_id}/ours/GlobalPlanner/health`;
      const realPort = Number(realTcp.split("/")[0].split(":")[1]);
      const realPath = realTcp.slice(realTcp.indexOf("/") + 1);

      for (const c of CASES) {
        await t.step(c.name, async () => {
          const theirs = await observe(realPort, realPath, collector, c);
          const ours = await observe(ourPort, ourPath, collector, c);
          const theirsExpected = expected(c, realPath, utf8(realPath).length);
          const oursExpected = expected(c, ourPath, utf8(ourPath).length);
          // The reference first: it is what we copy.
          assert.deepEqual(theirs.acks, theirsExpected, "the real runtime's ACKs changed");
          assert.deepEqual(ours.acks, oursExpected);
          const shape = (o: Observed) => ({
            closed: o.closed,
            queuedAnswered: o.queuedAnswered,
            badAnswered: o.badAnswered,
          });
          assert.deepEqual(shape(ours), shape(theirs));
          assert.deepEqual(shape(theirs), {
            closed: c.closed,
            queuedAnswered: !c.closed,
            badAnswered: c.answered,
          });
        });
      }
      assert.equal(await service.stop(), 0);
      service = undefined;
    } finally {
      await service?.stop("SIGKILL");
      await collector.close();
      await real.stop();
      await backend.cleanup();
    }
  },
});

Deno.test({
  name: "a real 1.6.1 caller routed to a path we do not serve raises Unavailable within 1 s",
  async fn() {
    const backend = await fileBackend();
    let service;
    try {
      service = await startService({
        args: ["--no-operation"],
        env: { ...backend.env, DYN_NAMESPACE: "gp-stale" },
      });
      // What a restart on the same port leaves behind: a live record of another instance (here
      // for an endpoint we never registered) pointing at our address.
      const record = {
        namespace: "gp-stale",
        component: "GlobalPlanner",
        endpoint: "ghost",
        instanceId: 0xdeadbeefn,
        transport: { tcp: `${service.ready.address}/deadbeef/gp-stale/GlobalPlanner/ghost` },
      };
      const dir = `${backend.env.DYN_FILE_KV}/${INSTANCES_BUCKET}`;
      await Deno.writeTextFile(`${dir}/${encodeFileName(recordKey(record))}`, recordJson(record));
      const result = await runDriver("call_endpoint.py", [
        "--endpoint",
        "gp-stale.GlobalPlanner.ghost",
        "--payload",
        "{}",
        "--call-timeout",
        "1",
        "--timeout",
        "30",
      ], backend.env);
      const failure = result.lines.find((l) => "exception" in l);
      assert.deepEqual(failure, {
        exception: "Exception",
        message: "Unavailable: Server unavailable: unknown endpoint deadbeef/gp-stale/GlobalPlanner/ghost",
      }, `${JSON.stringify(result.lines)} ${result.stderr.slice(-1000)}`);
      await service.waitForLog((l) =>
        l.message === "request for an unknown endpoint" && l.path === "deadbeef/gp-stale/GlobalPlanner/ghost"
      );
    } finally {
      await service?.stop("SIGKILL");
      await backend.cleanup();
    }
  },
});
