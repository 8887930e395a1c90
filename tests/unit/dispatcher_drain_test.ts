/**
 * Neither shutdown nor a request waits on a caller forever: a response write that cannot
 * complete (the caller stopped reading) is cut when the grace period ends, or earlier by the
 * write deadline; a call-home connect that never completes is given up after the same deadline.
 */
import assert from "node:assert/strict";
import { createLogger } from "../../src/ops/log.ts";
import { Dispatcher } from "../../src/runtime/dispatcher.ts";
import type { Endpoint } from "../../src/runtime/endpoint.ts";
import { responseOpener } from "../../src/runtime/host.ts";
import { requestBody } from "../support/fake_caller.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const logger = createLogger({ level: "error", sink: () => {} });
const ANSWER_BYTES = 16 << 20;
const huge: Endpoint = {
  name: "huge",
  async *handler() {
    yield "y".repeat(ANSWER_BYTES);
  },
};

/** Resolves `true` if `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const settled = await Promise.race([
    p.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return settled;
}

/** Reads what a never-reading caller had been sent, once the service has let go of it. */
async function drainPeer(conn: Deno.Conn): Promise<number> {
  let received = 0;
  const buf = new Uint8Array(1 << 20);
  try {
    for (let n; (n = await conn.read(buf)) !== null;) received += n;
  } catch { /* reset */ }
  conn.close();
  return received;
}

for (
  const [name, writeTimeoutMs, graceMs] of [["the grace period", 3_600_000, 300], [
    "the write deadline",
    300,
    3_600_000,
  ]] as const
) {
  Deno.test(`drain: a stalled call-home write is cut by ${name}`, async () => {
    const dispatcher = new Dispatcher([huge], responseOpener(writeTimeoutMs), logger);
    const callHome = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      dispatcher.dispatch(huge, {}, requestBody("h", `127.0.0.1:${callHome.addr.port}`, '"x"'));
      const stalled = await callHome.accept(); // and not read while the service writes
      await waitFor(() => dispatcher.inFlight === 1, "the request to be in flight");
      assert.equal(
        await settlesWithin(dispatcher.drain(graceMs), 10_000),
        true,
        "drain waited on the caller",
      );
      assert.equal(dispatcher.inFlight, 0);
      assert.ok(await drainPeer(stalled) < ANSWER_BYTES, "the whole answer was written");
    } finally {
      callHome.close();
    }
  });
}

Deno.test("a call-home connect that never completes is given up after the deadline", async () => {
  const lines: string[] = [];
  const logger = createLogger({ level: "error", sink: (line) => lines.push(line) });
  // A listener that never accepts: once its accept queue is full the kernel drops further SYNs,
  // so a connect hangs (for minutes of SYN retries) instead of failing.
  const full = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const queued: Deno.TcpConn[] = [];
  try {
    while (queued.length < 100_000) {
      const probe = new AbortController();
      const timer = setTimeout(() => probe.abort(), 300);
      try {
        queued.push(
          await Deno.connect({ hostname: "127.0.0.1", port: full.addr.port, signal: probe.signal }),
        );
      } catch {
        break; // this one hung: the queue is full
      } finally {
        clearTimeout(timer);
      }
    }
    const dispatcher = new Dispatcher([huge], responseOpener(300), logger);
    dispatcher.dispatch(huge, {}, requestBody("c", `127.0.0.1:${full.addr.port}`, '"x"'));
    assert.equal(dispatcher.inFlight, 1);
    await waitFor(() => dispatcher.inFlight === 0, "the request to give up its connect", 10_000);
    assert.match(
      lines.join("\n"),
      /cannot open the response stream.*call-home connect to 127\.0\.0\.1:\d+ not done within 300 ms/,
    );
  } finally {
    for (const c of queued) c.close();
    full.close();
  }
});
