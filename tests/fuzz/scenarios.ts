/**
 * Seeded fault scenarios against a running service's request plane, shared by the CI-sized
 * test (`request_plane_fuzz_test.ts`) and the long run (`deno task fuzz`). Each scenario checks
 * what must hold whatever the input: every accepted request is answered exactly once, nothing
 * else is answered, the stream stays in sync where the runtime keeps it in sync, and the
 * service still answers afterwards. Figures are returned for the report.
 */
import { ByteReader } from "../../src/runtime/codec/byte_reader.ts";
import { ACK } from "../../src/runtime/request_plane/tcp.ts";
import { CallHomeCollector, requestBody, requestFrame, writeAll } from "../support/fake_caller.ts";

export interface Target {
  port: number;
  /** Advertised path prefix `<hex>/<ns>/GlobalPlanner`. */
  prefix: string;
  pid: number;
  maxMessageSize: number;
}

/** mulberry32: small, seeded, good enough to pick cases reproducibly. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Open descriptors of `pid` (listed by `ls`: Deno allows /proc/<pid>/fd only with -A). */
export function fdCount(pid: number): number {
  const out = new Deno.Command("/bin/ls", {
    args: ["-1", `/proc/${pid}/fd`],
    stdout: "piped",
    stderr: "piped",
  })
    .outputSync();
  if (!out.success) throw new Error(`cannot list /proc/${pid}/fd: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).length;
}

/** Resident and peak resident set (`VmRSS`, `VmHWM`) in KiB, read by `cat` (see `fdCount`). */
export async function memoryKiB(pid: number): Promise<{ rss: number; peak: number }> {
  const out = await new Deno.Command("/bin/cat", { args: [`/proc/${pid}/status`], stdout: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return { rss: kib("VmRSS"), peak: kib("VmHWM") };
}

/** Resets the kernel's peak-RSS mark of `pid` to its current RSS (`clear_refs` 5). */
export async function resetPeak(pid: number): Promise<void> {
  const out = await new Deno.Command("/bin/sh", { args: ["-c", `echo 5 > /proc/${pid}/clear_refs`] })
    .output();
  if (!out.success) throw new Error(`cannot reset the peak RSS of ${pid}`);
}

/** Polls `/proc/<pid>/fd` until it is back to `baseline` (or below); the last count otherwise. */
export async function fdsSettle(pid: number, baseline: number, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let n = fdCount(pid);
  while (n > baseline && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    n = fdCount(pid);
  }
  if (n > baseline) console.error(`fds of ${pid} still open: ${fdTargets(pid).join(", ")}`);
  return n;
}

/** What each open descriptor points at (printed when a leak is found, to say what leaked). */
export function fdTargets(pid: number): string[] {
  const targets: string[] = [];
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      targets.push(`${entry.name}→${Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`)}`);
    } catch { /* closed meanwhile */ }
  }
  return targets;
}

const utf8 = (s: string) => new TextEncoder().encode(s);
const u16 = (n: number) => [n >> 8, n & 0xff];
const u32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const cat = (...parts: (Uint8Array | number[])[]) => {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
};
const rawFrame = (path: Uint8Array, headers: Uint8Array, body: Uint8Array) =>
  cat(u16(path.length), path, u16(headers.length), headers, u32(body.length), body);
const twoPart = (header: Uint8Array, data: Uint8Array, declaredHeader = header.length) =>
  cat([0, 0, 0, 0], u32(declaredHeader), [0, 0, 0, 0], u32(data.length), new Array(8).fill(0), header, data);

function randomBytes(rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

/** By code point, so an astral character is never split into lone surrogates. */
const ALPHABET = Array.from("abcdefghijklmnopqrstuvwxyz0123456789/._-é€😀 ");

function randomText(rand: () => number, n: number): string {
  const alphabet = ALPHABET;
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return s;
}

/** What a frame on a kept connection must get: an ACK text, and whether it is answered. */
interface Expect {
  ack: string;
  /** `true`: exactly one stream; `false`: none; `undefined`: at most one. */
  answered: boolean | undefined;
}

interface Built {
  bytes: Uint8Array;
  subject: string;
  expect: Expect;
}

/** Frame classes that the runtime reads whole, so the connection stays in sync. */
const KEPT = [
  "good",
  "unknown_path",
  "non_utf8_path",
  "bad_headers",
  "bad_control_json",
  "garbage_control",
  "bad_two_part_lengths",
  "empty_body",
  "unknown_codec",
] as const;
type KeptClass = typeof KEPT[number];

function build(cls: KeptClass, rand: () => number, t: Target, callHome: string, id: string): Built {
  const path = `${t.prefix}/health`;
  const subject = `subject-${id}`;
  const body = () => requestBody(id, callHome, '{"text":"health"}');
  const headers = utf8(JSON.stringify({ "x-endpoint-path": path }));
  switch (cls) {
    case "good":
      return { bytes: requestFrame(path, body()), subject, expect: { ack: "", answered: true } };
    case "unknown_path": {
      const p = `${t.prefix}/${randomText(rand, 1 + Math.floor(rand() * 40))}x`;
      return {
        bytes: requestFrame(p, body()),
        subject,
        expect: { ack: ACK.unknownEndpoint(p), answered: false },
      };
    }
    case "non_utf8_path": {
      const p = cat([0xff], randomBytes(rand, Math.floor(rand() * 30)));
      return {
        bytes: rawFrame(p, headers, body()),
        subject,
        expect: { ack: ACK.invalidPath, answered: false },
      };
    }
    case "bad_headers": {
      const h = rand() < 0.5 ? randomBytes(rand, Math.floor(rand() * 200)) : utf8(randomText(rand, 50));
      return { bytes: rawFrame(utf8(path), h, body()), subject, expect: { ack: "", answered: true } };
    }
    case "bad_control_json": {
      const info = JSON.stringify({ address: callHome, subject, context: id, stream_type: "response" });
      const variants: unknown[] = [
        { request_type: "single_in" },
        { id: 7, connection_info: { transport: "tcp_server", info } },
        { id, connection_info: { transport: "tcp_server", info: "not json" } },
        { id, connection_info: { transport: "tcp_server", info: JSON.stringify({ subject }) } },
        { id, connection_info: { transport: "nats", info } },
        {
          id,
          connection_info: { transport: "tcp_server", info: JSON.stringify({ address: "host:1", subject }) },
        },
        [1, 2, 3],
        "text",
        null,
      ];
      const header = utf8(JSON.stringify(variants[Math.floor(rand() * variants.length)]));
      return {
        bytes: rawFrame(utf8(path), headers, twoPart(header, utf8('"x"'))),
        subject,
        expect: { ack: "", answered: false },
      };
    }
    case "garbage_control":
      return {
        bytes: rawFrame(
          utf8(path),
          headers,
          twoPart(randomBytes(rand, 1 + Math.floor(rand() * 300)), utf8("x")),
        ),
        subject,
        expect: { ack: "", answered: false },
      };
    case "bad_two_part_lengths": {
      const control = body().subarray(24, -17);
      const declared = control.length + 1 + Math.floor(rand() * 1000);
      return {
        bytes: rawFrame(utf8(path), headers, twoPart(control, utf8("{}"), declared)),
        subject,
        expect: { ack: "", answered: false },
      };
    }
    case "empty_body":
      return {
        bytes: rawFrame(utf8(path), headers, new Uint8Array(0)),
        subject,
        expect: { ack: "", answered: false },
      };
    case "unknown_codec":
      // Parseable, with an address: answered (with an error item), exactly once.
      return {
        bytes: requestFrame(path, requestBody(id, callHome, "{}", { payload_codec: "cbor" })),
        subject,
        expect: { ack: "", answered: true },
      };
  }
}

async function readAck(reader: ByteReader): Promise<string | null> {
  const prefix = await reader.readExact(4).catch(() => null);
  if (prefix === null) return null;
  const len = new DataView(prefix.slice().buffer).getUint32(0);
  return len ? new TextDecoder().decode(await reader.readExactOrThrow(len)) : "";
}

export interface BadFrameStats {
  frames: number;
  connections: number;
  accepted: number;
  answered: number;
  byClass: Record<string, number>;
  problems: string[];
}

/**
 * `frames` frames in random batches: classes the runtime reads whole are pipelined on kept
 * connections (ACKs checked one by one); oversized, truncated and garbage frames get their own
 * connection (the service must survive them).
 */
export async function badFrames(t: Target, frames: number, seed: number): Promise<BadFrameStats> {
  const rand = rng(seed);
  const collector = CallHomeCollector.listen();
  const stats: BadFrameStats = {
    frames: 0,
    connections: 0,
    accepted: 0,
    answered: 0,
    byClass: {},
    problems: [],
  };
  const mustAnswer: string[] = [];
  const mayAnswer: string[] = [];
  const mustNot: string[] = [];
  const count = (cls: string) => (stats.byClass[cls] = (stats.byClass[cls] ?? 0) + 1);
  try {
    let n = 0;
    while (n < frames) {
      const pick = rand();
      stats.connections++;
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: t.port });
      try {
        if (pick < 0.8) {
          const batch: Built[] = [];
          const size = Math.min(frames - n, 1 + Math.floor(rand() * 20));
          for (let i = 0; i < size; i++) {
            const cls = KEPT[Math.floor(rand() * KEPT.length)];
            count(cls);
            batch.push(build(cls, rand, t, collector.address, `${seed}-${n + i}-${cls}`));
          }
          n += size;
          await writeAll(conn, cat(...batch.map((b) => b.bytes)));
          const reader = new ByteReader(conn);
          for (const b of batch) {
            const ack = await readAck(reader);
            if (ack !== b.expect.ack) {
              stats.problems.push(
                `${b.subject}: ACK ${JSON.stringify(ack)} != ${JSON.stringify(b.expect.ack)}`,
              );
              break;
            }
            if (ack === "") stats.accepted++;
            (b.expect.answered === true ? mustAnswer : b.expect.answered === false ? mustNot : mayAnswer)
              .push(
                b.subject,
              );
          }
        } else {
          n++;
          const kind = pick < 0.87 ? "oversized" : pick < 0.94 ? "truncated" : "garbage";
          count(kind);
          const id = `${seed}-${n}-${kind}`;
          if (kind === "oversized") {
            const path = utf8(`${t.prefix}/health`);
            const excess = 1 + Math.floor(rand() * 1000);
            const bodyLength = t.maxMessageSize - (2 + path.length + 2 + 2 + 4) + excess;
            await writeAll(conn, cat(u16(path.length), path, u16(2), utf8("{}"), u32(bodyLength)));
            const ack = await readAck(new ByteReader(conn));
            const want = ACK.tooLarge(t.maxMessageSize + excess, t.maxMessageSize);
            if (ack !== want) stats.problems.push(`${id}: oversized ACK ${JSON.stringify(ack)} != ${want}`);
          } else if (kind === "truncated") {
            const frame = requestFrame(`${t.prefix}/health`, requestBody(id, collector.address, "{}"));
            await writeAll(conn, frame.subarray(0, 1 + Math.floor(rand() * (frame.length - 1))));
            mustNot.push(`subject-${id}`);
          } else {
            await writeAll(conn, randomBytes(rand, 1 + Math.floor(rand() * 4096)));
          }
        }
      } finally {
        conn.close();
      }
    }
    stats.frames = n;
    for (const subject of mustAnswer) {
      try {
        const frames = await collector.stream(subject);
        if (frames.at(-1)?.header !== `"sentinel"`) stats.problems.push(`${subject}: stream not complete`);
      } catch (error) {
        stats.problems.push(`${subject}: ${(error as Error).message}`);
      }
    }
    // Every stream that will come has come once the accepted ones are in: the service answers
    // in any order, but a good request behind each bad one has been answered above. Streams
    // for requests that must not be answered would be opened before their handler runs.
    for (const subject of mustNot) {
      if (collector.count(subject) > 0) stats.problems.push(`${subject}: answered, but it must not be`);
    }
    for (const subject of collector.duplicates) stats.problems.push(`${subject}: answered more than once`);
    stats.answered = collector.total;
    void mayAnswer;
  } finally {
    await collector.close();
  }
  return stats;
}

/** One health request on a fresh connection; `true` when it is answered with a complete stream. */
export async function healthAnswered(t: Target, id = crypto.randomUUID()): Promise<boolean> {
  const collector = CallHomeCollector.listen();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: t.port });
  try {
    await writeAll(
      conn,
      requestFrame(`${t.prefix}/health`, requestBody(id, collector.address, '{"text":"health"}')),
    );
    if (await readAck(new ByteReader(conn)) !== "") return false;
    const frames = await collector.stream(`subject-${id}`);
    return frames.at(-1)?.header === `"sentinel"` && frames.some((f) => f.data?.includes('"healthy"'));
  } finally {
    conn.close();
    await collector.close();
  }
}

export interface IdleStats {
  idle: number;
  slow: number;
  servedWhileIdle: boolean;
  slowAnswered: number;
}

/** `idle` silent connections held open while requests are served; `slow` byte-by-byte frames. */
export async function idleAndSlow(t: Target, idle: number, slow: number): Promise<IdleStats> {
  const conns: Deno.TcpConn[] = [];
  const collector = CallHomeCollector.listen();
  try {
    for (let i = 0; i < idle; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port: t.port }));
    const servedWhileIdle = await healthAnswered(t);
    let slowAnswered = 0;
    await Promise.all(Array.from({ length: slow }, async (_, i) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: t.port });
      try {
        const id = `slow-${i}`;
        const frame = requestFrame(`${t.prefix}/health`, requestBody(id, collector.address, "{}"));
        // A slow writer is the fault under test: the pacing is the input, not a wait.
        for (let offset = 0; offset < frame.length; offset += 16) {
          await writeAll(conn, frame.subarray(offset, offset + 16));
          await new Promise((r) => setTimeout(r, 1));
        }
        if (await readAck(new ByteReader(conn)) === "") {
          const frames = await collector.stream(`subject-${id}`);
          if (frames.at(-1)?.header === `"sentinel"`) slowAnswered++;
        }
      } finally {
        conn.close();
      }
    }));
    return { idle, slow, servedWhileIdle, slowAnswered };
  } finally {
    for (const c of conns) c.close();
    await collector.close();
  }
}

export interface PeerStats {
  refused: number;
  reset: number;
  neverRead: number;
  acked: number;
}

/** Requests whose call-home peer refuses, resets at once, or accepts and never reads. */
export async function badCallHomePeers(t: Target, each: number): Promise<PeerStats> {
  const closedPort = (() => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = l.addr.port;
    l.close();
    return port;
  })();
  const resetter = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const resetting = (async () => {
    for await (const c of resetter) c.close();
  })().catch(() => {});
  const holding = (async () => {
    for await (const c of holder) held.push(c);
  })().catch(() => {});
  const stats: PeerStats = { refused: each, reset: each, neverRead: each, acked: 0 };
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: t.port });
  try {
    const addresses = [
      `127.0.0.1:${closedPort}`,
      `127.0.0.1:${resetter.addr.port}`,
      `127.0.0.1:${holder.addr.port}`,
    ];
    const frames: Uint8Array[] = [];
    for (let i = 0; i < each; i++) {
      for (const [k, address] of addresses.entries()) {
        frames.push(requestFrame(`${t.prefix}/health`, requestBody(`peer-${k}-${i}`, address, "{}")));
      }
    }
    await writeAll(conn, cat(...frames));
    const reader = new ByteReader(conn);
    for (let i = 0; i < frames.length; i++) if (await readAck(reader) === "") stats.acked++;
    // The service must go on answering others while those streams fail or hang.
    if (!await healthAnswered(t)) throw new Error("health not answered while call-home peers misbehave");
  } finally {
    conn.close();
    resetter.close();
    holder.close();
    await resetting;
    await holding;
    for (const c of held) c.close();
  }
  return stats;
}
