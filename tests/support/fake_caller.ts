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
