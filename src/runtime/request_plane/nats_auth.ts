/**
 * The nats.js options for `NATS_AUTH_*` and `NATS_TLS_*`, shared by the request plane and the
 * `call` client, so both connect to a secured nats-server exactly alike.
 */
import { credsAuthenticator, nkeyAuthenticator } from "@nats-io/nats-core";
import { isIP } from "node:net";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import type { NatsSettings } from "../../config/nats.ts";
import { ConfigError, errorText } from "../../errors.ts";
import { utf8 } from "../codec/json.ts";

/** Reads a credentials or certificate file named by the settings. */
export type TextFileReader = (path: string) => Promise<string>;

/** nats.js connection options (auth and TLS); passed to `connect` as they are. */
export type ConnectAuth = Record<string, unknown>;

/** `host` of `host:port` / `[v6]:port`. */
function hostOf(server: string): string {
  const v6 = /^\[([^\]]+)\]/.exec(server);
  if (v6) return v6[1];
  const colon = server.lastIndexOf(":");
  return colon < 0 ? server : server.slice(0, colon);
}

/** The nats.js options for `NATS_AUTH_*` and `NATS_TLS_*`; files are read here, with clear errors. */
export async function natsConnectionAuth(
  settings: NatsSettings,
  readFile: TextFileReader,
): Promise<ConnectAuth> {
  const read = async (what: string, path: string) => {
    try {
      return await readFile(path);
    } catch (error) {
      throw new ConfigError(`${what} ${path} cannot be read: ${errorText(error)}`, { cause: error });
    }
  };
  const options: ConnectAuth = {};
  const { auth, tls } = settings;
  switch (auth.kind) {
    case "userpass":
      options.user = auth.username;
      options.pass = auth.password;
      break;
    case "token":
      options.token = auth.token;
      break;
    case "nkey":
      options.authenticator = nkeyAuthenticator(utf8(auth.seed));
      break;
    case "credentials":
      options.authenticator = credsAuthenticator(
        utf8(await read("NATS_AUTH_CREDENTIALS_FILE", auth.file)),
      );
      break;
  }
  if (tls) {
    const node: Record<string, unknown> = {};
    if (tls.caFile) node.ca = await read("NATS_TLS_CA_CERT_PATH", tls.caFile);
    if (tls.certFile) node.cert = await read("NATS_TLS_CLIENT_CERT_PATH", tls.certFile);
    if (tls.keyFile) node.key = await read("NATS_TLS_CLIENT_KEY_PATH", tls.keyFile);
    // Passed through to node:tls by the transport.
    if (tls.insecure) node.rejectUnauthorized = false;
    // nats.js leaves the name empty for an IP address, and Deno's node:tls then checks the
    // certificate against "localhost" (an IP may not be a servername): check it against the
    // server's address instead. Host names are checked by nats.js/node:tls as usual.
    const host = hostOf(settings.servers[0]);
    if (isIP(host) && settings.servers.length === 1) {
      node.checkServerIdentity = (_name: string, cert: PeerCertificate) => checkServerIdentity(host, cert);
    }
    options.tls = node;
  }
  return options;
}
