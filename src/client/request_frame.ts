/**
 * The caller's half of the TCP request plane (the server's half is
 * src/runtime/request_plane/tcp.ts): one request frame
 * `u16be path_len | path | u16be hdr_len | headers JSON | u32be body_len | TwoPart body`, and
 * its ACK `u32be len | text` (empty = accepted).
 */
import { ProtocolError } from "../errors.ts";
import type { ByteReader } from "../runtime/codec/byte_reader.ts";
import { fromUtf8, utf8 } from "../runtime/codec/json.ts";
import type { PayloadCodec } from "../runtime/codec/payload_codec.ts";
import { encodeTwoPart } from "../runtime/codec/two_part.ts";
import { CALL_HOME_TRANSPORT } from "../runtime/response_plane/call_home.ts";

export interface RequestIds {
  /** The request id (control header `id`, `request-id` header, call-home `context`). */
  id: string;
  /** Names the response stream in the call-home handshake. */
  subject: string;
}

/** The control header 1.6.1 sends, in its field order. */
export function controlHeader(ids: RequestIds, codec: PayloadCodec, callHomeAddress: string): string {
  return JSON.stringify({
    id: ids.id,
    request_type: "single_in",
    response_type: "many_out",
    payload_codec: codec.name,
    connection_info: {
      transport: CALL_HOME_TRANSPORT,
      info: JSON.stringify({
        address: callHomeAddress,
        subject: ids.subject,
        context: ids.id,
        stream_type: "response",
      }),
    },
  });
}

/** The headers section 1.6.1 sends (no `traceparent` without tracing). */
export function requestHeaders(path: string, id: string, nowMs = Date.now()): string {
  return JSON.stringify({
    "x-endpoint-path": path,
    "x-frontend-send-ts-ns": (BigInt(Math.round(nowMs)) * 1_000_000n).toString(),
    "request-id": id,
  });
}

export function encodeRequestFrame(path: string, headers: string, body: Uint8Array): Uint8Array {
  const p = utf8(path);
  const h = utf8(headers);
  if (p.length === 0 || p.length > 0xffff) throw new ProtocolError(`request path of ${p.length} bytes`);
  if (h.length > 0xffff) throw new ProtocolError(`request headers of ${h.length} bytes`);
  if (body.length > 0xffffffff) throw new ProtocolError(`request body of ${body.length} bytes`);
  const out = new Uint8Array(2 + p.length + 2 + h.length + 4 + body.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, p.length);
  out.set(p, 2);
  view.setUint16(2 + p.length, h.length);
  out.set(h, 4 + p.length);
  view.setUint32(4 + p.length + h.length, body.length);
  out.set(body, 8 + p.length + h.length);
  return out;
}

/** The body both planes carry: TwoPart(control header JSON, payload in the codec). */
export function buildRequestBody(
  ids: RequestIds,
  codec: PayloadCodec,
  callHomeAddress: string,
  payload: unknown,
): Uint8Array {
  return encodeTwoPart(utf8(controlHeader(ids, codec, callHomeAddress)), codec.encode(payload));
}

/** The whole TCP frame for one call: path, headers and the body. */
export function buildRequest(
  path: string,
  ids: RequestIds,
  codec: PayloadCodec,
  callHomeAddress: string,
  payload: unknown,
): Uint8Array {
  const body = buildRequestBody(ids, codec, callHomeAddress, payload);
  return encodeRequestFrame(path, requestHeaders(path, ids.id), body);
}

/** Reads one ACK; `""` = accepted. */
export async function readAck(reader: ByteReader): Promise<string> {
  const prefix = await reader.readExact(4);
  if (prefix === null) throw new ProtocolError("connection closed before the ACK");
  const length = new DataView(prefix.buffer, prefix.byteOffset, 4).getUint32(0);
  if (length > 64 * 1024) throw new ProtocolError(`ACK of ${length} bytes`);
  return length ? fromUtf8(await reader.readExactOrThrow(length)) : "";
}
