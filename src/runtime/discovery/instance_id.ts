/**
 * The instance id of the Kubernetes discovery backend, derived from the DynamoWorkerMetadata
 * name exactly as the Rust runtime derives it: `DefaultHasher::new()` (SipHash-1-3, both keys
 * zero) over the `str` (its UTF-8 bytes, then one 0xFF byte), masked to 53 bits so the id
 * survives a JavaScript/JSON double. Callers of every language compute the same id from the
 * same name, so it must match bit for bit.
 */

const MASK64 = (1n << 64n) - 1n;
const ID_MASK = (1n << 53n) - 1n;

const rotl = (x: bigint, b: bigint): bigint => ((x << b) | (x >> (64n - b))) & MASK64;

/** SipHash-1-3 with keys (0, 0) over `bytes`, as Rust's `DefaultHasher::new()` computes it. */
export function sipHash13(bytes: Uint8Array): bigint {
  let v0 = 0x736f6d6570736575n;
  let v1 = 0x646f72616e646f6dn;
  let v2 = 0x6c7967656e657261n;
  let v3 = 0x7465646279746573n;
  const round = () => {
    v0 = (v0 + v1) & MASK64;
    v1 = rotl(v1, 13n) ^ v0;
    v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & MASK64;
    v3 = rotl(v3, 16n) ^ v2;
    v0 = (v0 + v3) & MASK64;
    v3 = rotl(v3, 21n) ^ v0;
    v2 = (v2 + v1) & MASK64;
    v1 = rotl(v1, 17n) ^ v2;
    v2 = rotl(v2, 32n);
  };
  const full = bytes.length - (bytes.length % 8);
  const word = (at: number, n: number) => {
    let m = 0n;
    for (let i = n - 1; i >= 0; i--) m = (m << 8n) | BigInt(bytes[at + i]);
    return m;
  };
  for (let at = 0; at < full; at += 8) {
    const m = word(at, 8);
    v3 ^= m;
    round();
    v0 ^= m;
  }
  const last = (BigInt(bytes.length & 0xff) << 56n) | word(full, bytes.length - full);
  v3 ^= last;
  round();
  v0 ^= last;
  v2 ^= 0xffn;
  round();
  round();
  round();
  return v0 ^ v1 ^ v2 ^ v3;
}

/** The instance id for a DynamoWorkerMetadata name (53 bits). */
export function kubeInstanceId(crName: string): bigint {
  const utf8 = new TextEncoder().encode(crName);
  const bytes = new Uint8Array(utf8.length + 1);
  bytes.set(utf8);
  bytes[utf8.length] = 0xff;
  return sipHash13(bytes) & ID_MASK;
}
