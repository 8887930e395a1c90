/** JSON helpers for the wire: UTF-8 text in and out, and lossless 64-bit instance ids. */

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeJson(bytes: Uint8Array): unknown {
  return JSON.parse(decoder.decode(bytes));
}

/** Lower-case hex without padding or `0x`, as the runtime writes ids in keys and paths. */
export function instanceHex(id: bigint): string {
  return id.toString(16);
}
