/**
 * The `tcp_server` response transport ("call home"): per request the server opens a new TCP
 * connection to the caller's listener, introduces the stream by subject, sends a prologue,
 * the items, the final frame and a sentinel. While streaming the caller may send `"stop"` or
 * `"kill"`; then nothing more may follow.
 */
import { errorText, ProtocolError, SocketTimeout } from "../../errors.ts";
import type { Logger } from "../../ops/log.ts";
import { dataItem, errorItem, FINAL_ITEM } from "../codec/annotated.ts";
import { ByteReader } from "../codec/byte_reader.ts";
import { fromUtf8, utf8 } from "../codec/json.ts";
import type { PayloadCodec } from "../codec/payload_codec.ts";
import { encodeTwoPart, readTwoPartPrefix, TWO_PART_PREFIX } from "../codec/two_part.ts";
import { type Deadline, deadlineAfter } from "../deadlines.ts";
import type { ResponseSink } from "../endpoint.ts";
import { concat, parseSocketAddress, writeAllWithin } from "../net.ts";

export const CALL_HOME_TRANSPORT = "tcp_server";

const PROLOGUE_OK = encodeTwoPart(utf8(`{"error":null}`));
const SENTINEL = encodeTwoPart(utf8(`"sentinel"`));
/** The final frame and the sentinel are the same bytes for every stream of a codec. */
const _endFrames = new Map<PayloadCodec, Uint8Array>();
function endFrames(codec: PayloadCodec): Uint8Array {
  let frames = _endFrames.get(codec);
  if (!frames) {
    _endFrames.set(codec, frames = concat([encodeTwoPart(undefined, codec.encode(FINAL_ITEM)), SENTINEL]));
  }
  return frames;
}
/** Callers call home from one listener each: the last addresses parsed are kept. */
const _addresses = new Map<string, { hostname: string; port: number } | null>();
const ADDRESSES_KEPT = 64;
function socketAddress(text: string): { hostname: string; port: number } | null {
  let address = _addresses.get(text);
  if (address === undefined) {
    if (_addresses.size >= ADDRESSES_KEPT) _addresses.clear();
    _addresses.set(text, address = parseSocketAddress(text));
  }
  return address;
}
/** The normal end of every stream: a constant, so no error (and stack) is built per request. */
const CALLER_CLOSED = "caller closed";
/** How long to wait for the caller to close after the sentinel. */
const LINGER_MS = 10_000;

interface CallHomeInfo {
  address: string;
  subject: string;
  context?: string;
  stream_type?: string;
}

export function parseCallHomeInfo(info: string, requestId: string): CallHomeInfo {
  let parsed: Partial<CallHomeInfo>;
  try {
    parsed = JSON.parse(info);
  } catch (error) {
    throw new ProtocolError("connection_info.info is not JSON", { cause: error });
  }
  if (typeof parsed.address !== "string" || typeof parsed.subject !== "string") {
    throw new ProtocolError("connection_info.info lacks address or subject");
  }
  if (parsed.stream_type !== undefined && parsed.stream_type !== "response") {
    throw new ProtocolError(`unexpected stream_type ${parsed.stream_type}`);
  }
  if (parsed.context !== undefined && parsed.context !== requestId) {
    throw new ProtocolError(`connection_info context ${parsed.context} != request id ${requestId}`);
  }
  return parsed as CallHomeInfo;
}

/**
 * Opens the call-home stream; resolves once connected, with handshake and prologue queued (they
 * leave with the first item, or on the next turn of the event loop). `timeoutMs` bounds the
 * connect and every later write: a caller that stops reading is cut off after it.
 */
export async function openCallHome(
  info: CallHomeInfo,
  codec: PayloadCodec,
  logger: Logger,
  timeoutMs: number,
): Promise<ResponseSink> {
  const address = socketAddress(info.address);
  if (!address) throw new ProtocolError(`call-home address is not an IP socket address: ${info.address}`);
  const connecting = new AbortController();
  const deadline = deadlineAfter(timeoutMs, () =>
    connecting.abort(
      new SocketTimeout(`call-home connect to ${info.address} not done within ${timeoutMs} ms`),
    ));
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: address.hostname, port: address.port, signal: connecting.signal });
  } finally {
    deadline.cancel();
  }
  const handshake = encodeTwoPart(
    utf8(JSON.stringify({ subject: info.subject, stream_type: "response" })),
  );
  return new CallHomeSink(conn, codec, logger, timeoutMs, [handshake, PROLOGUE_OK]);
}

/**
 * Frames are queued and written together: a one-item answer (handshake, prologue, item, final,
 * sentinel) is one write, not three, which was the largest server-side cost per request
 * (`--cpu-prof`, docs/benchmarks.md). What `end()` does not flush leaves on the next turn of the
 * event loop, through one timer shared by every stream queued in that turn.
 */
class CallHomeSink implements ResponseSink {
  static #due = new Set<CallHomeSink>();
  static #dueTimer?: ReturnType<typeof setTimeout>;

  static #flushDue(): void {
    CallHomeSink.#dueTimer = undefined;
    const due = [...CallHomeSink.#due];
    CallHomeSink.#due.clear();
    for (const sink of due) sink.#flushNow();
  }

  #conn: Deno.TcpConn;
  #logger: Logger;
  #codec: PayloadCodec;
  #stop = new AbortController();
  #closed = false;
  #pending: Uint8Array[] = [];
  #flushing: Promise<void> | null = null;
  #linger?: Deadline;
  #writeTimeoutMs: number;
  #written = 0;

  constructor(
    conn: Deno.TcpConn,
    codec: PayloadCodec,
    logger: Logger,
    writeTimeoutMs: number,
    first: Uint8Array[],
  ) {
    this.#conn = conn;
    this.#codec = codec;
    this.#logger = logger;
    this.#writeTimeoutMs = writeTimeoutMs;
    this.#watchCaller();
    this.#queue(first);
  }

  get stopped(): AbortSignal {
    return this.#stop.signal;
  }

  send(item: unknown): Promise<void> {
    return this.#queue([encodeTwoPart(undefined, this.#codec.encode(dataItem(item)))]);
  }

  sendError(message: string): Promise<void> {
    return this.#queue([encodeTwoPart(undefined, this.#codec.encode(errorItem(message)))]);
  }

  async end(): Promise<void> {
    if (!this.#closed && !this.#stop.signal.aborted) {
      this.#pending.push(endFrames(this.#codec));
      await this.#flushNow();
    }
    if (this.#closed) return;
    try {
      await this.#conn.closeWrite();
    } catch { /* the caller may already be gone */ }
    if (this.#closed) return;
    // The read side (#watchCaller) closes the socket on EOF; give up waiting after LINGER_MS.
    this.#linger = deadlineAfter(LINGER_MS, () => this.#close());
  }

  abort(): void {
    this.#close();
  }

  /**
   * Queues frames. While a write is in flight they join the next single write (and the promise
   * is that write's, so a caller that stops reading holds the handler back); otherwise they
   * leave on the next turn unless `end()` comes first.
   */
  #queue(frames: Uint8Array[]): Promise<void> {
    if (this.#closed || this.#stop.signal.aborted) return Promise.resolve();
    this.#pending.push(...frames);
    if (this.#flushing) return this.#flushing;
    CallHomeSink.#dueTimer ??= setTimeout(CallHomeSink.#flushDue, 0);
    CallHomeSink.#due.add(this);
    return Promise.resolve();
  }

  #flushNow(): Promise<void> {
    // The last stream due flushed by itself: no timer left behind (a stopped service has none).
    if (CallHomeSink.#due.delete(this) && CallHomeSink.#due.size === 0) {
      clearTimeout(CallHomeSink.#dueTimer);
      CallHomeSink.#dueTimer = undefined;
    }
    this.#flushing ??= this.#flush().finally(() => (this.#flushing = null));
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0 && !this.#closed) {
      const chunk = concat(this.#pending);
      this.#pending = [];
      try {
        // Nagle holds a write back only while earlier data is unacknowledged: a one-write
        // answer (the usual case) never waits, so the setsockopt is paid only by longer streams.
        if (this.#written++ === 1) this.#conn.setNoDelay(true);
        await writeAllWithin(this.#conn, chunk, this.#writeTimeoutMs);
      } catch (error) {
        if (error instanceof SocketTimeout) {
          this.#logger.warn("caller stopped reading its response stream; cut off", {
            error: errorText(error),
          });
          this.#stop.abort(error);
        } else {
          this.#logger.debug("call-home write failed", { error });
          this.#stop.abort(new ProtocolError("response connection lost", { cause: error }));
        }
        this.#close();
      }
    }
  }

  async #watchCaller(): Promise<void> {
    // Only `"stop"`/`"kill"` ever arrive here: a small buffer, not 64 KiB per request.
    const reader = new ByteReader(this.#conn, 64);
    try {
      while (true) {
        const prefix = await reader.readExact(TWO_PART_PREFIX);
        if (prefix === null) break;
        const { headerLength, dataLength } = readTwoPartPrefix(prefix);
        if (headerLength + dataLength > 4096) throw new ProtocolError("oversized control frame");
        const body = await reader.readExactOrThrow(headerLength + dataLength);
        const text = headerLength ? fromUtf8(body.subarray(0, headerLength)) : "";
        if (text === `"stop"` || text === `"kill"`) {
          this.#stop.abort(new ProtocolError(`caller sent ${text}`));
        }
      }
    } catch (error) {
      if (!this.#closed) this.#logger.debug("call-home read ended", { error });
    } finally {
      if (!this.#stop.signal.aborted) this.#stop.abort(CALLER_CLOSED);
      this.#close();
    }
  }

  #close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#linger?.cancel();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}
