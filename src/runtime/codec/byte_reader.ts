/**
 * Buffered exact-length reads from a byte stream, for length-prefixed framing. One reader per
 * connection; the buffer grows to the largest frame seen and is compacted in place.
 */

export interface Readable {
  read(p: Uint8Array): Promise<number | null>;
}

export class ByteReader {
  #source: Readable;
  #buffer: Uint8Array;
  #start = 0;
  #end = 0;

  /** `initialSize`: small for connections that carry only rare, tiny frames (it still grows). */
  constructor(source: Readable, initialSize = 64 * 1024) {
    this.#source = source;
    this.#buffer = new Uint8Array(initialSize);
  }

  /** Bytes already buffered and not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Reads exactly `n` bytes; `null` on a clean EOF before the first byte. The returned view is
   * valid only until the next call.
   */
  async readExact(n: number): Promise<Uint8Array | null> {
    while (this.#end - this.#start < n) {
      this.#makeRoom(n);
      const got = await this.#source.read(this.#buffer.subarray(this.#end));
      if (got === null) {
        if (this.#end === this.#start) return null;
        throw new Deno.errors.UnexpectedEof(
          `connection closed inside a frame (${this.#end - this.#start} of ${n} bytes)`,
        );
      }
      this.#end += got;
    }
    const view = this.#buffer.subarray(this.#start, this.#start + n);
    this.#start += n;
    return view;
  }

  /** Like `readExact`, but EOF anywhere is an error. */
  async readExactOrThrow(n: number): Promise<Uint8Array> {
    const bytes = await this.readExact(n);
    if (bytes === null) throw new Deno.errors.UnexpectedEof("connection closed inside a frame");
    return bytes;
  }

  #makeRoom(n: number) {
    const pending = this.#end - this.#start;
    if (this.#start > 0 && (this.#buffer.length - this.#end < n - pending)) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#start = 0;
      this.#end = pending;
    }
    if (this.#buffer.length < n) {
      const grown = new Uint8Array(Math.max(n, this.#buffer.length * 2));
      grown.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = grown;
      this.#end = pending;
      this.#start = 0;
    } else if (this.#end === this.#buffer.length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#start = 0;
      this.#end = pending;
    }
  }
}
