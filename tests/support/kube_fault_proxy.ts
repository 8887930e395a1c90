/**
 * A plain-HTTP loopback proxy in front of the test kube-apiserver that can misbehave on demand:
 * `hang` (new requests get no answer; open streams stop delivering bytes but stay open, as a
 * half-open connection looks to the client), `5xx` (every request answered 503), `watch-error`
 * (watches answered 200 with one non-410 ERROR event, then closed), `watch-empty` (watches
 * answered 200 and closed at once, without an event), and `cut()` (every open
 * stream goes away mid-body). It talks TLS to the API server; to its clients plain HTTP, or TLS
 * with the certificate given (e.g. the API server's own, so in-cluster credentials trust it).
 */
export type FaultMode = "pass" | "hang" | "5xx" | "watch-error" | "watch-empty";

export interface KubeFaultProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  mode: FaultMode;
  /** `METHOD path?query` of every request received, in order. */
  requests: string[];
  /** Watch requests received (subset of `requests`). */
  watches(): number;
  /** Ends every open response stream at once. */
  cut(): void;
  close(): Promise<void>;
}

export function startKubeFaultProxy(
  target: string,
  caPem: string,
  tls?: { cert: string; key: string },
): KubeFaultProxy {
  const client = Deno.createHttpClient({ caCerts: [caPem] });
  const open = new Set<AbortController>();
  /** Upstream bodies not read to the end: cancelled at `close()`, so none outlives the proxy. */
  const unread = new Set<ReadableStreamDefaultReader<Uint8Array>>();
  const held = new Set<() => void>();
  const closing = new AbortController();
  let resumeHeld: (() => void) | undefined;
  let resumed = Promise.resolve();

  const proxy: KubeFaultProxy = {
    url: "",
    requests: [],
    get mode(): FaultMode {
      return mode;
    },
    set mode(next: FaultMode) {
      mode = next;
      if (next === "hang") {
        const { promise, resolve } = Promise.withResolvers<void>();
        resumed = promise;
        resumeHeld = resolve;
      } else {
        resumeHeld?.();
        resumeHeld = undefined;
        resumed = Promise.resolve();
      }
    },
    watches: () => proxy.requests.filter((r) => r.includes("watch=true")).length,
    cut() {
      for (const controller of open) controller.abort(new Error("cut by the fault proxy"));
    },
    async close() {
      closing.abort();
      for (const release of held) release();
      proxy.cut();
      resumeHeld?.();
      await server.shutdown();
      await Promise.all([...unread].map((reader) => reader.cancel().catch(() => {})));
      client.close();
    },
  };
  let mode: FaultMode = "pass";

  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const line = `${request.method} ${url.pathname}${url.search}`;
    proxy.requests.push(line);
    if (mode === "5xx") {
      return Response.json({ kind: "Status", code: 503, message: "injected by the fault proxy" }, {
        status: 503,
      });
    }
    if (mode === "hang") {
      // No answer until the mode changes or the proxy closes; then a 503.
      await new Promise<void>((resolve) => {
        held.add(resolve);
        resumed.then(resolve);
        closing.signal.addEventListener("abort", () => resolve());
      });
      return new Response("released", { status: 503 });
    }
    if (mode === "watch-error" && url.searchParams.get("watch") === "true") {
      return new Response(
        JSON.stringify({ type: "ERROR", object: { kind: "Status", code: 500, message: "injected" } }) + "\n",
        { status: 200, headers: { "content-type": "application/json" } },
      );
    }
    if (mode === "watch-empty" && url.searchParams.get("watch") === "true") {
      return new Response("", { status: 200, headers: { "content-type": "application/json" } });
    }
    const controller = new AbortController();
    open.add(controller);
    const headers = new Headers();
    for (const name of ["authorization", "content-type", "accept"]) {
      const value = request.headers.get(name);
      if (value) headers.set(name, value);
    }
    let upstream: Response;
    try {
      upstream = await fetch(target + url.pathname + url.search, {
        method: request.method,
        headers,
        body: request.body ? await request.arrayBuffer() : undefined,
        client,
        signal: controller.signal,
      });
    } catch (error) {
      open.delete(controller);
      return new Response(String(error), { status: 502 });
    }
    // Chunks pass through unless the proxy hangs (held back, connection kept) or is cut.
    const reader = upstream.body!.getReader();
    unread.add(reader);
    const finished = () => {
      open.delete(controller);
      unread.delete(reader);
    };
    const body = new ReadableStream<Uint8Array>({
      async pull(out) {
        try {
          const { done, value } = await reader.read();
          await Promise.race([
            resumed,
            new Promise((r) => controller.signal.addEventListener("abort", r, { once: true })),
          ]);
          if (controller.signal.aborted) throw controller.signal.reason;
          if (done) {
            finished();
            out.close();
          } else out.enqueue(value);
        } catch (error) {
          // Cut, or the upstream body failed: release what is left of it.
          finished();
          reader.cancel(error).catch(() => {});
          out.error(error);
        }
      },
      cancel(reason) {
        // The client went away: the rest of the upstream body is never read.
        finished();
        reader.cancel(reason).catch(() => {});
        controller.abort();
      },
    });
    // fetch has decoded the body already; its length and encoding headers no longer apply.
    const answer = new Headers(upstream.headers);
    for (const name of ["content-encoding", "content-length", "transfer-encoding"]) answer.delete(name);
    return new Response(body, { status: upstream.status, headers: answer });
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {}, ...tls }, handler);
  proxy.url = `${tls ? "https" : "http"}://127.0.0.1:${server.addr.port}`;
  return proxy;
}
