/**
 * The one HTTP client for the Kubernetes API: Deno's fetch over a single `Deno.HttpClient`
 * (our CA, optional client certificate), so every call reuses one pooled TLS connection
 * (HTTP/2 when the server offers it). Failed calls become `KubeError`s that name the verb,
 * the resource, the object and the HTTP status; a 403 says which RBAC permission is missing.
 */
import type { V1Status } from "@kubernetes/client-node";
import { KubeError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import type { KubeCredentials } from "./credentials.ts";

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

  constructor(credentials: KubeCredentials, logger: Logger) {
    this.server = credentials.server;
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

  /** Checks that the API server answers (`GET /version`, open to every identity). */
  async probe(): Promise<boolean> {
    try {
      await this.json({ method: "GET", path: "/version", verb: "get", group: "", resource: "version" });
    } catch { /* recorded in #reachable */ }
    return this.#reachable === true;
  }

  /** API calls made so far (for efficiency tests and metrics). */
  get calls(): number {
    return this.#calls;
  }

  /** Sends a request and returns the parsed JSON body; throws `KubeError` on a non-2xx answer. */
  async json<T = Record<string, unknown>>(request: KubeRequest): Promise<T> {
    const response = await this.#send(request);
    const text = await response.text();
    if (!response.ok) throw this.#error(request, response.status, text);
    return (text ? JSON.parse(text) : {}) as T;
  }

  /** Opens a streaming response (watch); the caller reads `body`. Throws `KubeError` on non-2xx. */
  async stream(request: KubeRequest): Promise<Response> {
    const response = await this.#send(request);
    if (!response.ok) throw this.#error(request, response.status, await response.text());
    return response;
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

  #error(request: KubeRequest, status: number, text: string): KubeError {
    let reason = text.slice(0, 300);
    try {
      reason = (JSON.parse(text) as V1Status).message ?? reason;
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

function _target(r: KubeTarget): KubeTarget {
  return { verb: r.verb, resource: r.resource, group: r.group, name: r.name, namespace: r.namespace };
}

function _describe(t: KubeTarget): string {
  // As kubectl writes it: `dynamographdeploymentscalingadapters.nvidia.com/scale`.
  const [plural, subresource] = t.resource.split("/");
  const resource = (t.group ? `${plural}.${t.group}` : plural) + (subresource ? `/${subresource}` : "");
  return `${resource}${t.name ? ` '${t.name}'` : ""}${t.namespace ? ` in namespace '${t.namespace}'` : ""}`;
}
