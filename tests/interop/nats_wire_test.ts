/**
 * The NATS wire, established against a real ai-dynamo-runtime 1.6.1 `serve_endpoint`
 * (echo_server.py with DYN_REQUEST_PLANE=nats) on a private nats-server: what it advertises in
 * discovery, what it subscribes to, what a 1.6.1 caller sends and how it reads the reply; then
 * the same questions put to our service. docs/runtime-1.6.1.md, "NATS request plane".
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { fileBackend, natsPlane } from "../support/backends.ts";
import { waitFor } from "../support/ports.ts";
import { runDriver, spawnDriver } from "../support/python.ts";
import { startService } from "../support/service.ts";
import { decodeTwoPart, encodeTwoPart } from "../../src/runtime/codec/two_part.ts";
import { utf8 } from "../../src/runtime/codec/json.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "wire";

async function records(dir: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  try {
    for await (const entry of Deno.readDir(`${dir}/v1/instances`)) {
      out.push(JSON.parse(await Deno.readTextFile(`${dir}/v1/instances/${entry.name}`)));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out.sort((a, b) => String(a.endpoint).localeCompare(String(b.endpoint)));
}

Deno.test({
  name: "NATS wire: a real 1.6.1 serve_endpoint and ours — subjects, records, request, ACK",
  // nats-server, the Python runtime and the service are subprocesses whose pipes Deno counts.
  async fn(t) {
    const plane = await natsPlane();
    const upstreamKv = await fileBackend();
    const oursKv = await fileBackend();
    const nats = plane.nats!;
    const nc = await connect({ servers: nats.url });
    const upstream = await spawnDriver("echo_server.py", [
      "--endpoint",
      `${NS}.GlobalPlanner.scale_request`,
      "--extra-endpoint",
      `${NS}.GlobalPlanner.health`,
    ], { ...upstreamKv.env, ...plane.env });
    const service = await startService({
      args: ["--no-operation"],
      env: { DYN_NAMESPACE: NS, ...oursKv.env, ...plane.env },
    });
    try {
      await upstream.waitForLine((l) => l.ready === true);
      const upstreamDir = upstreamKv.env.DYN_FILE_KV;
      await waitFor(async () => (await records(upstreamDir)).length === 2, "upstream's two records");
      const theirs = await records(upstreamDir);
      // From the subject: JSON.parse would round the record's 64-bit instance id.
      const theirHex = (theirs[0].transport as { nats_tcp: string }).nats_tcp.split("-").pop()!;

      await t.step(
        "1.6.1 advertises <ns>_<Component>.<ep>-<hex> but subscribes lower-cased, queue q",
        async () => {
          const advertised = theirs.map((r) => (r.transport as { nats_tcp: string }).nats_tcp);
          const hex = theirHex;
          assert.deepEqual(advertised, [
            `${NS}_GlobalPlanner.health-${hex}`,
            `${NS}_GlobalPlanner.scale_request-${hex}`,
          ]);
          const subs = (await nats.subscriptions()).filter((s) => s.subject.endsWith(`-${hex}`));
          assert.deepEqual(subs.sort((a, b) => a.subject.localeCompare(b.subject)), [
            { subject: `${NS}_globalplanner.health-${hex}`, qgroup: "q" },
            { subject: `${NS}_globalplanner.scale_request-${hex}`, qgroup: "q" },
          ]);
        },
      );

      await t.step("…so a 1.6.1 caller cannot reach it: `NATS request to … failed`", async () => {
        const result = await runDriver("call_endpoint.py", [
          "--endpoint",
          `${NS}.GlobalPlanner.health`,
          "--payload",
          "{}",
          "--timeout",
          "20",
        ], { ...upstreamKv.env, ...plane.env });
        const raised = result.lines.find((l) => "exception" in l) as { message: string } | undefined;
        assert.ok(raised, result.stdout);
        assert.match(raised.message, /NATS request to wire_GlobalPlanner\.health-[0-9a-f]+ failed/);
      });

      await t.step(
        "the request: _INBOX reply, request-id header, TwoPart body with a tcp_server control header; a non-empty reply is raised like a TCP ACK",
        async () => {
          // Stand in for the unreachable upstream on the subject it advertises.
          const sub = nc.subscribe(`${NS}_GlobalPlanner.health-${theirHex}`, { max: 1 });
          const calling = runDriver("call_endpoint.py", [
            "--endpoint",
            `${NS}.GlobalPlanner.health`,
            "--payload",
            '{"x":1}',
            "--timeout",
            "20",
          ], { ...upstreamKv.env, ...plane.env });
          let seen = false;
          for await (const msg of sub) {
            seen = true;
            assert.match(msg.reply ?? "", /^_INBOX\./);
            const requestId = msg.headers?.get("request-id");
            assert.ok(requestId, "request-id header");
            const parts = decodeTwoPart(msg.data);
            const control = JSON.parse(new TextDecoder().decode(parts.header));
            assert.equal(control.id, requestId);
            assert.equal(control.connection_info.transport, "tcp_server");
            const info = JSON.parse(control.connection_info.info);
            assert.match(info.address, /^127\.0\.0\.1:\d+$/);
            assert.equal(info.context, requestId);
            msg.respond(utf8("Server unavailable: stand-in"));
          }
          assert.ok(seen);
          const result = await calling;
          const raised = result.lines.find((l) => "exception" in l) as { message: string } | undefined;
          assert.equal(raised?.message, "Unavailable: Server unavailable: stand-in", result.stdout);
        },
      );

      await t.step("ours: subscribes to exactly what it advertises (case kept), queue q", async () => {
        const hex = service.ready.instance_id as string;
        const ours = await records(oursKv.env.DYN_FILE_KV);
        assert.deepEqual(ours.map((r) => r.transport), [
          { nats_tcp: `${NS}_GlobalPlanner.health-${hex}` },
          { nats_tcp: `${NS}_GlobalPlanner.scale_request-${hex}` },
        ]);
        const subs = (await nats.subscriptions()).filter((s) => s.subject.startsWith(`${NS}_GlobalPlanner.`));
        assert.deepEqual(subs.map((s) => s.qgroup), ["q", "q"]);
        assert.deepEqual(
          subs.map((s) => s.subject).sort(),
          ours.map((r) => (r.transport as { nats_tcp: string }).nats_tcp),
        );
        // The records' other fields are those of a 1.6.1 record.
        const keys = (r: Record<string, unknown>) =>
          Object.keys(r).filter((k) => k !== "device_type" && k !== "request_plane_codec").sort();
        assert.deepEqual(ours.map(keys), theirs.map(keys));
      });

      await t.step("the ACK: an empty reply before the body is looked at, from both", async () => {
        const hex = service.ready.instance_id as string;
        // Not a TwoPart body: a 1.6.1 server ACKs before it decodes, and so do we.
        const junk = utf8("not a two-part body");
        const upstreamAck = await nc.request(`${NS}_globalplanner.health-${theirHex}`, junk, {
          timeout: 5_000,
        });
        assert.equal(upstreamAck.data.length, 0);
        const ourAck = await nc.request(`${NS}_GlobalPlanner.health-${hex}`, junk, { timeout: 5_000 });
        assert.equal(ourAck.data.length, 0);
        // A TwoPart body without a control header: ACKed, then dropped with a warning (nobody to answer).
        const noHeader = await nc.request(
          `${NS}_GlobalPlanner.health-${hex}`,
          encodeTwoPart(undefined, utf8("{}")),
          { timeout: 5_000 },
        );
        assert.equal(noHeader.data.length, 0);
        await service.waitForLog((l) => l.message === "dropping request without a usable control header");
      });
    } finally {
      await nc.close();
      await service.stop("SIGKILL");
      await upstream.stop();
      await plane.cleanup();
      await upstreamKv.cleanup();
      await oursKv.cleanup();
    }
  },
});
