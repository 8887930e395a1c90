/**
 * The NATS request plane (`DYN_REQUEST_PLANE=nats`), on nats.js. Per endpoint one subscription,
 * queue group `q`, on the subject we advertise as `{"nats_tcp": "<ns>_<Component>.<ep>-<hex>"}`.
 * A request is a plain NATS message whose payload is the runtime's TwoPart body and whose reply
 * subject is the caller's inbox; the reply is the ACK (empty = accepted, sent before the handler
 * runs; otherwise the same texts as the TCP plane's ACK frames, which a 1.6.1 caller raises the
 * same way), and the answer streams over the call-home response plane the control header names.
 * What a real 1.6.1 server does: docs/runtime-1.6.1.md, "NATS request plane".
 *
 * nats.js reconnects by itself and resubscribes; `healthy` follows its status events.
 */
import { connect } from "@nats-io/transport-node";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import type { NatsSettings } from "../../config/nats.ts";
import type { TcpSettings } from "../../config/env.ts";
import { errorText, RequestPlaneError } from "../../errors.ts";
import type { Logger } from "../../ops/log.ts";
import { utf8 } from "../codec/json.ts";
import { type Dispatcher, oversizedBody } from "../dispatcher.ts";
import { ACK, InFlightLimit } from "./admission.ts";
import type { EndpointPath, RequestPlane } from "./request_plane.ts";
import { natsConnectionAuth, type TextFileReader } from "./nats_auth.ts";
import { pause } from "../../timing.ts";

/** The runtime's queue group: several instances behind one subject share its messages. */
export const QUEUE_GROUP = "q";
const EMPTY = new Uint8Array(0);
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 5_000;
/** Per attempt; the overall start-up deadline is `startupTimeoutMs`. */
const CONNECT_ATTEMPT_MS = 5_000;
/** How long a flush may wait for the server's answer before registration goes ahead. */
export const FLUSH_TIMEOUT_MS = 10_000;

/** The subject a 1.6.1 server advertises for an endpoint (`Endpoint::subject_to`). */
export function natsSubject(path: EndpointPath, instanceHex: string): string {
  return `${path.namespace}_${path.component}.${path.endpoint}-${instanceHex}`;
}

export interface NatsPlaneOptions {
  settings: NatsSettings;
  /** The bounds the planes share (`maxMessageSize`, `maxInFlight`). */
  bounds: TcpSettings;
  logger: Logger;
  readFile?: TextFileReader;
  /** Injected by tests; defaults to timers. */
  sleep?: (ms: number) => Promise<void>;
}

export class NatsRequestPlane implements RequestPlane {
  #nc: NatsConnection;
  #settings: NatsSettings;
  #bounds: TcpSettings;
  #logger: Logger;
  #limit: InFlightLimit;
  #subjects: string[] = [];
  #serving?: Dispatcher;
  #subs: Subscription[] = [];
  #connected = true;
  #closing = false;
  #statusTask: Promise<void>;

  private constructor(nc: NatsConnection, options: NatsPlaneOptions) {
    this.#nc = nc;
    this.#settings = options.settings;
    this.#bounds = options.bounds;
    this.#logger = options.logger;
    this.#limit = new InFlightLimit(options.bounds.maxInFlight, options.logger);
    this.#statusTask = this.#watchStatus();
  }

  /**
   * Connects, retrying an unreachable server with backoff (1 s doubling to 5 s) until
   * `startupTimeoutMs`, as the 1.6.1 runtime does; refused credentials fail at once.
   */
  static async connect(options: NatsPlaneOptions): Promise<NatsRequestPlane> {
    const { settings, logger } = options;
    const sleep = options.sleep ?? ((ms) => new Promise<void>((r) => setTimeout(r, ms)));
    const auth = await natsConnectionAuth(settings, options.readFile ?? Deno.readTextFile);
    const deadline = Date.now() + settings.startupTimeoutMs;
    let wait = RETRY_MIN_MS;
    for (let attempt = 1;; attempt++) {
      try {
        const nc = await connect({
          servers: settings.servers,
          name: "global-planner",
          timeout: Math.max(1, Math.min(CONNECT_ATTEMPT_MS, deadline - Date.now())),
          // After the first connection: retry for ever, resubscribing on every reconnect.
          maxReconnectAttempts: -1,
          reconnectTimeWait: RETRY_MIN_MS,
          ...auth,
        });
        logger.info("NATS connected", {
          server: nc.getServer(),
          max_payload: nc.info?.max_payload,
          version: nc.info?.version,
        });
        return new NatsRequestPlane(nc, options);
      } catch (error) {
        const refused = /authorization|authentication|permission/i.test(errorText(error));
        const remaining = deadline - Date.now();
        if (refused || remaining <= 0) {
          throw new RequestPlaneError(
            refused
              ? `NATS server ${settings.url} refused the connection: ${errorText(error)}`
              : `NATS server ${settings.url} not reachable within ${settings.startupTimeoutMs / 1000} s: ${
                errorText(error)
              }`,
            { cause: error },
          );
        }
        logger.warn("NATS not reachable yet; retrying", {
          server: settings.url,
          attempt,
          retry_in_ms: Math.min(wait, remaining),
          error: errorText(error),
        });
        await sleep(Math.min(wait, remaining));
        wait = Math.min(wait * 2, RETRY_MAX_MS);
      }
    }
  }

  /** The server we are connected to (for the ready log). */
  get address(): string {
    return `nats://${this.#nc.getServer()}`;
  }

  /** False while the connection is down (readiness); nats.js is reconnecting then. */
  get healthy(): boolean {
    return this.#connected && !this.#closing;
  }

  /** Largest message the server accepts (its `max_payload`). */
  get maxPayload(): number | undefined {
    return this.#nc.info?.max_payload;
  }

  /**
   * A route made after `serve` (etcd discovery re-registering under a new lease id, a new
   * leader term) is subscribed at once; the ones made before are subscribed by `serve`.
   */
  route(dispatcher: Dispatcher, path: EndpointPath, instanceHex: string): { nats_tcp: string } {
    const subject = natsSubject(path, instanceHex);
    dispatcher.addRoute(subject, path.endpoint);
    // Routing the same subject again (a new term of a leader-elected replica with a fixed id)
    // keeps its one subscription.
    if (!this.#subjects.includes(subject)) {
      this.#subjects.push(subject);
      if (this.#serving) this.#subscribe(this.#serving, subject);
    }
    return { nats_tcp: subject };
  }

  serve(dispatcher: Dispatcher): void {
    this.#serving = dispatcher;
    for (const subject of this.#subjects) this.#subscribe(dispatcher, subject);
  }

  #subscribe(dispatcher: Dispatcher, subject: string): void {
    this.#subs.push(this.#nc.subscribe(subject, {
      queue: QUEUE_GROUP,
      callback: (error, msg) => {
        if (error) {
          this.#logger.warn("NATS subscription error", { subject, error: errorText(error) });
          return;
        }
        this.#onMessage(dispatcher, msg);
      },
    }));
  }

  /**
   * Resolves once the server has seen every subscription (so discovery may name them), or after
   * `FLUSH_TIMEOUT_MS` while the connection is down: nats.js sends the subscriptions again when
   * it reconnects, and a re-registration must not wait on NATS for as long as it is away.
   */
  async flush(timeoutMs: number = FLUSH_TIMEOUT_MS): Promise<void> {
    const stop = new AbortController();
    const flushed = this.#nc.flush().then(() => true);
    try {
      const answered = await Promise.race([flushed, pause(timeoutMs, stop.signal).then(() => false)]);
      if (!answered) {
        flushed.catch(() => {});
        this.#logger.warn("NATS flush not answered; registering anyway", { timeout_ms: timeoutMs });
      }
    } finally {
      stop.abort();
    }
  }

  /**
   * Drains: the server stops routing to us, messages already on their way are still ACKed and
   * dispatched (nothing ACKed is dropped), then the connection closes. In-flight requests keep
   * their call-home streams, which do not use NATS.
   */
  async close(): Promise<void> {
    if (this.#closing) return await this.#statusTask;
    this.#closing = true;
    try {
      if (!this.#nc.isClosed()) await this.#nc.drain();
    } catch (error) {
      this.#logger.debug("NATS drain ended", { error: errorText(error) });
      await this.#nc.close().catch(() => {});
    }
    await this.#statusTask;
  }

  #onMessage(dispatcher: Dispatcher, msg: Msg): void {
    if (!msg.reply) {
      // Nobody to ACK and nobody waiting: a 1.6.1 caller always sends a request with an inbox.
      this.#logger.warn("NATS message without a reply subject; dropped", { subject: msg.subject });
      return;
    }
    const reply = (text: string) => msg.respond(text ? utf8(text) : EMPTY);
    const endpoint = dispatcher.route(msg.subject);
    if (!endpoint) {
      this.#logger.warn("request for an unknown endpoint", { path: msg.subject });
      reply(ACK.unknownEndpoint(msg.subject));
      return;
    }
    const max = this.#bounds.maxMessageSize;
    if (msg.data.length > max) {
      this.#logger.warn("request message too large", { bytes: msg.data.length, limit: max });
      reply(ACK.tooLarge(msg.data.length, max));
      return;
    }
    const overloaded = this.#limit.refusal(dispatcher);
    if (overloaded !== undefined) {
      reply(overloaded);
      return;
    }
    const headers: Record<string, string> = {};
    if (msg.headers) { for (const [key, values] of msg.headers) headers[key] = values[0] ?? ""; }
    // Copied: the message's bytes are a view into the client's read buffer.
    const body = endpoint.maxRequestBytes !== undefined && msg.data.length > endpoint.maxRequestBytes
      ? oversizedBody(msg.data)
      : msg.data.slice();
    reply("");
    dispatcher.dispatch(endpoint, headers, body);
  }

  async #watchStatus(): Promise<void> {
    for await (const status of this.#nc.status()) {
      switch (status.type) {
        case "disconnect":
          this.#connected = false;
          if (!this.#closing) {
            this.#logger.warn("NATS connection lost; reconnecting", { server: status.server });
          }
          break;
        case "reconnect":
          this.#connected = true;
          this.#logger.info("NATS reconnected; subscriptions restored", { server: status.server });
          break;
        case "error":
          this.#logger.warn("NATS error", { error: errorText(status.error) });
          break;
        case "slowConsumer":
          this.#logger.warn("NATS subscription falling behind", { pending: status.pending });
          break;
      }
    }
  }
}
