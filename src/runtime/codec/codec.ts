/** A body codec named by the control header's `payload_codec` (see payload_codec.ts). */
export interface PayloadCodec {
  readonly name: string;
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}
