/**
 * Runs one accepted request: decode the TwoPart body and control header, open the response
 * stream named in `connection_info` first (as the Rust runtime does), then feed the handler's
 * items into it. Every parseable request gets an answer: a malformed body becomes an error
 * item, never silence.
 */
import { errorText, ProtocolError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import { JSON_CODEC, type PayloadCodec, payloadCodec } from "./codec/payload_codec.ts";
import { decodeTwoPart, readTwoPartPrefix, TWO_PART_PREFIX } from "./codec/two_part.ts";
import { type ControlHeader, parseControlHeader } from "./control_header.ts";
import type { Endpoint, ResponseSink } from "./endpoint.ts";

/** Opens the response stream for a request; one implementation per response transport. */
export type ResponseOpener = (
  header: ControlHeader,
  codec: PayloadCodec,
  logger: Logger,
) => Promise<ResponseSink>;

/** A body over the endpoint's `maxRequestBytes`: only its control header was read. */
export interface OversizedBody {
  bytes: number;
  control?: Uint8Array;
}

/** Control headers are a few hundred bytes; a larger one is not worth reading to answer. */
export const MAX_CONTROL_HEADER = 64 * 1024;

/**
 * The oversized body of a plane that holds whole messages (NATS): keeps only the TwoPart control
 * header, so the caller can still be told why, and lets the data go.
 */
export function oversizedBody(body: Uint8Array): OversizedBody {
  if (body.length < TWO_PART_PREFIX) return { bytes: body.length };
  try {
    const { headerLength, dataLength } = readTwoPartPrefix(body);
    if (TWO_PART_PREFIX + headerLength + dataLength !== body.length || headerLength > MAX_CONTROL_HEADER) {
      return { bytes: body.length };
    }
    return { bytes: body.length, control: body.slice(TWO_PART_PREFIX, TWO_PART_PREFIX + headerLength) };
  } catch {
    return { bytes: body.length };
  }
}

/** After the grace period has aborted what still runs: how long to wait for it to unwind. */
const ABORT_WAIT_MS = 1_000;

/** Resolves `true` when `ms` pass before `settled` (which resolves `false`). */
async function raceTimer(settled: Promise<boolean>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = await Promise.race([
    settled,
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), ms))),
  ]);
  clearTimeout(timer);
  return timedOut;
}

export class Dispatcher {
  #endpoints = new Map<string, Endpoint>();
  #routes = new Map<string, Endpoint>();
  #openResponse: ResponseOpener;
  #logger: Logger;
  #inFlight = new Set<Promise<void>>();
  /** Per-request abort controllers, aborted together at shutdown. */
  #running = new Set<AbortController>();

  constructor(endpoints: Endpoint[], openResponse: ResponseOpener, logger: Logger) {
    for (const endpoint of endpoints) this.#endpoints.set(endpoint.name, endpoint);
    this.#openResponse = openResponse;
    this.#logger = logger;
  }

  get endpoints(): Endpoint[] {
    return [...this.#endpoints.values()];
  }

  /** Number of requests currently being answered. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Makes `path` (exactly as sent in request frames) lead to the endpoint named `endpoint`. */
  addRoute(path: string, endpoint: string): void {
    const target = this.#endpoints.get(endpoint);
    if (!target) throw new Error(`no endpoint named ${endpoint}`);
    this.#routes.set(path, target);
  }

  /**
   * Forgets every route: frames that arrive later are answered `Server unavailable: unknown
   * endpoint`, which a 1.6.1 caller raises as `Unavailable` at once. Requests already
   * dispatched keep running.
   */
  clearRoutes(): void {
    this.#routes.clear();
  }

  /** The endpoint for a request path; only paths added with `addRoute` match. */
  route(path: string): Endpoint | undefined {
    return this.#routes.get(path);
  }

  /** Starts answering a request in the background. */
  dispatch(endpoint: Endpoint, headers: Record<string, string>, body: Uint8Array | OversizedBody): void {
    const task = this.#run(endpoint, headers, body).catch((error) =>
      this.#logger.error("request failed unexpectedly", { endpoint: endpoint.name, error })
    );
    this.#inFlight.add(task);
    task.finally(() => this.#inFlight.delete(task));
  }

  /**
   * Waits for in-flight requests up to `graceMs`, then aborts those still running (which closes
   * their response streams, so a write to a caller that stopped reading fails at once) and
   * waits at most `ABORT_WAIT_MS` more: shutdown never depends on what callers do.
   */
  async drain(graceMs: number): Promise<void> {
    const all = Promise.allSettled([...this.#inFlight]).then(() => false);
    if (!await raceTimer(all, graceMs)) return;
    for (const controller of this.#running) controller.abort("service is shutting down");
    if (await raceTimer(all, ABORT_WAIT_MS)) {
      this.#logger.warn("requests still running after shutdown aborted them", {
        requests: this.#inFlight.size,
      });
    }
  }

  async #run(endpoint: Endpoint, headers: Record<string, string>, body: Uint8Array | OversizedBody) {
    let control: ControlHeader;
    let data: Uint8Array | undefined;
    try {
      if (body instanceof Uint8Array) {
        const parts = decodeTwoPart(body);
        control = parseControlHeader(parts.header);
        data = parts.data;
      } else {
        control = parseControlHeader(body.control);
      }
    } catch (error) {
      // Without a control header there is no response address: nothing can be answered.
      this.#logger.warn("dropping request without a usable control header", {
        endpoint: endpoint.name,
        error: errorText(error),
      });
      return;
    }
    const logger = this.#logger.child({ endpoint: endpoint.name, request_id: control.id });
    // An unknown codec is answered in JSON so the caller still learns what went wrong.
    const found = payloadCodec(control.payload_codec);
    let sink: ResponseSink;
    let codec: PayloadCodec | undefined;
    try {
      codec = found instanceof Promise ? await found : found;
      sink = await this.#openResponse(control, codec ?? JSON_CODEC, logger);
    } catch (error) {
      logger.error("cannot open the response stream; the caller will time out", {
        transport: control.connection_info.transport,
        error: errorText(error),
      });
      return;
    }

    if (!(body instanceof Uint8Array)) {
      logger.warn("request body over the endpoint's limit; refused unread", {
        bytes: body.bytes,
        limit: endpoint.maxRequestBytes,
      });
      await sink.sendError(
        `Invalid request: request body of ${body.bytes} bytes exceeds the ${endpoint.maxRequestBytes}-byte ` +
          `limit of ${endpoint.name}`,
      );
      await sink.end();
      return;
    }

    // One controller per request (AbortSignal.any would keep a little state per request alive).
    const controller = new AbortController();
    const stop = () => controller.abort(sink.stopped.reason);
    const cut = () => sink.abort();
    sink.stopped.addEventListener("abort", stop, { once: true });
    controller.signal.addEventListener("abort", cut, { once: true });
    this.#running.add(controller);
    try {
      await this.#stream(endpoint, sink, control, headers, data, codec, controller.signal);
    } finally {
      sink.stopped.removeEventListener("abort", stop);
      controller.signal.removeEventListener("abort", cut);
      this.#running.delete(controller);
    }
  }

  async #stream(
    endpoint: Endpoint,
    sink: ResponseSink,
    control: ControlHeader,
    headers: Record<string, string>,
    data: Uint8Array | undefined,
    codec: PayloadCodec | undefined,
    signal: AbortSignal,
  ) {
    try {
      const request = decodeBody(control.payload_codec, codec, data);
      for await (const item of endpoint.handler(request, { id: control.id, headers, signal })) {
        if (sink.stopped.aborted) return sink.abort();
        await sink.send(item);
      }
    } catch (error) {
      if (sink.stopped.aborted) return sink.abort();
      await sink.sendError(errorText(error));
    }
    await sink.end();
  }
}

function decodeBody(name: string | undefined, codec: PayloadCodec | undefined, data?: Uint8Array): unknown {
  if (!codec) throw new ProtocolError(`Invalid request: unsupported payload_codec "${name}"`);
  if (!data) return null;
  try {
    return codec.decode(data);
  } catch (error) {
    throw new ProtocolError(`Invalid request: body is not valid ${codec.name}: ${errorText(error)}`, {
      cause: error,
    });
  }
}
