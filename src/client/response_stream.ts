/**
 * The caller's half of the `tcp_server` ("call home") response plane (the server's half is
 * src/runtime/response_plane/call_home.ts). The server connects to our listener and sends, all
 * as TwoPart frames: handshake `{"subject","stream_type"}` and prologue `{"error":null|text}`
 * (header-only JSON), items `{"data":<Annotated>,"complete_final":false}` and the final
 * `{"complete_final":true}` (data-only, in the request's codec), then `"sentinel"` (JSON).
 */
import { ProtocolError } from "../errors.ts";
import { ByteReader } from "../runtime/codec/byte_reader.ts";
import { decodeJson } from "../runtime/codec/json.ts";
import type { PayloadCodec } from "../runtime/codec/payload_codec.ts";
import { readTwoPartPrefix, TWO_PART_PREFIX } from "../runtime/codec/two_part.ts";
import { CallFailed, renderErrorItem } from "./error_text.ts";

/** What came back: the items' `data`, and the error text if the stream carried an error item. */
export interface CallResult {
  items: unknown[];
  error?: string;
}

interface _Frame {
  header?: Uint8Array;
  data?: Uint8Array;
}

/** Largest response frame accepted (the service's default request limit). */
const _MAX_FRAME = 32 * 1024 * 1024;

async function _readFrame(reader: ByteReader): Promise<_Frame | null> {
  const prefix = await reader.readExact(TWO_PART_PREFIX);
  if (prefix === null) return null;
  const { headerLength, dataLength } = readTwoPartPrefix(prefix);
  if (headerLength + dataLength > _MAX_FRAME) {
    throw new ProtocolError(`response frame of ${headerLength + dataLength} bytes`);
  }
  const body = (await reader.readExactOrThrow(headerLength + dataLength)).slice();
  return {
    header: headerLength ? body.subarray(0, headerLength) : undefined,
    data: dataLength ? body.subarray(headerLength) : undefined,
  };
}

function _json(bytes: Uint8Array | undefined, what: string): unknown {
  if (!bytes) throw new ProtocolError(`${what} has no header part`);
  try {
    return decodeJson(bytes);
  } catch (error) {
    throw new ProtocolError(`${what} is not JSON`, { cause: error });
  }
}

/** Accepts call-home connections until one introduces `subject`; others are closed. */
export async function acceptStream(
  listener: Deno.Listener,
  subject: string,
  onConn: (conn: Deno.Conn) => void,
): Promise<{ conn: Deno.Conn; reader: ByteReader }> {
  while (true) {
    const conn = await listener.accept();
    onConn(conn);
    const reader = new ByteReader(conn);
    try {
      const frame = await _readFrame(reader);
      const handshake = _json(frame?.header, "call-home handshake") as Record<string, unknown> | null;
      if (handshake?.subject === subject) return { conn, reader };
    } catch { /* not our stream (a stray connection to the listener); keep waiting */ }
    conn.close();
  }
}

/** Reads prologue, items, final frame and sentinel from an accepted stream. */
export async function readStream(reader: ByteReader, codec: PayloadCodec): Promise<CallResult> {
  const prologue = await _readFrame(reader);
  if (!prologue) throw new CallFailed("Unavailable: Stream ended before generation completed");
  const { error } = _json(prologue.header, "call-home prologue") as { error?: unknown };
  if (error !== null && error !== undefined) {
    // 1.6.1's text for a prologue error.
    throw new CallFailed(
      `Unavailable: Worker generate() failed before response stream: ${
        typeof error === "string" ? error : JSON.stringify(error)
      }`,
    );
  }
  const items: unknown[] = [];
  while (true) {
    const frame = await _readFrame(reader);
    if (!frame) throw new CallFailed("Unavailable: Stream ended before generation completed");
    if (!frame.data) {
      // Header-only after the prologue: the sentinel ends the stream; a sentinel before the
      // final frame is the same early end as a close.
      if (_json(frame.header, "call-home control frame") === "sentinel") {
        throw new CallFailed("Unavailable: Stream ended before generation completed");
      }
      continue;
    }
    const wrapper = codec.decode(frame.data) as Record<string, unknown> | null;
    if (!wrapper || typeof wrapper !== "object") throw new ProtocolError("response item is not an object");
    if (wrapper.complete_final === true) return { items };
    const annotated = wrapper.data as Record<string, unknown> | undefined;
    if (!annotated || typeof annotated !== "object") continue;
    // The caller raises at the error item; what follows is only the final frame and sentinel.
    if (annotated.event === "error") return { items, error: renderErrorItem(annotated) };
    // An item without `data` (comments only) is not an answer: 1.6.1 yields `None` for it.
    if ("data" in annotated && annotated.data !== undefined) items.push(annotated.data);
  }
}
