/**
 * Minimal client of etcd's HTTP/JSON gateway (`/v3/...` on the client port), shared by the
 * discovery registration and the `call` client's lookup: endpoints tried in turn, optional
 * TLS client certificate, one auth token.
 */
import type { EtcdSettings } from "../../config/env.ts";

export class EtcdGateway {
  #endpoints: string[];
  #client?: Deno.HttpClient;
  #token?: string;
  #current = 0;

  private constructor(settings: EtcdSettings, client?: Deno.HttpClient) {
    this.#endpoints = settings.endpoints.map((e) => e.replace(/\/+$/, ""));
    this.#client = client;
  }

  static async open(settings: EtcdSettings): Promise<EtcdGateway> {
    let client: Deno.HttpClient | undefined;
    if (settings.caFile || settings.clientCertFile) {
      client = Deno.createHttpClient({
        caCerts: settings.caFile ? [await Deno.readTextFile(settings.caFile)] : undefined,
        cert: settings.clientCertFile ? await Deno.readTextFile(settings.clientCertFile) : undefined,
        key: settings.clientKeyFile ? await Deno.readTextFile(settings.clientKeyFile) : undefined,
      } as Deno.CreateHttpClientOptions);
    }
    const gateway = new EtcdGateway(settings, client);
    if (settings.username) {
      const reply = await gateway.call<{ token?: string }>("/v3/auth/authenticate", {
        name: settings.username,
        password: settings.password ?? "",
      }, false);
      gateway.#token = reply.token;
    }
    return gateway;
  }

  async call<T = Record<string, unknown>>(
    path: string,
    body: unknown,
    auth = true,
    signal?: AbortSignal,
  ): Promise<T> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.#endpoints.length; attempt++) {
      const endpoint = this.#endpoints[this.#current];
      let response: Response | undefined;
      try {
        response = await fetch(endpoint + path, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(auth && this.#token ? { authorization: this.#token } : {}),
          },
          body: JSON.stringify(body),
          client: this.#client,
          signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(5000)]) : AbortSignal.timeout(5000),
        });
        const text = await response.text();
        if (!response.ok) throw new Error(`${path} → HTTP ${response.status}: ${text.slice(0, 200)}`);
        // keepalive on the gateway streams newline-delimited results; the first one is ours.
        return JSON.parse(text.split("\n")[0]) as T;
      } catch (error) {
        // Aborted while the body was arriving: release it, or its stream stays open.
        await response?.body?.cancel().catch(() => {});
        if (signal?.aborted) throw error;
        lastError = error;
        this.#current = (this.#current + 1) % this.#endpoints.length;
      }
    }
    throw lastError;
  }

  close() {
    this.#client?.close();
  }
}
