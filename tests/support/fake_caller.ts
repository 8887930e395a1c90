/**
 * A minimal TypeScript caller of the TCP request plane with a call-home listener. For unit
 * tests of framing only; interoperability is proven with the real Python runtime.
 */
import { ByteReader } from "../../src/runtime/codec/byte_reader.ts";
import { encodeTwoPart, readTwoPartPrefix, TWO_PART_PREFIX } from "../../src/runtime/codec/two_part.ts";
import { writeAll } from "../../src/runtime/net.ts";
import { encodeRequestFrame } from "../../src/client/request_frame.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

export function requestFrame(path: string, body: Uint8Array, headers = "{}"): Uint8Array {
  return encodeRequestFrame(path, headers, body);
}

export function requestBody(
  id: string,
  callHome: string,
  payload: string,
  extra: Record<string, unknown> = {},
): Uint8Array {
  const control = JSON.stringify({
    id,
    request_type: "single_in",
    response_type: "many_out",
    connection_info: {
      transport: "tcp_server",
      info: JSON.stringify({
        address: callHome,
        subject: `subject-${id}`,
        context: id,
        stream_type: "response",
      }),
    },
    ...extra,
  });
  return encodeTwoPart(utf8(control), utf8(payload));
}

export interface Frame {
  header?: string;
  data?: string;
  /** The data part as received (for msgpack frames). */
  dataBytes?: Uint8Array;
}

/** Reads `n` ACKs (`u32be len | text`) from a request connection. */
export async function readAcks(reader: ByteReader, n: number): Promise<string[]> {
  const acks: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = new DataView((await reader.readExactOrThrow(4)).slice().buffer).getUint32(0);
    acks.push(len ? new TextDecoder().decode(await reader.readExactOrThrow(len)) : "");
  }
  return acks;
}

/** Accepts one call-home connection and reads TwoPart frames until EOF. */
export async function acceptCallHome(
  listener: Deno.Listener,
  onFrame?: (f: Frame, conn: Deno.Conn) => Promise<void>,
): Promise<Frame[]> {
  const conn = await listener.accept();
  const reader = new ByteReader(conn);
  const frames: Frame[] = [];
  try {
    while (true) {
      const prefix = await reader.readExact(TWO_PART_PREFIX);
      if (!prefix) break;
      const { headerLength, dataLength } = readTwoPartPrefix(prefix.slice());
      const body = (await reader.readExactOrThrow(headerLength + dataLength)).slice();
      const frame: Frame = {};
      if (headerLength) frame.header = new TextDecoder().decode(body.subarray(0, headerLength));
      if (dataLength) {
        const bytes = body.subarray(headerLength);
        // Not enumerable, so frames still compare by their text in deepEqual.
        Object.defineProperty(frame, "dataBytes", { value: bytes, enumerable: false });
        frame.data = new TextDecoder().decode(bytes);
      }
      frames.push(frame);
      await onFrame?.(frame, conn);
      if (frame.header === `"sentinel"`) break;
    }
  } finally {
    conn.close();
  }
  return frames;
}

export { writeAll };

/**
 * A call-home listener for many requests at once: streams are told apart by the subject of
 * their handshake, as a real caller does.
 */
export class CallHomeCollector {
  #listener: Deno.TcpListener;
  #streams = new Map<string, Frame[][]>();
  #waiters = new Map<string, (frames: Frame[]) => void>();
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #accepting: Promise<void>;

  private constructor(listener: Deno.TcpListener) {
    this.#listener = listener;
    this.#accepting = this.#acceptLoop();
  }

  static listen(): CallHomeCollector {
    return new CallHomeCollector(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  }

  get address(): string {
    return `127.0.0.1:${this.#listener.addr.port}`;
  }

  /** Streams received so far under `subject` (more than one would be a duplicate answer). */
  count(subject: string): number {
    return this.#streams.get(subject)?.length ?? 0;
  }

  /** Subjects that were answered more than once. */
  get duplicates(): string[] {
    return [...this.#streams].filter(([, s]) => s.length > 1).map(([k]) => k);
  }

  /** Number of streams received in all. */
  get total(): number {
    let n = 0;
    for (const s of this.#streams.values()) n += s.length;
    return n;
  }

  /** The frames of the stream introduced as `subject` (complete: up to the sentinel or EOF). */
  stream(subject: string, timeoutMs = 15_000): Promise<Frame[]> {
    const done = this.#streams.get(subject);
    if (done) return Promise.resolve(done[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(subject);
        reject(new Error(`no call-home stream for ${subject} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.set(subject, (frames) => (clearTimeout(timer), resolve(frames)));
    });
  }

  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await this.#accepting;
    await Promise.allSettled([...this.#tasks]);
  }

  async #acceptLoop() {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      this.#conns.add(conn);
      const task = this.#read(conn).finally(() => {
        this.#conns.delete(conn);
        this.#tasks.delete(task);
      });
      this.#tasks.add(task);
    }
  }

  async #read(conn: Deno.Conn) {
    const reader = new ByteReader(conn, 4096);
    const frames: Frame[] = [];
    let subject: string | undefined;
    try {
      while (true) {
        const prefix = await reader.readExact(TWO_PART_PREFIX);
        if (!prefix) break;
        const { headerLength, dataLength } = readTwoPartPrefix(prefix.slice());
        const body = await reader.readOwned(headerLength + dataLength);
        const frame: Frame = {};
        if (headerLength) frame.header = new TextDecoder().decode(body.subarray(0, headerLength));
        if (dataLength) frame.data = new TextDecoder().decode(body.subarray(headerLength));
        if (subject === undefined) subject = JSON.parse(frame.header ?? "{}").subject ?? "";
        frames.push(frame);
        if (frame.header === `"sentinel"`) break;
      }
    } catch {
      /* a cut stream is reported by what it holds */
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    if (subject === undefined) return;
    const seen = this.#streams.get(subject);
    if (seen) seen.push(frames);
    else this.#streams.set(subject, [frames]);
    this.#waiters.get(subject)?.(frames);
    this.#waiters.delete(subject);
  }
}
