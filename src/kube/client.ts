/**
 * The one HTTP client for the Kubernetes API: Deno's fetch over a single `Deno.HttpClient`
 * (our CA, optional client certificate), so every call reuses one pooled TLS connection
 * (HTTP/2 when the server offers it). Failed calls become `KubeError`s that name the verb,
 * the resource, the object and the HTTP status; a 403 says which RBAC permission is missing.
 */
import { KubeError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import { deadlineAfter } from "../runtime/deadlines.ts";
import { IdleDeadline } from "../timing.ts";
import type { KubeCredentials } from "./credentials.ts";
import { type WatchEvent, watchEvents } from "./watch_events.ts";

/** The fields of a Kubernetes `Status` (meta/v1) this client reads. */
interface _Status {
  message?: string;
}

/** Deadline of one request (connect, answer and body), API discovery and `/version` included. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/**
 * How long a watch may stay silent before it is taken for dead. The API server sends no bookmark
 * on a quiet watch (measured: none in 150 s), so callers ask for watches shorter than this
 * (`timeoutSeconds` 60): a healthy one ends at the server's timeout first, a half-open
 * connection is noticed within this bound, and resuming from the last resourceVersion costs
 * one request.
 */
export const DEFAULT_WATCH_IDLE_MS = 90_000;
/** The `timeoutSeconds` every watch of ours asks for (see `DEFAULT_WATCH_IDLE_MS`). */
export const SERVER_WATCH_TIMEOUT_SECONDS = 60;

/**
 * A watch cut by its idle deadline. Not a sign that the API server is down (a quiet watch
 * without bookmarks looks the same), so it does not count against `reachable`.
 */
export class WatchStalled extends KubeError {}

export interface KubeClientOptions {
  requestTimeoutMs?: number;
  watchIdleMs?: number;
}

/**
 * Decides whether a write (any method but GET) may be sent: returns the signal the write is
 * tied to (its abort cancels the write in flight), `undefined` for writes it does not govern,
 * or throws (the write is not sent). Leader election installs one.
 */
export type WriteFence = (request: KubeTarget & { method: string }) => AbortSignal | undefined;

export interface KubeTarget {
  /** RBAC verb: get, list, watch, patch. */
  verb: string;
  /** Plural resource (with `/subresource` if any), e.g. `dynamographdeployments`. */
  resource: string;
  group: string;
  name?: string;
  namespace?: string;
}

export interface KubeRequest extends KubeTarget {
  method: "GET" | "PATCH" | "POST" | "PUT" | "DELETE";
  path: string;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
}

export class KubeClient {
  readonly server: string;
  #credentials: KubeCredentials;
  #http: Deno.HttpClient;
  #logger: Logger;
  #calls = 0;
  #reachable?: boolean;
  #lastFailure?: string;
  #requestTimeoutMs: number;
  #watchIdleMs: number;
  #fence?: WriteFence;

  constructor(credentials: KubeCredentials, logger: Logger, options: KubeClientOptions = {}) {
    this.server = credentials.server;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#watchIdleMs = options.watchIdleMs ?? DEFAULT_WATCH_IDLE_MS;
    this.#credentials = credentials;
    this.#logger = logger;
    this.#http = Deno.createHttpClient({
      caCerts: credentials.caPem ? [credentials.caPem] : undefined,
      ...(credentials.clientCertPem && credentials.clientKeyPem
        ? { cert: credentials.clientCertPem, key: credentials.clientKeyPem }
        : {}),
    } as Deno.CreateHttpClientOptions);
  }

  /** Whether the last call reached the API server (`undefined` before the first call). */
  get reachable(): boolean | undefined {
    return this.#reachable;
  }

  get lastFailure(): string | undefined {
    return this.#lastFailure;
  }

  /**
   * Checks that the API server answers (`GET /version`, open to every identity) within the
   * request deadline. An error status (e.g. 503 from a server that is shutting down) counts as
   * not reachable until the next call that succeeds.
   */
  async probe(): Promise<boolean> {
    try {
      await this.json({ method: "GET", path: "/version", verb: "get", group: "", resource: "version" });
    } catch (error) {
      this.#reachable = false;
      this.#lastFailure = error instanceof Error ? error.message : String(error);
    }
    return this.#reachable === true;
  }

  /** Installs (or with `undefined` removes) the fence every later write passes first. */
  setWriteFence(fence: WriteFence | undefined): void {
    this.#fence = fence;
  }

  /** API calls made so far (for efficiency tests and metrics). */
  get calls(): number {
    return this.#calls;
  }

  /**
   * Sends a request and returns the parsed JSON body; throws `KubeError` on a non-2xx answer,
   * and on no complete answer within the request deadline.
   */
  async json<T = Record<string, unknown>>(request: KubeRequest): Promise<T> {
    const fenced = request.method !== "GET" ? this.#fence?.(request) : undefined;
    // Cancelled once answered: an `AbortSignal.timeout` would still fire later, building a
    // DOMException (stack trace included) for every call long after it was answered.
    const timeout = new AbortController();
    const deadline = timeout.signal;
    const timer = deadlineAfter(
      this.#requestTimeoutMs,
      () => timeout.abort(new DOMException("request deadline", "TimeoutError")),
    );
    const signals = [deadline, ...(request.signal ? [request.signal] : []), ...(fenced ? [fenced] : [])];
    const signal = signals.length > 1 ? AbortSignal.any(signals) : deadline;
    let text: string;
    let response: Response;
    let received: Response | undefined;
    try {
      response = received = await this.#send({ ...request, signal });
      text = await response.text();
    } catch (error) {
      // Aborted while the body was arriving: release it, or its stream stays open.
      await received?.body?.cancel().catch(() => {});
      // The fence withdrew the permission while the write was in flight: say so.
      if (fenced?.aborted && !request.signal?.aborted) throw fenced.reason;
      throw this.#timedOut(request, deadline, error);
    } finally {
      timer.cancel();
    }
    if (!response.ok) throw this.#error(request, response.status, text);
    return (text ? JSON.parse(text) : {}) as T;
  }

  /**
   * Opens a watch and yields its events. The answer's headers must come within the request
   * deadline; after that the stream is cut (a `KubeError`) once it has been silent for the
   * watch idle deadline. Throws `KubeError` on non-2xx. `onOpen` runs once the server has answered.
   */
  async *watch(request: KubeRequest, onOpen?: () => void): AsyncGenerator<WatchEvent> {
    const idle = new IdleDeadline(
      this.#watchIdleMs,
      () => new Error(`no event or bookmark for ${this.#watchIdleMs / 1000} s`),
    );
    const deadline = AbortSignal.timeout(this.#requestTimeoutMs);
    const opening = AbortSignal.any([idle.signal, deadline, ...(request.signal ? [request.signal] : [])]);
    const streaming = AbortSignal.any([idle.signal, ...(request.signal ? [request.signal] : [])]);
    // One controller for the fetch: the opening deadline applies until the headers arrive only.
    const abort = new AbortController();
    const forward = (from: AbortSignal) => () => abort.abort(from.reason);
    let stopForwarding = _onAbort(opening, forward(opening));
    try {
      let response: Response;
      try {
        response = await this.#send({ ...request, signal: abort.signal });
        if (!response.ok) throw this.#error(request, response.status, await response.text());
      } catch (error) {
        throw this.#timedOut(request, deadline, error, idle);
      }
      stopForwarding();
      stopForwarding = _onAbort(streaming, forward(streaming));
      onOpen?.();
      try {
        for await (const event of watchEvents(response.body!)) {
          idle.touch();
          yield event;
        }
      } catch (error) {
        throw this.#timedOut(request, undefined, error, idle);
      } finally {
        await response.body?.cancel().catch(() => {});
      }
    } finally {
      stopForwarding();
      idle.clear();
      abort.abort();
    }
  }

  close(): void {
    this.#http.close();
  }

  async #send(request: KubeRequest): Promise<Response> {
    let retried = false;
    while (true) {
      const token = await this.#credentials.token();
      this.#calls++;
      let response: Response;
      try {
        response = await fetch(this.server + request.path, {
          method: request.method,
          client: this.#http,
          signal: request.signal,
          headers: {
            accept: "application/json",
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(request.body !== undefined
              ? { "content-type": request.contentType ?? "application/json" }
              : {}),
          },
          body: request.body !== undefined ? JSON.stringify(request.body) : undefined,
        });
      } catch (error) {
        // Our own deadline is reported by the caller (`#timedOut`), a caller's abort as is.
        if (request.signal?.aborted) throw error;
        this.#reachable = false;
        this.#lastFailure = (error as Error).message;
        throw new KubeError(
          `cannot reach the Kubernetes API at ${this.server} (${request.verb} ${_describe(request)}): ${
            (error as Error).message
          }`,
          _target(request),
          { cause: error },
        );
      }
      this.#reachable = true;
      if (response.status === 401 && !retried) {
        await response.body?.cancel();
        retried = true;
        if (await this.#credentials.refreshToken()) {
          this.#logger.info("Kubernetes answered 401; retrying with the re-read token");
          continue;
        }
        // The same token again cannot succeed: fail with the 401 below.
        return new Response("Unauthorized", { status: 401 });
      }
      return response;
    }
  }

  /** Rewrites an abort caused by one of our deadlines into a `KubeError` that says so. */
  #timedOut(
    request: KubeRequest,
    deadline: AbortSignal | undefined,
    error: unknown,
    idle?: IdleDeadline,
  ): unknown {
    if (error instanceof KubeError || request.signal?.aborted) return error;
    if (idle?.expired) {
      return new WatchStalled(
        `Kubernetes watch on ${_describe(request)} at ${this.server}: watch stalled: ${
          (idle.signal.reason as Error).message
        }`,
        _target(request),
        { cause: error },
      );
    }
    if (!deadline?.aborted) return error;
    const what = `no answer within ${this.#requestTimeoutMs / 1000} s`;
    this.#reachable = false;
    this.#lastFailure = what;
    return new KubeError(
      `Kubernetes ${request.verb} on ${_describe(request)} at ${this.server}: ${what}`,
      _target(request),
      { cause: error },
    );
  }

  #error(request: KubeRequest, status: number, text: string): KubeError {
    let reason = text.slice(0, 300);
    try {
      reason = (JSON.parse(text) as _Status).message ?? reason;
    } catch { /* not a Status object */ }
    const what = _describe(request);
    let message: string;
    if (status === 403) {
      // A server-side apply that creates the object is also authorized as `create`: the
      // server's message names the verb it checked, which is the one to grant.
      const verb = /\bcannot (\w+) resource\b/.exec(reason)?.[1] ?? request.verb;
      message = `Kubernetes denied ${verb} on ${what} (HTTP 403): the service account needs RBAC verb ` +
        `"${verb}" on "${request.resource}" in API group "${request.group}"` +
        (request.namespace ? ` in namespace "${request.namespace}"` : "");
    } else if (status === 401) {
      message =
        `Kubernetes rejected the credentials for ${request.verb} on ${what} (HTTP 401), also after re-reading the token`;
    } else {
      message = `Kubernetes ${request.verb} on ${what} failed (HTTP ${status}): ${reason}`;
    }
    return new KubeError(message, { ..._target(request), status });
  }
}

function _onAbort(signal: AbortSignal, listener: () => void): () => void {
  if (signal.aborted) {
    listener();
    return () => {};
  }
  signal.addEventListener("abort", listener, { once: true });
  return () => signal.removeEventListener("abort", listener);
}

function _target(r: KubeTarget): KubeTarget {
  return { verb: r.verb, resource: r.resource, group: r.group, name: r.name, namespace: r.namespace };
}

function _describe(t: KubeTarget): string {
  // As kubectl writes it: `dynamographdeploymentscalingadapters.nvidia.com/scale`.
  const [plural, subresource] = t.resource.split("/");
  const resource = (t.group ? `${plural}.${t.group}` : plural) + (subresource ? `/${subresource}` : "");
  return `${resource}${t.name ? ` '${t.name}'` : ""}${t.namespace ? ` in namespace '${t.namespace}'` : ""}`;
}
