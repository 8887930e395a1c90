/**
 * The TCP request plane (the runtime's default). Frames, many per pooled connection:
 * `u16be path_len | path | u16be hdr_len | headers JSON | u32be body_len | TwoPart body`.
 * Exactly one ACK (`u32be len | text`) per frame, in order; empty = accepted, sent before the
 * handler runs. A frame that cannot be framed (bad path length, oversize) gets an error text
 * and the connection is closed, because the stream cannot be resynchronised.
 */
import type { TcpSettings } from "../../config/env.ts";
import type { Logger } from "../../ops/log.ts";
import { ByteReader } from "../codec/byte_reader.ts";
import { fromUtf8, utf8 } from "../codec/json.ts";
import type { Dispatcher } from "../dispatcher.ts";
import { detectLocalIp, formatSocketAddress, writeAll } from "../net.ts";
import type { EndpointPath, RequestPlane } from "./request_plane.ts";

const MAX_PATH = 1024;
const EMPTY_ACK = new Uint8Array(4);

export class TcpRequestPlane implements RequestPlane {
  #listener: Deno.TcpListener;
  #advertiseHost: string;
  #settings: TcpSettings;
  #logger: Logger;
  #conns = new Set<Deno.TcpConn>();
  #accepting = true;
  #serving?: Promise<void>;

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
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    await this.#serving;
  }

  async #acceptLoop(dispatcher: Dispatcher) {
    while (this.#accepting) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (!this.#accepting || error instanceof Deno.errors.BadResource) return;
        this.#logger.warn("accept failed", { error });
        continue;
      }
      conn.setNoDelay(true);
      this.#conns.add(conn);
      this.#serveConnection(conn, dispatcher).finally(() => {
        this.#conns.delete(conn);
        try {
          conn.close();
        } catch { /* already closed */ }
      });
    }
  }

  async #serveConnection(conn: Deno.TcpConn, dispatcher: Dispatcher) {
    const reader = new ByteReader(conn);
    const max = this.#settings.maxMessageSize;
    try {
      while (this.#accepting) {
        const pathPrefix = await reader.readExact(2);
        if (pathPrefix === null) return;
        const pathLength = (pathPrefix[0] << 8) | pathPrefix[1];
        if (pathLength === 0 || pathLength > MAX_PATH) {
          await writeAll(conn, ack("Invalid endpoint path"));
          return;
        }
        const path = fromUtf8(await reader.readExactOrThrow(pathLength));
        const headerPrefix = await reader.readExactOrThrow(2);
        const headerLength = (headerPrefix[0] << 8) | headerPrefix[1];
        const headers = headerLength
          ? parseHeaders(fromUtf8(await reader.readExactOrThrow(headerLength)))
          : {};
        const bodyPrefix = await reader.readExactOrThrow(4);
        const bodyLength = new DataView(bodyPrefix.buffer, bodyPrefix.byteOffset, 4).getUint32(0);
        const total = 2 + pathLength + 2 + headerLength + 4 + bodyLength;
        if (total > max) {
          await writeAll(conn, ack(`Read error: message of ${total} bytes exceeds the ${max}-byte limit`));
          return;
        }
        const body = (await reader.readExactOrThrow(bodyLength)).slice();
        const endpoint = dispatcher.route(path);
        if (!endpoint) {
          // The frame was read whole, so the stream stays in sync: reject and go on. (1.6.1
          // callers ignore this text and wait; a stale route is all that can cause it.)
          this.#logger.warn("request for an unknown endpoint", { path });
          await writeAll(conn, ack(`Unknown endpoint: ${path}`));
          continue;
        }
        await writeAll(conn, EMPTY_ACK);
        dispatcher.dispatch(endpoint, headers ?? {}, body);
      }
    } catch (error) {
      if (this.#accepting && !(error instanceof Deno.errors.BadResource)) {
        this.#logger.debug("request connection ended", { error: String(error) });
      }
    }
  }
}

function ack(text: string): Uint8Array {
  const bytes = utf8(text);
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

function parseHeaders(text: string): Record<string, string> | undefined {
  try {
    const value = JSON.parse(text);
    if (value && typeof value === "object" && !Array.isArray(value)) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(value)) if (typeof v === "string") headers[k] = v;
      return headers;
    }
  } catch { /* headers are optional metadata; a bad section must not lose the request */ }
  return undefined;
}
