/**
 * Connection settings of the NATS request plane (`DYN_REQUEST_PLANE=nats`), read from the
 * variables ai-dynamo-runtime 1.6.1 reads, with its precedence and defaults (docs/runtime-1.6.1.md,
 * "NATS request plane").
 */
import { ConfigError } from "../errors.ts";
import type { EnvGetter } from "./env_getter.ts";
import { choice, intIn, Issues } from "./setting_checks.ts";

/** Every variable `readNatsSettings` reads (for the Deno permission set). */
export const NATS_ENV_VARS = [
  "NATS_SERVER",
  "NATS_AUTH_USERNAME",
  "NATS_AUTH_PASSWORD",
  "NATS_AUTH_TOKEN",
  "NATS_AUTH_NKEY",
  "NATS_AUTH_CREDENTIALS_FILE",
  "NATS_TLS_CA_CERT_PATH",
  "NATS_TLS_CLIENT_CERT_PATH",
  "NATS_TLS_CLIENT_KEY_PATH",
  "NATS_TLS_INSECURE",
  "NATS_STARTUP_CONNECT_TIMEOUT_SECONDS",
] as const;

/** First match wins, in the runtime's order; with nothing set 1.6.1 sends user `user`, password `user`. */
export type NatsAuth =
  | { kind: "userpass"; username: string; password: string }
  | { kind: "token"; token: string }
  | { kind: "nkey"; seed: string }
  | { kind: "credentials"; file: string };

export interface NatsTls {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Skip verification of the server's certificate (development only). */
  insecure: boolean;
}

export interface NatsSettings {
  /** `host:port` of each server in `NATS_SERVER` (a comma list), scheme stripped. */
  servers: string[];
  /** As written, for logs and errors. */
  url: string;
  auth: NatsAuth;
  /** Set when `NATS_SERVER` uses `tls://`. */
  tls?: NatsTls;
  /** How long start-up keeps retrying an unreachable server (1.6.1: 120 s, backoff 1 s doubling to 5 s). */
  startupTimeoutMs: number;
}

export const DEFAULT_NATS_SERVER = "nats://localhost:4222";
/** The runtime's fallback credentials when no NATS_AUTH_* variable is set (measured, see docs). */
export const DEFAULT_NATS_AUTH: NatsAuth = { kind: "userpass", username: "user", password: "user" };

const SCHEME = /^(nats|tls):\/\/(.+)$/;

interface ParsedNatsEnv {
  NATS_SERVER: string;
  NATS_AUTH_USERNAME?: string;
  NATS_AUTH_PASSWORD?: string;
  NATS_AUTH_TOKEN?: string;
  NATS_AUTH_NKEY?: string;
  NATS_AUTH_CREDENTIALS_FILE?: string;
  NATS_TLS_CA_CERT_PATH?: string;
  NATS_TLS_CLIENT_CERT_PATH?: string;
  NATS_TLS_CLIENT_KEY_PATH?: string;
  NATS_TLS_INSECURE?: boolean;
  NATS_STARTUP_CONNECT_TIMEOUT_SECONDS: number;
}

function _parse(raw: Record<string, string>): ParsedNatsEnv {
  const issues = new Issues();
  const trimmed = (name: string) => raw[name]?.trim();
  const insecure = raw.NATS_TLS_INSECURE === undefined ? undefined : choice(
    issues,
    "NATS_TLS_INSECURE",
    raw.NATS_TLS_INSECURE,
    "false",
    ["true", "false", "1", "0", "yes", "no"],
    (value) => `NATS_TLS_INSECURE must be true or false, got "${value}"`,
  );
  const env: ParsedNatsEnv = {
    NATS_SERVER: trimmed("NATS_SERVER") ?? DEFAULT_NATS_SERVER,
    NATS_AUTH_USERNAME: raw.NATS_AUTH_USERNAME,
    NATS_AUTH_PASSWORD: raw.NATS_AUTH_PASSWORD,
    NATS_AUTH_TOKEN: raw.NATS_AUTH_TOKEN,
    NATS_AUTH_NKEY: trimmed("NATS_AUTH_NKEY"),
    NATS_AUTH_CREDENTIALS_FILE: trimmed("NATS_AUTH_CREDENTIALS_FILE"),
    NATS_TLS_CA_CERT_PATH: trimmed("NATS_TLS_CA_CERT_PATH"),
    NATS_TLS_CLIENT_CERT_PATH: trimmed("NATS_TLS_CLIENT_CERT_PATH"),
    NATS_TLS_CLIENT_KEY_PATH: trimmed("NATS_TLS_CLIENT_KEY_PATH"),
    NATS_TLS_INSECURE: insecure === undefined ? undefined : ["true", "1", "yes"].includes(insecure),
    NATS_STARTUP_CONNECT_TIMEOUT_SECONDS: intIn(
      issues,
      "NATS_STARTUP_CONNECT_TIMEOUT_SECONDS",
      raw.NATS_STARTUP_CONNECT_TIMEOUT_SECONDS,
      1,
      3600,
    ) ??
      120,
  };
  issues.throwIfAny();
  return env;
}

export function readNatsSettings(getEnv: EnvGetter): NatsSettings {
  const raw: Record<string, string> = {};
  for (const name of NATS_ENV_VARS) {
    const value = getEnv(name);
    if (value !== undefined && value !== "") raw[name] = value;
  }
  const env = _parse(raw);
  const urls = env.NATS_SERVER.split(",").map((s) => s.trim()).filter(Boolean);
  if (urls.length === 0) throw new ConfigError("NATS_SERVER: must name at least one server");
  const schemes = new Set<string>();
  const servers = urls.map((url) => {
    const match = SCHEME.exec(url);
    if (!match || !/^[^/\s]+$/.test(match[2].replace(/\/$/, ""))) {
      throw new ConfigError(`NATS_SERVER: server must start with 'nats://' or 'tls://', got "${url}"`);
    }
    schemes.add(match[1]);
    return match[2].replace(/\/$/, "");
  });
  if (schemes.size > 1) throw new ConfigError("NATS_SERVER: mixes 'nats://' and 'tls://' servers");
  const tlsScheme = schemes.has("tls");
  const tlsConfigured = env.NATS_TLS_CA_CERT_PATH !== undefined || env.NATS_TLS_INSECURE === true ||
    env.NATS_TLS_CLIENT_CERT_PATH !== undefined || env.NATS_TLS_CLIENT_KEY_PATH !== undefined;
  if (tlsConfigured && !tlsScheme) {
    // The runtime's own wording.
    throw new ConfigError(
      "NATS TLS is configured (NATS_TLS_CA_CERT_PATH, NATS_TLS_INSECURE, or a client certificate) " +
        `but NATS_SERVER does not use the 'tls://' scheme: ${env.NATS_SERVER}`,
    );
  }
  if ((env.NATS_TLS_CLIENT_CERT_PATH === undefined) !== (env.NATS_TLS_CLIENT_KEY_PATH === undefined)) {
    throw new ConfigError("NATS_TLS_CLIENT_CERT_PATH and NATS_TLS_CLIENT_KEY_PATH must be set together");
  }
  return {
    servers,
    url: env.NATS_SERVER,
    auth: natsAuth(env),
    tls: tlsScheme
      ? {
        caFile: env.NATS_TLS_CA_CERT_PATH,
        certFile: env.NATS_TLS_CLIENT_CERT_PATH,
        keyFile: env.NATS_TLS_CLIENT_KEY_PATH,
        insecure: env.NATS_TLS_INSECURE ?? false,
      }
      : undefined,
    startupTimeoutMs: env.NATS_STARTUP_CONNECT_TIMEOUT_SECONDS * 1000,
  };
}

function natsAuth(env: ParsedNatsEnv): NatsAuth {
  // A username without a password (or the reverse) is skipped, as the runtime does.
  if (env.NATS_AUTH_USERNAME !== undefined && env.NATS_AUTH_PASSWORD !== undefined) {
    return { kind: "userpass", username: env.NATS_AUTH_USERNAME, password: env.NATS_AUTH_PASSWORD };
  }
  if (env.NATS_AUTH_TOKEN !== undefined) return { kind: "token", token: env.NATS_AUTH_TOKEN };
  if (env.NATS_AUTH_NKEY !== undefined) return { kind: "nkey", seed: env.NATS_AUTH_NKEY };
  if (env.NATS_AUTH_CREDENTIALS_FILE !== undefined) {
    return { kind: "credentials", file: env.NATS_AUTH_CREDENTIALS_FILE };
  }
  return DEFAULT_NATS_AUTH;
}
