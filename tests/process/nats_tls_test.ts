/**
 * NATS over TLS with the 1.6.1 runtime's variables: a nats-server that requires TLS and a client
 * certificate (a CA made here with openssl), our service with `tls://` and NATS_TLS_*, and a real
 * 1.6.1 caller configured the same way calling it. Without the CA the service exits 1.
 */
import assert from "node:assert/strict";
import { fileBackend, natsPlane } from "../support/backends.ts";
import { runDriver } from "../support/python.ts";
import { serviceCommand, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "gp-nats-tls";

async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
async function makeCerts(dir: string): Promise<void> {
  await openssl(
    dir,
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca"]
      .concat(["-keyout", "ca.key", "-out", "ca.pem"]),
  );
  for (
    const [name, ext] of [["server", "subjectAltName=IP:127.0.0.1"], [
      "client",
      "extendedKeyUsage=clientAuth",
    ]]
  ) {
    await openssl(
      dir,
      ["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`]
        .concat(["-keyout", `${name}.key`, "-out", `${name}.csr`]),
    );
    await Deno.writeTextFile(`${dir}/${name}.ext`, `${ext}\n`);
    await openssl(
      dir,
      ["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key"]
        .concat(["-CAcreateserial", "-days", "1", "-extfile", `${name}.ext`, "-out", `${name}.pem`]),
    );
  }
}

Deno.test({
  name:
    "NATS TLS: tls:// with NATS_TLS_CA_CERT_PATH and a client certificate; a 1.6.1 caller on TLS calls us",
  // nats-server, the service and the Python driver are subprocesses whose pipes Deno counts.
  async fn() {
    // Under /tmp: a path the service's permission set may read.
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-nats-tls-" });
    await makeCerts(dir);
    const backend = await fileBackend();
    const plane = await natsPlane({
      args: ["--tlsverify", "--tlscert", `${dir}/server.pem`, "--tlskey", `${dir}/server.key`]
        .concat(["--tlscacert", `${dir}/ca.pem`]),
    });
    const tlsEnv = {
      ...backend.env,
      DYN_REQUEST_PLANE: "nats",
      NATS_SERVER: plane.nats!.url.replace("nats://", "tls://"),
      NATS_TLS_CA_CERT_PATH: `${dir}/ca.pem`,
      NATS_TLS_CLIENT_CERT_PATH: `${dir}/client.pem`,
      NATS_TLS_CLIENT_KEY_PATH: `${dir}/client.key`,
    };
    try {
      const service = await startService({ args: ["--no-operation"], env: { DYN_NAMESPACE: NS, ...tlsEnv } });
      try {
        const result = await runDriver("call_endpoint.py", [
          "--endpoint",
          `${NS}.GlobalPlanner.health`,
          "--payload",
          "{}",
          "--timeout",
          "20",
        ], tlsEnv);
        assert.deepEqual(result.lines.find((l) => "item" in l), {
          item: { status: "healthy", component: "GlobalPlanner", namespace: NS, managed_namespaces: "all" },
        }, `${result.stdout}\n${result.stderr.slice(-2000)}`);
      } finally {
        assert.equal(await service.stop("SIGTERM"), 0);
      }
      // Without the client certificate the server refuses us: exit 1, naming the server.
      const { NATS_TLS_CLIENT_CERT_PATH: _, NATS_TLS_CLIENT_KEY_PATH: __, ...noClientCert } = tlsEnv;
      const out = await serviceCommand(["--no-operation"], {
        DYN_NAMESPACE: NS,
        DYN_TCP_RPC_HOST: "127.0.0.1",
        NATS_STARTUP_CONNECT_TIMEOUT_SECONDS: "2",
        ...noClientCert,
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 1, stderr);
      assert.match(stderr, /NATS server tls:\/\/127\.0\.0\.1:\d+ /);
    } finally {
      await plane.cleanup();
      await backend.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
