/** NATS connection settings: the 1.6.1 runtime's variables, precedence, defaults and refusals. */
import assert from "node:assert/strict";
import { readEnv } from "../../src/config/env.ts";
import { DEFAULT_NATS_AUTH, type NatsSettings, readNatsSettings } from "../../src/config/nats.ts";
import { ConfigError } from "../../src/errors.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const env = (vars: Record<string, string>) => (name: string) => vars[name];
const nats = (vars: Record<string, string>): NatsSettings => readNatsSettings(env(vars));

function refused(vars: Record<string, string>): string {
  try {
    nats(vars);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail("settings were accepted");
}

Deno.test("NATS defaults: nats://localhost:4222, the runtime's user/user, no TLS, 120 s start-up", () => {
  const s = nats({});
  assert.deepEqual(s.servers, ["localhost:4222"]);
  assert.equal(s.url, "nats://localhost:4222");
  assert.deepEqual(s.auth, DEFAULT_NATS_AUTH);
  assert.deepEqual(DEFAULT_NATS_AUTH, { kind: "userpass", username: "user", password: "user" });
  assert.equal(s.tls, undefined);
  assert.equal(s.startupTimeoutMs, 120_000);
});

Deno.test("NATS settings are read only with DYN_REQUEST_PLANE=nats", () => {
  const base = { DYN_NAMESPACE: "ns", NATS_SERVER: "bogus" };
  assert.equal(readEnv(env(base)).runtime.nats, undefined);
  assert.throws(() => readEnv(env({ ...base, DYN_REQUEST_PLANE: "nats" })), /NATS_SERVER: server must start/);
  const s = readEnv(env({ ...base, DYN_REQUEST_PLANE: "NATS", NATS_SERVER: "nats://127.0.0.1:4333" }));
  assert.equal(s.runtime.requestPlane, "nats");
  assert.deepEqual(s.runtime.nats?.servers, ["127.0.0.1:4333"]);
});

Deno.test("NATS_SERVER: comma list, nats:// or tls://, one scheme", () => {
  assert.deepEqual(nats({ NATS_SERVER: "nats://a:1, nats://b:2/" }).servers, ["a:1", "b:2"]);
  assert.match(refused({ NATS_SERVER: "localhost:4222" }), /must start with 'nats:\/\/' or 'tls:\/\/'/);
  assert.match(refused({ NATS_SERVER: "http://a:1" }), /must start with/);
  assert.match(refused({ NATS_SERVER: "nats://a:1,tls://b:2" }), /mixes/);
  assert.match(refused({ NATS_SERVER: " , " }), /at least one server/);
});

Deno.test("NATS auth precedence: user+password, token, nkey, credentials file", () => {
  const all = {
    NATS_AUTH_USERNAME: "u",
    NATS_AUTH_PASSWORD: "p",
    NATS_AUTH_TOKEN: "t",
    NATS_AUTH_NKEY: "SUSEED",
    NATS_AUTH_CREDENTIALS_FILE: "/etc/global-planner/nats.creds",
  };
  assert.deepEqual(nats(all).auth, { kind: "userpass", username: "u", password: "p" });
  // A username without its password does not count (the runtime needs both).
  const { NATS_AUTH_PASSWORD: _, ...noPassword } = all;
  assert.deepEqual(nats(noPassword).auth, { kind: "token", token: "t" });
  const { NATS_AUTH_TOKEN: __, ...noToken } = noPassword;
  assert.deepEqual(nats(noToken).auth, { kind: "nkey", seed: "SUSEED" });
  assert.deepEqual(nats({ NATS_AUTH_CREDENTIALS_FILE: "/x.creds" }).auth, {
    kind: "credentials",
    file: "/x.creds",
  });
});

Deno.test("NATS TLS needs tls://, with the runtime's message; cert and key together", () => {
  assert.equal(
    refused({ NATS_TLS_CA_CERT_PATH: "/ca.pem" }),
    "NATS TLS is configured (NATS_TLS_CA_CERT_PATH, NATS_TLS_INSECURE, or a client certificate) but " +
      "NATS_SERVER does not use the 'tls://' scheme: nats://localhost:4222",
  );
  assert.match(refused({ NATS_TLS_INSECURE: "true" }), /does not use the 'tls:\/\/' scheme/);
  // Insecure off is not "TLS configured".
  assert.equal(nats({ NATS_TLS_INSECURE: "false" }).tls, undefined);
  assert.match(refused({ NATS_TLS_INSECURE: "maybe" }), /NATS_TLS_INSECURE must be true or false/);
  assert.match(
    refused({ NATS_SERVER: "tls://a:1", NATS_TLS_CLIENT_CERT_PATH: "/c.pem" }),
    /must be set together/,
  );
  assert.deepEqual(
    nats({
      NATS_SERVER: "tls://a:1",
      NATS_TLS_CA_CERT_PATH: "/ca.pem",
      NATS_TLS_CLIENT_CERT_PATH: "/c.pem",
      NATS_TLS_CLIENT_KEY_PATH: "/k.pem",
      NATS_TLS_INSECURE: "1",
    }).tls,
    { caFile: "/ca.pem", certFile: "/c.pem", keyFile: "/k.pem", insecure: true },
  );
  assert.deepEqual(nats({ NATS_SERVER: "tls://a:1" }).tls, {
    caFile: undefined,
    certFile: undefined,
    keyFile: undefined,
    insecure: false,
  });
});

Deno.test("NATS_STARTUP_CONNECT_TIMEOUT_SECONDS: 1..3600", () => {
  assert.equal(nats({ NATS_STARTUP_CONNECT_TIMEOUT_SECONDS: "1" }).startupTimeoutMs, 1000);
  assert.equal(nats({ NATS_STARTUP_CONNECT_TIMEOUT_SECONDS: "3600" }).startupTimeoutMs, 3_600_000);
  assert.match(refused({ NATS_STARTUP_CONNECT_TIMEOUT_SECONDS: "0" }), /between 1 and 3600/);
  assert.match(refused({ NATS_STARTUP_CONNECT_TIMEOUT_SECONDS: "3601" }), /between 1 and 3600/);
});
