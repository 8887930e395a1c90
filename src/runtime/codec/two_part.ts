/**
 * The runtime's TwoPart message: `u64be header_len | u64be data_len | u64be checksum |
 * header | data`. Upstream release builds send checksum 0 and only debug builds verify it, so
 * we send 0 and ignore it on receipt. A zero-length part is "absent".
 */
import { ProtocolError } from "../../errors.ts";

export const TWO_PART_PREFIX = 24;
/** The largest high 32-bit half of a safe integer (2^53 - 1 = 0x1FFFFF_FFFFFFFF). */
const SAFE_HIGH = 0x1f_ffff;

export interface TwoPart {
  header?: Uint8Array;
  data?: Uint8Array;
}

export function encodeTwoPart(header?: Uint8Array, data?: Uint8Array): Uint8Array {
  const headerLength = header?.length ?? 0;
  const dataLength = data?.length ?? 0;
  const out = new Uint8Array(TWO_PART_PREFIX + headerLength + dataLength);
  // Lengths fit in 53 bits: high and low 32-bit halves, no BigInt (an allocation) per frame.
  const view = new DataView(out.buffer);
  view.setUint32(0, Math.floor(headerLength / 0x1_0000_0000));
  view.setUint32(4, headerLength >>> 0);
  view.setUint32(8, Math.floor(dataLength / 0x1_0000_0000));
  view.setUint32(12, dataLength >>> 0);
  // bytes 16..24: checksum 0
  if (header) out.set(header, TWO_PART_PREFIX);
  if (data) out.set(data, TWO_PART_PREFIX + headerLength);
  return out;
}

/** Decodes one complete TwoPart message (e.g. a request body). */
export function decodeTwoPart(bytes: Uint8Array): TwoPart {
  if (bytes.length < TWO_PART_PREFIX) {
    throw new ProtocolError(`TwoPart message too short: ${bytes.length} bytes`);
  }
  const { headerLength, dataLength } = readTwoPartPrefix(bytes);
  if (TWO_PART_PREFIX + headerLength + dataLength !== bytes.length) {
    throw new ProtocolError(
      `TwoPart lengths ${headerLength}+${dataLength} do not match a ${bytes.length}-byte body`,
    );
  }
  const headerEnd = TWO_PART_PREFIX + headerLength;
  return {
    header: headerLength ? bytes.subarray(TWO_PART_PREFIX, headerEnd) : undefined,
    data: dataLength ? bytes.subarray(headerEnd, headerEnd + dataLength) : undefined,
  };
}

export function readTwoPartPrefix(bytes: Uint8Array): { headerLength: number; dataLength: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, TWO_PART_PREFIX);
  const headerHigh = view.getUint32(0);
  const dataHigh = view.getUint32(8);
  // Above 2^53 - 1 a length is not a safe integer: the high half must stay below 2^21.
  if (headerHigh > SAFE_HIGH || dataHigh > SAFE_HIGH) {
    throw new ProtocolError("TwoPart part length out of range");
  }
  return {
    headerLength: headerHigh * 0x1_0000_0000 + view.getUint32(4),
    dataLength: dataHigh * 0x1_0000_0000 + view.getUint32(12),
  };
}
