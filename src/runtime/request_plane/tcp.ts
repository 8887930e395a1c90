/**
 * The TCP request plane (the runtime's default). Frames, many per pooled connection:
 * `u16be path_len | path | u16be hdr_len | headers JSON | u32be body_len | TwoPart body`.
 * Exactly one ACK (`u32be len | text`) per frame, in order; empty = accepted, sent before the
 * handler runs. ACK texts and which failures keep the connection are those of the real 1.6.1
 * `serve_endpoint` (docs/runtime-1.6.1.md, "Request-plane error semantics"): a frame read whole
 * keeps the stream in sync, so only an oversized frame closes the connection.
 *
 * Bounds of our own (the runtime has none): connection count, idle time, requests in flight,
 * a deadline on every ACK write, and a backoff when `accept` fails (e.g. EMFILE).
 */
import { setTimeout as delay } from "node:timers/promises";
import type { TcpSettings } from "../../config/env.ts";
import { errorText } from "../../errors.ts";
import type { Logger } from "../../ops/log.ts";
import { ByteReader } from "../codec/byte_reader.ts";
import { utf8 } from "../codec/json.ts";
import { readTwoPartPrefix, TWO_PART_PREFIX } from "../codec/two_part.ts";
import { IdleTimer } from "../deadlines.ts";
import { type Dispatcher, MAX_CONTROL_HEADER, type OversizedBody } from "../dispatcher.ts";
import type { Endpoint } from "../endpoint.ts";
import { concat, detectLocalIp, formatSocketAddress, writeAllWithin } from "../net.ts";
import { ACK, InFlightLimit } from "./admission.ts";
import type { EndpointPath, RequestPlane } from "./request_plane.ts";

export { ACK };

const EMPTY_ACK = new Uint8Array(4);
/** Frames ACKed together at most (a caller pipelining without pause still gets its ACKs). */
const MAX_ACK_BATCH = 64;
/** Frame prefixes and the small frames planners send fit; larger parts are read on their own. */
const READ_BUFFER = 8 * 1024;
const ACCEPT_BACKOFF_MIN_MS = 10;
const ACCEPT_BACKOFF_MAX_MS = 1_000;
/** Strict, and a leading U+FEFF is part of the path (as for the runtime's `String::from_utf8`). */
const pathDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export class TcpRequestPlane implements RequestPlane {
  #listener: Deno.TcpListener;
  #advertiseHost: string;
  #settings: TcpSettings;
  #logger: Logger;
  #conns = new Set<Deno.TcpConn>();
  #connTasks = new Set<Promise<void>>();
  #accepting = true;
  #closing = new AbortController();
  #serving?: Promise<void>;
  /** Log once per state change, not once per refused connection or frame. */
  #atConnectionLimit = false;
  #limit: InFlightLimit;

  private constructor(
    listener: Deno.TcpListener,
    advertiseHost: string,
    settings: TcpSettings,
    logger: Logger,
  ) {
    this.#listener = listener;
    this.#advertiseHost = advertiseHost;
    this.#settings = settings;
    this.#logger = logger;
    this.#limit = new InFlightLimit(settings.maxInFlight, logger);
  }

  /** Binds `DYN_TCP_RPC_HOST:DYN_TCP_RPC_PORT` (auto-detected IP / OS port when unset). */
  static listen(settings: TcpSettings, logger: Logger): TcpRequestPlane {
    const host = settings.host ?? detectLocalIp();
    const listener = Deno.listen({ hostname: host, port: settings.port, transport: "tcp" });
    const advertise = settings.advertiseHost ??
      (host === "0.0.0.0" || host === "::" ? detectLocalIp() : host);
    return new TcpRequestPlane(listener, advertise, settings, logger);
  }

  get address(): string {
    return formatSocketAddress(this.#advertiseHost, this.#listener.addr.port);
  }

  /** A listening socket takes connections until `close`. */
  get healthy(): boolean {
    return this.#accepting;
  }

  /** The listener is bound before `serve`: nothing to wait for. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  /** Open request connections (for health and tests). */
  get connections(): number {
    return this.#conns.size;
  }

  /**
   * Where callers reach an endpoint. Advertised as 1.6.1 servers do,
   * `{"tcp":"<ip>:<port>/<hex>/<ns>/<comp>/<ep>"}`; callers send everything after the first `/`
   * as the request path. The shorter forms older servers advertised are routed too.
   */
  route(dispatcher: Dispatcher, path: EndpointPath, instanceHex: string): { tcp: string } {
    const advertised = `${instanceHex}/${path.namespace}/${path.component}/${path.endpoint}`;
    for (const p of [advertised, `${instanceHex}/${path.endpoint}`, path.endpoint]) {
      dispatcher.addRoute(p, path.endpoint);
    }
    return { tcp: `${this.address}/${advertised}` };
  }

  serve(dispatcher: Dispatcher): void {
    this.#serving = this.#acceptLoop(dispatcher);
  }

  /** Stops accepting connections and frames; in-flight requests keep their response streams. */
  async close(): Promise<void> {
    this.#accepting = false;
    this.#closing.abort();
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const conn of this.#conns) closeQuietly(conn);
    await this.#serving;
    await Promise.allSettled([...this.#connTasks]);
  }

  async #acceptLoop(dispatcher: Dispatcher) {
    let backoff = 0;
    while (this.#accepting) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (!this.#accepting || error instanceof Deno.errors.BadResource) return;
        // EMFILE/ENFILE and the like persist for a while: retrying at once would spin a core.
        if (backoff === 0) this.#logger.warn("accept failing; backing off", { error: errorText(error) });
        backoff = Math.min(Math.max(backoff * 2, ACCEPT_BACKOFF_MIN_MS), ACCEPT_BACKOFF_MAX_MS);
        await delay(backoff, undefined, { signal: this.#closing.signal }).catch(() => {});
        continue;
      }
      if (backoff !== 0) {
        this.#logger.info("accept works again");
        backoff = 0;
      }
      if (this.#conns.size >= this.#settings.maxConnections) {
        if (!this.#atConnectionLimit) {
          this.#atConnectionLimit = true;
          this.#logger.warn("request connection limit reached; refusing new connections", {
            limit: this.#settings.maxConnections,
          });
        }
        closeQuietly(conn);
        continue;
      }
      if (this.#atConnectionLimit) {
        this.#atConnectionLimit = false;
        this.#logger.info("request connections below the limit again", {
          limit: this.#settings.maxConnections,
        });
      }
      conn.setNoDelay(true);
      this.#conns.add(conn);
      const task = this.#serveConnection(conn, dispatcher).finally(() => {
        this.#conns.delete(conn);
        this.#connTasks.delete(task);
        closeQuietly(conn);
      });
      this.#connTasks.add(task);
    }
  }

  async #serveConnection(conn: Deno.TcpConn, dispatcher: Dispatcher) {
    const reader = new ByteReader(conn, READ_BUFFER);
    const { maxMessageSize: max, idleTimeoutMs, writeTimeoutMs } = this.#settings;
    let idledOut = false;
    const idle = idleTimeoutMs > 0
      ? new IdleTimer(idleTimeoutMs, () => {
        idledOut = true;
        closeQuietly(conn);
      })
      : undefined;
    const armIdle = () => idle?.touch();
    // ACKs of the frames that arrived together leave in one write (in frame order), and only
    // then do their handlers start: what the caller sees is the same, with a write per batch
    // instead of a write per frame. Nothing is held across a read that can block.
    const acks: Uint8Array[] = [];
    const admitted: [Endpoint, Record<string, string>, Uint8Array | OversizedBody][] = [];
    const flush = async () => {
      if (acks.length === 0) return;
      const bytes = concat(acks);
      acks.length = 0;
      await writeAllWithin(conn, bytes, writeTimeoutMs);
      for (const [endpoint, headers, body] of admitted) dispatcher.dispatch(endpoint, headers, body);
      admitted.length = 0;
    };
    try {
      while (true) {
        // Frames read before a close are ACKed and run, as when each was ACKed on its own.
        if (!this.#accepting || acks.length >= MAX_ACK_BATCH || !frameBuffered(reader.unread)) await flush();
        if (!this.#accepting) return;
        const pathPrefix = await reader.readExact(2);
        if (pathPrefix === null) return;
        const pathLength = (pathPrefix[0] << 8) | pathPrefix[1];
        const path = decodePath(await reader.readExactOrThrow(pathLength));
        const headerPrefix = await reader.readExactOrThrow(2);
        const headerLength = (headerPrefix[0] << 8) | headerPrefix[1];
        const headers = parseHeaders(await reader.readExactOrThrow(headerLength));
        const bodyPrefix = await reader.readExactOrThrow(4);
        const bodyLength = new DataView(bodyPrefix.buffer, bodyPrefix.byteOffset, 4).getUint32(0);
        const total = 2 + pathLength + 2 + headerLength + 4 + bodyLength;
        if (total > max) {
          // The body is not read, so the stream cannot be resynchronised: answer and close.
          this.#logger.warn("request frame too large; closing the connection", { bytes: total, limit: max });
          acks.push(ack(ACK.tooLarge(total, max)));
          await flush();
          return;
        }
        if (path === undefined) {
          await reader.skip(bodyLength);
          armIdle();
          this.#logger.warn("request path is not UTF-8", { bytes: pathLength });
          acks.push(ack(ACK.invalidPath));
          continue;
        }
        const endpoint = dispatcher.route(path);
        if (!endpoint) {
          await reader.skip(bodyLength);
          armIdle();
          // A 1.6.1 caller raises `Unavailable` on this text at once (and may fail over); a
          // stale discovery record after a restart on the same port is the usual cause.
          this.#logger.warn("request for an unknown endpoint", { path });
          acks.push(ack(ACK.unknownEndpoint(path)));
          continue;
        }
        // Frames admitted in this batch count as in flight: they start once the batch is ACKed.
        const overloaded = this.#limit.refusal(dispatcher, admitted.length);
        if (overloaded !== undefined) {
          await reader.skip(bodyLength);
          armIdle();
          acks.push(ack(overloaded));
          continue;
        }
        const body = endpoint.maxRequestBytes !== undefined && bodyLength > endpoint.maxRequestBytes
          ? await readControlOnly(reader, bodyLength)
          : await reader.readOwned(bodyLength);
        armIdle();
        acks.push(EMPTY_ACK);
        admitted.push([endpoint, headers, body]);
      }
    } catch (error) {
      if (idledOut) {
        this.#logger.debug("request connection idle; closed", { idle_timeout_ms: idleTimeoutMs });
      } else if (this.#accepting && !(error instanceof Deno.errors.BadResource)) {
        this.#logger.debug("request connection ended", { error: errorText(error) });
      }
    } finally {
      idle?.stop();
    }
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

function ack(text: string): Uint8Array {
  const bytes = utf8(text);
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

/**
 * Reads only the TwoPart control header of an oversized body and skips its data, so the caller
 * can still be told why; without a usable header nobody can be answered and it is skipped too.
 */
async function readControlOnly(reader: ByteReader, bodyLength: number): Promise<OversizedBody> {
  if (bodyLength < TWO_PART_PREFIX) {
    await reader.skip(bodyLength);
    return { bytes: bodyLength };
  }
  const prefix = (await reader.readExactOrThrow(TWO_PART_PREFIX)).slice();
  let headerLength = -1;
  try {
    const lengths = readTwoPartPrefix(prefix);
    if (TWO_PART_PREFIX + lengths.headerLength + lengths.dataLength === bodyLength) {
      headerLength = lengths.headerLength;
    }
  } catch { /* lengths out of range: skipped below */ }
  if (headerLength < 0 || headerLength > MAX_CONTROL_HEADER) {
    await reader.skip(bodyLength - TWO_PART_PREFIX);
    return { bytes: bodyLength };
  }
  const control = await reader.readOwned(headerLength);
  await reader.skip(bodyLength - TWO_PART_PREFIX - headerLength);
  return { bytes: bodyLength, control };
}

/** Whether `bytes` start with a whole request frame (so reading it cannot block). */
export function frameBuffered(bytes: Uint8Array): boolean {
  if (bytes.length < 2) return false;
  let at = 2 + ((bytes[0] << 8) | bytes[1]);
  if (bytes.length < at + 2) return false;
  at += 2 + ((bytes[at] << 8) | bytes[at + 1]);
  if (bytes.length < at + 4) return false;
  const bodyLength = new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0);
  return bytes.length >= at + 4 + bodyLength;
}

function decodePath(bytes: Uint8Array): string | undefined {
  try {
    return pathDecoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Headers are optional metadata: like the runtime, a section that is not UTF-8, not JSON or not
 * an object loses the headers, never the request.
 */
function parseHeaders(bytes: Uint8Array): Record<string, string> {
  const headers: Record<string, string> = {};
  // `{}` (what 1.6.1 callers send without trace context) needs no parse.
  if (bytes.length === 0 || (bytes.length === 2 && bytes[0] === 0x7b && bytes[1] === 0x7d)) return headers;
  try {
    const value = JSON.parse(pathDecoder.decode(bytes));
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) if (typeof v === "string") headers[k] = v;
    }
  } catch { /* see above */ }
  return headers;
}
