/**
 * What a Dynamo endpoint is to this process: a name and a handler that turns one request into
 * a stream of response items. Request and response planes are adapters around this.
 */

export interface RequestContext {
  /** The request context id from the control header. */
  id: string;
  /** Request-frame headers (`traceparent`, `x-request-id`, ...). */
  headers: Record<string, string>;
  /** Aborted when the caller sends `stop`/`kill` or the service shuts down. */
  signal: AbortSignal;
}

export type Handler = (request: unknown, context: RequestContext) => AsyncIterable<unknown>;

export interface Endpoint {
  name: string;
  handler: Handler;
  /** Payload the runtime may send as a canary; registered like upstream's `health`. */
  healthCheckPayload?: unknown;
  /**
   * Largest request body this endpoint decodes. A larger one is never held in memory: its
   * data part is skipped on the wire and the caller gets an `Invalid request` error item.
   */
  maxRequestBytes?: number;
}

/** The one place a response stream is written to; implemented per response transport. */
export interface ResponseSink {
  /** Sends one item (the Annotated `data`). */
  send(item: unknown): Promise<void>;
  /** Sends an error item; the caller raises it as an exception. */
  sendError(message: string): Promise<void>;
  /** Ends the stream normally (final frame). */
  end(): Promise<void>;
  /** Closes without the final frame (connection lost or caller stopped). */
  abort(): void;
  /** Aborted when the caller asks to stop or the connection breaks. */
  readonly stopped: AbortSignal;
}
