/**
 * The request plane's fuzz and fault suite, CI-sized (seeded, bounded; `deno task fuzz` runs
 * the same scenarios longer and prints figures). The service runs as users run it.
 */
import assert from "node:assert/strict";
import { fileBackend } from "../support/backends.ts";
import { readAcks, requestBody, requestFrame, writeAll } from "../support/fake_caller.ts";
import { CallHomeCollector } from "../support/fake_caller.ts";
import { freePort } from "../support/ports.ts";
import { type ServiceProcess, startService } from "../support/service.ts";
import { ByteReader } from "../../src/runtime/codec/byte_reader.ts";
import { ACK } from "../../src/runtime/request_plane/tcp.ts";
import {
  badCallHomePeers,
  badFrames,
  fdCount,
  fdsSettle,
  healthAnswered,
  idleAndSlow,
  type Target,
} from "./scenarios.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 1);
const MAX = 65_536;

function targetOf(service: ServiceProcess, ns: string): Target {
  return {
    port: Number(String(service.ready.address).split(":").at(-1)),
    prefix: `${service.ready.instance_id}/${ns}/GlobalPlanner`,
    pid: service.pid,
    maxMessageSize: MAX,
  };
}

Deno.test("fuzz: bad frames of every class, idle and slow connections, misbehaving call-home peers", async (t) => {
  const backend = await fileBackend();
  const service = await startService({
    args: ["--no-operation"],
    env: { ...backend.env, DYN_NAMESPACE: "fuzz", DYN_TCP_MAX_MESSAGE_SIZE: String(MAX), DYN_LOG: "info" },
  });
  let exited = false;
  service.status.then(() => (exited = true));
  try {
    const target = targetOf(service, "fuzz");
    assert.ok(await healthAnswered(target));
    const baseline = fdCount(target.pid);

    await t.step(
      "300 seeded bad frames: ACKs as the runtime's, accepted ones answered exactly once",
      async () => {
        const stats = await badFrames(target, 300, SEED);
        assert.deepEqual(stats.problems, []);
        assert.equal(stats.frames, 300);
        assert.ok(stats.accepted > 0 && stats.connections > 10, JSON.stringify(stats));
        for (const cls of ["good", "unknown_path", "non_utf8_path", "oversized", "truncated", "garbage"]) {
          assert.ok(stats.byClass[cls] > 0, `seed ${SEED} never picked ${cls}`);
        }
      },
    );

    await t.step("100 idle connections and 5 byte-by-byte writers", async () => {
      const stats = await idleAndSlow(target, 100, 5);
      assert.deepEqual(stats, { idle: 100, slow: 5, servedWhileIdle: true, slowAnswered: 5 });
    });

    await t.step("call-home peers that refuse, reset or never read", async () => {
      const stats = await badCallHomePeers(target, 10);
      assert.equal(stats.acked, 30);
    });

    await t.step("alive, healthy, and no file descriptor left behind", async () => {
      assert.ok(await healthAnswered(target));
      assert.equal(await fdsSettle(target.pid, baseline), baseline);
      assert.equal(exited, false);
    });
    assert.equal(await service.stop("SIGTERM"), 0);
  } finally {
    await service.stop("SIGKILL");
    await backend.cleanup();
  }
});

Deno.test("fault: SIGTERM with requests in flight → every accepted request answered once, exit 0", async () => {
  const backend = await fileBackend();
  const service = await startService({
    args: ["--no-operation"],
    env: { ...backend.env, DYN_NAMESPACE: "fuzz-term", DYN_LOG: "info" },
  });
  const collector = CallHomeCollector.listen();
  try {
    const target = targetOf(service, "fuzz-term");
    const conns = await Promise.all(
      Array.from({ length: 4 }, () => Deno.connect({ hostname: "127.0.0.1", port: target.port })),
    );
    const perConn = 100;
    await Promise.all(conns.map((conn, c) => {
      const frames = Array.from(
        { length: perConn },
        (_, i) => requestFrame(`${target.prefix}/health`, requestBody(`t${c}-${i}`, collector.address, "{}")),
      );
      return writeAll(conn, new Uint8Array(frames.flatMap((f) => [...f])));
    }));
    const exited = service.stop("SIGTERM");
    // Read what each connection ACKed before the plane stopped taking frames.
    const accepted: string[] = [];
    await Promise.all(conns.map(async (conn, c) => {
      const reader = new ByteReader(conn);
      for (let i = 0; i < perConn; i++) {
        const ack = await readAcks(reader, 1).catch(() => null);
        if (ack === null) break;
        assert.deepEqual(ack, [""]);
        accepted.push(`subject-t${c}-${i}`);
      }
      conn.close();
    }));
    assert.equal(await exited, 0);
    for (const subject of accepted) {
      const frames = await collector.stream(subject);
      assert.equal(frames.at(-1)?.header, `"sentinel"`, `${subject} not answered completely`);
    }
    assert.deepEqual(collector.duplicates, []);
    // At least the accepted ones: an ACK written just before the close can be lost to the reset
    // that closing a socket with unread frames causes, so "answered" may exceed "seen ACKed".
    assert.ok(collector.total >= accepted.length && collector.total <= 4 * perConn);
  } finally {
    await collector.close();
    await service.stop("SIGKILL");
    await backend.cleanup();
  }
});

Deno.test("fault: SIGKILL and restart on the same port → the stale path is refused as unknown, the new one served", async () => {
  const backend = await fileBackend();
  const port = freePort();
  const env = {
    ...backend.env,
    DYN_NAMESPACE: "fuzz-kill",
    DYN_TCP_RPC_PORT: String(port),
    DYN_LOG: "info",
  };
  let first: ServiceProcess | undefined = await startService({ args: ["--no-operation"], env });
  let second: ServiceProcess | undefined;
  try {
    const old = targetOf(first, "fuzz-kill");
    assert.notEqual(await first.stop("SIGKILL"), 0);
    first = undefined;
    second = await startService({ args: ["--no-operation"], env });
    const fresh = targetOf(second, "fuzz-kill");
    assert.equal(fresh.port, port);
    assert.notEqual(fresh.prefix, old.prefix);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await writeAll(conn, requestFrame(`${old.prefix}/health`, requestBody("stale", "127.0.0.1:1", "{}")));
      assert.deepEqual(await readAcks(new ByteReader(conn), 1), [
        ACK.unknownEndpoint(`${old.prefix}/health`),
      ]);
    } finally {
      conn.close();
    }
    assert.ok(await healthAnswered(fresh));
    assert.equal(await second.stop("SIGTERM"), 0);
  } finally {
    await first?.stop("SIGKILL");
    await second?.stop("SIGKILL");
    await backend.cleanup();
  }
});

Deno.test("fault: out of file descriptors (EMFILE) → accept backs off, logs once, recovers", async () => {
  const backend = await fileBackend();
  const service = await startService({
    args: ["--no-operation"],
    env: { ...backend.env, DYN_NAMESPACE: "fuzz-fd", DYN_LOG: "info" },
    prefix: ["/usr/bin/prlimit", "--nofile=96:96", "--"],
  });
  const conns: Deno.TcpConn[] = [];
  try {
    const target = targetOf(service, "fuzz-fd");
    // More connections than descriptors left: the kernel completes them, accept() fails.
    for (let i = 0; i < 120; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port: target.port }));
    }
    await service.waitForLog((l) => l.message === "accept failing; backing off");
    for (const c of conns.splice(0)) c.close();
    await service.waitForLog((l) => l.message === "accept works again");
    assert.ok(await healthAnswered(target));
    const failures = service.logs.filter((l) => l.message === "accept failing; backing off");
    assert.equal(failures.length, 1, "the failure is logged once per episode");
    assert.match(String(failures[0].error), /Too many open files|EMFILE/i);
    assert.equal(await service.stop("SIGTERM"), 0);
  } finally {
    for (const c of conns) c.close();
    await service.stop("SIGKILL");
    await backend.cleanup();
  }
});
