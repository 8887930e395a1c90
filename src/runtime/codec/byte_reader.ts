/**
 * Buffered exact-length reads from a byte stream, for length-prefixed framing. One reader per
 * connection. The buffer stays small: large payloads are read straight into their own array
 * (`readOwned`), and a buffer grown by a large prefix read shrinks back once it is drained, so
 * an idle connection never pins the memory of the largest frame it once carried.
 */

export interface Readable {
  read(p: Uint8Array): Promise<number | null>;
}

export class ByteReader {
  #source: Readable;
  #initialSize: number;
  #buffer: Uint8Array;
  #start = 0;
  #end = 0;

  /** `initialSize`: small for connections that carry only rare, tiny frames (it still grows). */
  constructor(source: Readable, initialSize = 64 * 1024) {
    this.#source = source;
    this.#initialSize = initialSize;
    this.#buffer = new Uint8Array(initialSize);
  }

  /** Bytes already buffered and not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** The buffered bytes not yet consumed; valid only until the next read. */
  get unread(): Uint8Array {
    return this.#buffer.subarray(this.#start, this.#end);
  }

  /** Current buffer capacity (for tests and resource accounting). */
  get capacity(): number {
    return this.#buffer.length;
  }

  /**
   * Reads exactly `n` bytes; `null` on a clean EOF before the first byte. The returned view is
   * valid only until the next call.
   */
  async readExact(n: number): Promise<Uint8Array | null> {
    this.#shrink(n);
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

  /**
   * Reads exactly `n` bytes into a new array the caller owns: what is buffered is copied, the
   * rest is read directly into it, so the shared buffer never grows to a payload's size.
   */
  async readOwned(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    const take = Math.min(n, this.#end - this.#start);
    out.set(this.#buffer.subarray(this.#start, this.#start + take));
    this.#start += take;
    let filled = take;
    while (filled < n) {
      const got = await this.#source.read(out.subarray(filled));
      if (got === null) {
        throw new Deno.errors.UnexpectedEof(`connection closed inside a frame (${filled} of ${n} bytes)`);
      }
      filled += got;
    }
    return out;
  }

  /** Consumes `n` bytes without keeping them (a body nobody will read), through the buffer. */
  async skip(n: number): Promise<void> {
    const take = Math.min(n, this.#end - this.#start);
    this.#start += take;
    let left = n - take;
    while (left > 0) {
      this.#start = this.#end = 0;
      const got = await this.#source.read(this.#buffer.subarray(0, Math.min(left, this.#buffer.length)));
      if (got === null) {
        throw new Deno.errors.UnexpectedEof(`connection closed inside a frame (${n - left} of ${n} bytes)`);
      }
      left -= got;
    }
  }

  /** Back to the initial size once what is pending and what is asked for both fit in it. */
  #shrink(n: number) {
    const pending = this.#end - this.#start;
    if (this.#buffer.length <= this.#initialSize || pending > this.#initialSize || n > this.#initialSize) {
      return;
    }
    const small = new Uint8Array(this.#initialSize);
    small.set(this.#buffer.subarray(this.#start, this.#end));
    this.#buffer = small;
    this.#start = 0;
    this.#end = pending;
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
