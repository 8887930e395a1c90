/**
 * The NATS request plane against a real nats-server, with a nats.js caller and a call-home
 * listener: ACK before the handler runs, the same refusals as the TCP plane, reconnect and
 * resubscribe after the server restarts (answering what was ACKed before the outage), and a
 * close that drains (every ACKed request is answered, none is ACKed after).
 */
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { TcpSettings } from "../../src/config/env.ts";
import { readNatsSettings } from "../../src/config/nats.ts";
import { createLogger } from "../../src/ops/log.ts";
import { Dispatcher } from "../../src/runtime/dispatcher.ts";
import type { Endpoint } from "../../src/runtime/endpoint.ts";
import { responseOpener } from "../../src/runtime/host.ts";
import { ACK } from "../../src/runtime/request_plane/admission.ts";
import { NatsRequestPlane, natsSubject } from "../../src/runtime/request_plane/nats.ts";
import { CallHomeCollector, requestBody } from "../support/fake_caller.ts";
import { type NatsServer, startNats } from "../support/nats.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const logger = createLogger({ level: "error", sink: () => {} });
const BOUNDS: TcpSettings = {
  port: 0,
  maxMessageSize: 32 * 1024,
  maxConnections: 16,
  idleTimeoutMs: 0,
  maxInFlight: 2,
  writeTimeoutMs: 5_000,
};
const HEX = "1f2e";
/** A data item and the final item, as the call-home stream carries them. */
const answered = (
  data: unknown,
) => [JSON.stringify({ data: { data }, complete_final: false }), '{"complete_final":true}'];
const path = (endpoint: string) => ({ namespace: "ns", component: "Comp", endpoint });

interface Harness {
  nats: NatsServer;
  plane: NatsRequestPlane;
  dispatcher: Dispatcher;
  caller: NatsConnection;
  collector: CallHomeCollector;
  /** Releases the requests waiting in `gate`. */
  open(): void;
  /** Sends a request; resolves with the ACK text (empty = accepted). */
  send(endpoint: string, id: string, payload?: string): Promise<string>;
  answer(id: string): Promise<string[]>;
  close(): Promise<void>;
}

async function harness(bounds: Partial<TcpSettings> = {}): Promise<Harness> {
  const nats = await startNats({ config: "max_payload: 65536\n" });
  let open!: () => void;
  const gateOpen = new Promise<void>((resolve) => (open = resolve));
  const endpoints: Endpoint[] = [
    {
      name: "echo",
      async *handler(request) {
        yield { echo: request };
      },
    },
    {
      name: "gate",
      async *handler(request) {
        await gateOpen;
        yield { gated: request };
      },
    },
    {
      name: "small",
      maxRequestBytes: 1024,
      async *handler(request) {
        yield request;
      },
    },
  ];
  const dispatcher = new Dispatcher(endpoints, responseOpener(5_000), logger);
  const plane = await NatsRequestPlane.connect({
    settings: readNatsSettings((name) => ({ NATS_SERVER: nats.url })[name]),
    bounds: { ...BOUNDS, ...bounds },
    logger,
  });
  for (const e of endpoints) plane.route(dispatcher, path(e.name), HEX);
  plane.serve(dispatcher);
  await plane.flush();
  const caller = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const collector = CallHomeCollector.listen();
  return {
    nats,
    plane,
    dispatcher,
    caller,
    collector,
    open,
    async send(endpoint, id, payload = `"${id}"`) {
      const body = requestBody(id, collector.address, payload);
      const ack = await caller.request(natsSubject(path(endpoint), HEX), body, { timeout: 5_000 });
      return new TextDecoder().decode(ack.data);
    },
    async answer(id) {
      const frames = await collector.stream(`subject-${id}`);
      return frames.map((f) => f.data).filter((d): d is string => d !== undefined);
    },
    async close() {
      open();
      await plane.close();
      await dispatcher.drain(5_000);
      await caller.close();
      await collector.close();
      await nats.stop();
    },
  };
}

Deno.test("NATS plane: the subject is <ns>_<Component>.<ep>-<hex>, advertised as nats_tcp", async () => {
  assert.equal(natsSubject(path("scale_request"), "abc"), "ns_Comp.scale_request-abc");
  const h = await harness();
  try {
    assert.equal(h.plane.healthy, true);
    assert.equal(h.plane.maxPayload, 65536);
    assert.equal(await h.send("echo", "e1"), "");
    assert.deepEqual(await h.answer("e1"), answered({ echo: "e1" }));
  } finally {
    await h.close();
  }
});

Deno.test("NATS plane: a route made while serving (a re-registration under a new id) is subscribed", async () => {
  const h = await harness();
  try {
    const subject = h.plane.route(h.dispatcher, path("echo"), "beef").nats_tcp;
    await h.plane.flush();
    const body = requestBody("late", h.collector.address, '"late"');
    const ack = await h.caller.request(subject, body, { timeout: 5_000 });
    assert.equal(new TextDecoder().decode(ack.data), "");
    assert.deepEqual(await h.answer("late"), answered({ echo: "late" }));
  } finally {
    await h.close();
  }
});

Deno.test("NATS plane: a flush while the server is away gives up after its timeout, with a warning", async () => {
  const nats = await startNats();
  const lines: { level: string; message: string }[] = [];
  const plane = await NatsRequestPlane.connect({
    settings: readNatsSettings((name) => ({ NATS_SERVER: nats.url })[name]),
    bounds: BOUNDS,
    logger: createLogger({ level: "warn", sink: (line) => lines.push(JSON.parse(line)) }),
  });
  try {
    const gaveUp = () => lines.filter((l) => l.message === "NATS flush not answered; registering anyway");
    await plane.flush(100);
    assert.equal(gaveUp().length, 0, "answered while connected");
    await nats.kill();
    await waitFor(() => !plane.healthy, "disconnect noticed");
    await plane.flush(100);
    assert.equal(gaveUp().length, 1);
    assert.equal(gaveUp()[0].level, "warn");
  } finally {
    await plane.close();
    await nats.stop();
  }
});

Deno.test("NATS plane: in-flight limit → `Server overloaded:` reply; below it again → accepted", async () => {
  const h = await harness({ maxInFlight: 2 });
  try {
    assert.equal(await h.send("gate", "g1"), "");
    assert.equal(await h.send("gate", "g2"), "");
    // At the limit (2), not before it: one more is shed with the TCP plane's text.
    assert.equal(await h.send("echo", "shed"), ACK.overloaded(2, 2));
    h.open();
    await h.answer("g1");
    await h.answer("g2");
    await waitFor(() => h.dispatcher.inFlight === 0, "the gated requests to finish");
    assert.equal(await h.send("echo", "after"), "");
    assert.equal(h.collector.count("subject-shed"), 0, "a shed request is not answered on call-home");
  } finally {
    await h.close();
  }
});

Deno.test("NATS plane: bodies over the endpoint limit and messages over the size limit", async () => {
  const h = await harness({ maxMessageSize: 8 * 1024 });
  try {
    // Endpoint limit 1024: ACKed, answered with an error item naming the size, data never decoded.
    const body = `"${"x".repeat(2000)}"`;
    assert.equal(await h.send("small", "big", body), "");
    const [item] = await h.answer("big");
    const bytes = requestBody("big", h.collector.address, body).length;
    assert.match(item, new RegExp(`request body of ${bytes} bytes exceeds the 1024-byte limit of small`));
    // At the endpoint limit exactly: decoded and answered.
    const fits = (id: string) => {
      const overhead = requestBody(id, h.collector.address, '""').length;
      return `"${"y".repeat(1024 - overhead)}"`;
    };
    assert.equal(requestBody("fit", h.collector.address, fits("fit")).length, 1024);
    assert.equal(await h.send("small", "fit", fits("fit")), "");
    assert.match((await h.answer("fit"))[0], /^\{"data":\{"data":"y+"\},"complete_final":false\}$/);
    // Message limit (DYN_TCP_MAX_MESSAGE_SIZE, 8 KiB): one byte over is refused with the TCP text.
    const overhead = requestBody("m1", h.collector.address, '""').length;
    const at = `"${"z".repeat(8 * 1024 - overhead)}"`;
    assert.equal(await h.send("echo", "m1", at), "");
    const over = `"${"z".repeat(8 * 1024 - overhead + 1)}"`;
    assert.equal(await h.send("echo", "m2", over), ACK.tooLarge(8 * 1024 + 1, 8 * 1024));
    // Over the server's max_payload (64 KiB) the caller's client refuses to send at all.
    await assert.rejects(
      h.caller.request(natsSubject(path("echo"), HEX), new Uint8Array(65537), { timeout: 2_000 }),
      /payload|max/i,
    );
  } finally {
    await h.close();
  }
});

Deno.test("NATS plane: nats-server restarts → unhealthy, ACKed request still answered, reconnected and resubscribed", async () => {
  const h = await harness();
  try {
    assert.equal(await h.send("gate", "before"), "");
    await h.nats.kill();
    await waitFor(() => !h.plane.healthy, "the plane to notice the outage");
    // Answered over call-home, which does not use NATS.
    h.open();
    assert.deepEqual(await h.answer("before"), answered({ gated: "before" }));
    await h.nats.start();
    await waitFor(() => h.plane.healthy, "the plane to reconnect", 20_000);
    // The caller reconnects on its own schedule; until it and our resubscription are through,
    // a request finds no responder.
    let ack: string | undefined;
    await waitFor(
      async () => {
        ack = await h.send("echo", "after").catch(() => undefined);
        return ack !== undefined;
      },
      "a request after the restart to be ACKed",
      20_000,
    );
    assert.equal(ack, "");
    assert.deepEqual(await h.answer("after"), answered({ echo: "after" }));
    const subs = (await h.nats.subscriptions()).filter((s) => s.subject.startsWith("ns_Comp."));
    assert.deepEqual(subs.map((s) => `${s.subject} ${s.qgroup}`).sort(), [
      `ns_Comp.echo-${HEX} q`,
      `ns_Comp.gate-${HEX} q`,
      `ns_Comp.small-${HEX} q`,
    ]);
  } finally {
    await h.close();
  }
});

Deno.test("NATS plane: close drains — every ACKed request is answered, nothing is ACKed after", async () => {
  const h = await harness({ maxInFlight: 1000 });
  try {
    const ids = Array.from({ length: 200 }, (_, i) => `d${i}`);
    const sends = ids.map((id) =>
      h.send("echo", id).then((ack) => ({ id, ack }), () => ({ id, ack: undefined }))
    );
    // Close while the requests are on their way.
    const closing = h.plane.close();
    const results = await Promise.all(sends);
    await closing;
    await h.dispatcher.drain(5_000);
    const acked = results.filter((r) => r.ack === "").map((r) => r.id);
    assert.ok(acked.length > 0);
    for (const id of acked) assert.deepEqual(await h.answer(id), answered({ echo: id }));
    assert.equal(h.collector.duplicates.length, 0);
    assert.equal(h.collector.total, acked.length, "only ACKed requests were answered");
    // After close nobody is subscribed: the caller gets no responder, not a silent ACK.
    await assert.rejects(h.send("echo", "late"), /no responders|503/i);
    assert.equal(h.plane.healthy, false);
  } finally {
    await h.close();
  }
});
