/**
 * Body codecs named by the control header's `payload_codec`. We advertise no
 * `request_plane_codec`, so 1.6.1 callers send JSON; MessagePack (named maps) is decoded and
 * answered in kind should a caller send it anyway. Response data frames use the request's codec.
 */
import { decode as decodeMsgpack, encode as encodeMsgpack } from "@msgpack/msgpack";
import { decodeJson, encodeJson } from "./json.ts";

export interface PayloadCodec {
  readonly name: string;
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

export const JSON_CODEC: PayloadCodec = { name: "json", encode: encodeJson, decode: decodeJson };

export const MSGPACK_CODEC: PayloadCodec = {
  name: "msgpack",
  encode: (value) => encodeMsgpack(value),
  decode: (bytes) => decodeMsgpack(bytes),
};

/** The codec for a `payload_codec` value; absent means JSON. */
export function payloadCodec(name: string | undefined): PayloadCodec | undefined {
  if (name === undefined || name === "json") return JSON_CODEC;
  if (name === "msgpack") return MSGPACK_CODEC;
  return undefined;
}
