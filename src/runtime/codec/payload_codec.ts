/**
 * Body codecs named by the control header's `payload_codec`. We advertise no
 * `request_plane_codec`, so 1.6.1 callers send JSON; MessagePack (named maps) is decoded and
 * answered in kind should a caller send it anyway. Response data frames use the request's codec.
 * The MessagePack codec is loaded on first use: 1.6.1 callers of ours never need it, and an npm
 * package in the module graph costs the service memory for nothing.
 */
import type { PayloadCodec } from "./codec.ts";
import { decodeJson, encodeJson } from "./json.ts";

export type { PayloadCodec } from "./codec.ts";

export const JSON_CODEC: PayloadCodec = { name: "json", encode: encodeJson, decode: decodeJson };

let _msgpack: Promise<PayloadCodec> | undefined;

/**
 * The codec for a `payload_codec` value (absent means JSON), `undefined` for one we do not speak.
 * JSON is returned as is; MessagePack as a promise the first time (while its module loads).
 */
export function payloadCodec(name: string | undefined): PayloadCodec | Promise<PayloadCodec> | undefined {
  if (name === undefined || name === "json") return JSON_CODEC;
  if (name === "msgpack") {
    return _msgpack ??= import("./msgpack_codec.ts").then((m) => m.MSGPACK_CODEC).catch((error) => {
      _msgpack = undefined; // a failed load is retried by the next caller
      throw error;
    });
  }
  return undefined;
}
