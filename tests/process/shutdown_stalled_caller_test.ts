/**
 * SIGTERM must end the process within the grace period whatever callers do. Here a caller's
 * call-home listener accepts the response connection and never reads it, so the service's
 * write of its largest possible answer can never complete on its own.
 */
import assert from "node:assert/strict";
import { fileBackend } from "../support/backends.ts";
import { readAcks, requestBody, requestFrame, writeAll } from "../support/fake_caller.ts";
import { ByteReader } from "../../src/runtime/codec/byte_reader.ts";
import { startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

/**
 * The largest answer the service can be made to write: a request just under the 1 MiB request
 * limit, echoed in the not-authorized message. (Loopback buffers absorb it, so the write does
 * not stall here; the cut of a stalled write is proven in dispatcher_drain_test.ts, where an
 * endpoint can answer 16 MiB. Before the request limit a 12 MiB request made this test hang.)
 */
const NAMESPACE_BYTES = (1 << 20) - 1024;
const GRACE_SECS = 2;

/** Resolves with the exit code, or `undefined` if the process has not exited after `ms`. */
async function exitWithin(exited: Promise<number>, ms: number): Promise<number | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const code = await Promise.race([
    exited,
    new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms))),
  ]);
  clearTimeout(timer);
  return code;
}

Deno.test("SIGTERM while a caller never reads its response stream → exit 0 within the grace period", async () => {
  const backend = await fileBackend();
  const callHome = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const service = await startService({
    args: ["--no-operation", "--managed-namespaces", "only-this-one"],
    env: {
      ...backend.env,
      DYN_NAMESPACE: "gp-stall",
      DYN_SHUTDOWN_GRACE_SECS: String(GRACE_SECS),
      // Only the grace period may end a stalled write.
      DYN_TCP_WRITE_TIMEOUT_SECS: "3600",
      DYN_LOG: "info",
    },
  });
  let stalled: Deno.Conn | undefined;
  let conn: Deno.TcpConn | undefined;
  try {
    // An unauthorized caller is answered with its namespace in the message: a 1 MiB answer.
    const request = JSON.stringify({
      caller_namespace: "x".repeat(NAMESPACE_BYTES),
      graph_deployment_name: "d",
      k8s_namespace: "k",
      target_replicas: [],
    });
    const port = Number(String(service.ready.address).split(":").at(-1));
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const path = `${service.ready.instance_id}/gp-stall/GlobalPlanner/scale_request`;
    await writeAll(
      conn,
      requestFrame(path, requestBody("big", `127.0.0.1:${callHome.addr.port}`, JSON.stringify(request))),
    );
    assert.deepEqual(await readAcks(new ByteReader(conn), 1), [""]);
    stalled = await callHome.accept(); // and never read
    await service.waitForLog((l) => l.message === "scale request");
    const code = await exitWithin(service.stop("SIGTERM"), (GRACE_SECS + 10) * 1000);
    assert.equal(code, 0, "the service did not exit within the grace period (+10 s)");
  } finally {
    stalled?.close();
    conn?.close();
    callHome.close();
    await service.stop("SIGKILL");
    await backend.cleanup();
  }
});
