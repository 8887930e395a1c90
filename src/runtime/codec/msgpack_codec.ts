/** MessagePack bodies (named maps), loaded only when a caller sends one (see payload_codec.ts). */
import { decode as decodeMsgpack, encode as encodeMsgpack } from "@msgpack/msgpack";
import type { PayloadCodec } from "./codec.ts";

export const MSGPACK_CODEC: PayloadCodec = {
  name: "msgpack",
  encode: (value) => encodeMsgpack(value),
  decode: (bytes) => decodeMsgpack(bytes),
};
