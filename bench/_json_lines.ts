/** Reading a benchmark driver's stdout: JSON lines, consumed by key. Private to bench/. */

export type Json = Record<string, unknown>;

export class JsonLines {
  #lines: Json[] = [];
  #waiters: (() => void)[] = [];
  #eof = false;
  /** Resolves when the stream has ended. */
  readonly closed: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.closed = (async () => {
      let buffered = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        buffered += chunk;
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const text = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (text.startsWith("{")) {
            try {
              this.#lines.push(JSON.parse(text));
            } catch { /* not a driver line */ }
          }
        }
        this.#wake();
      }
    })().catch(() => {}).finally(() => {
      this.#eof = true;
      this.#wake();
    });
  }

  /** The next line carrying `key` (consumed); an `exception` line, EOF or `timeoutMs` is an error. */
  async next(key: string, timeoutMs: number): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const i = this.#lines.findIndex((l) => key in l || "exception" in l);
      if (i >= 0) {
        const [line] = this.#lines.splice(i, 1);
        if (!(key in line)) throw new Error(`driver: ${JSON.stringify(line)}`);
        return line;
      }
      if (this.#eof) throw new Error(`driver ended before a "${key}" line`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${key}" line within ${timeoutMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, Math.min(left, 250));
      });
      clearTimeout(timer);
    }
  }

  #wake() {
    this.#waiters.splice(0).forEach((w) => w());
  }
}
