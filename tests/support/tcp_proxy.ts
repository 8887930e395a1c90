/** A loopback TCP proxy that counts the connections passing through it (TLS stays end to end). */
export interface CountingProxy {
  port: number;
  connections: number;
  close(): Promise<void>;
}

/** `listenPort`: a fixed port (e.g. one a client was told about before the proxy existed). */
export function startCountingProxy(targetPort: number, listenPort = 0): CountingProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: listenPort });
  const open = new Set<Deno.Conn>();
  const proxy: CountingProxy = {
    port: listener.addr.port,
    connections: 0,
    async close() {
      listener.close();
      for (const c of open) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await accepting;
    },
  };
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable, { preventClose: true });
    } catch { /* peer closed */ }
    for (const c of [from, to]) {
      try {
        c.close();
      } catch { /* closed */ }
      open.delete(c);
    }
  };
  const accepting = (async () => {
    for await (const client of listener) {
      proxy.connections++;
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
      // Without this, Nagle on the proxy's writes meets the peers' delayed ACKs: +40 ms per
      // round trip, which would make every timing through the proxy meaningless.
      (client as Deno.TcpConn).setNoDelay(true);
      upstream.setNoDelay(true);
      open.add(client).add(upstream);
      pipe(client, upstream);
      pipe(upstream, client);
    }
  })().catch(() => {});
  return proxy;
}
