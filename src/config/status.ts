/**
 * Settings of the Dynamo system status server (`DYN_SYSTEM_*`, read like ai-dynamo-runtime 1.6.1
 * reads them). The server itself (src/ops/status_server.ts) refuses probe paths that collide
 * with its own routes.
 */
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import type { EnvGetter } from "./env_getter.ts";

/** Every variable `readStatusSettings` reads (for the Deno permission set). */
export const STATUS_ENV_VARS = [
  "DYN_SYSTEM_PORT",
  "DYN_SYSTEM_HOST",
  "DYN_SYSTEM_HEALTH_PATH",
  "DYN_SYSTEM_LIVE_PATH",
] as const;

export interface StatusSettings {
  host: string;
  /** 0 = any free port. */
  port: number;
  healthPath: string;
  livePath: string;
}

const _path = (name: string, fallback: string) =>
  z.string().trim().default(fallback).refine(
    (p) => /^\/[^\s?#]*$/.test(p),
    `${name} must be a URL path starting with '/' (no spaces, '?' or '#')`,
  );

const _schema = z.object({
  // Negative disables the server, as in the runtime (its default is -1).
  DYN_SYSTEM_PORT: z.string().trim().default("-1").refine(
    (s) => /^-?\d+$/.test(s) && Number(s) <= 65535,
    "DYN_SYSTEM_PORT must be an integer: -1 (off), 0 (any free port) or a port up to 65535",
  ).transform(Number),
  DYN_SYSTEM_HOST: z.string().trim().default("0.0.0.0").refine(
    (h) => h.length > 0 && !/\s/.test(h),
    "DYN_SYSTEM_HOST must be a host name or IP address",
  ),
  DYN_SYSTEM_HEALTH_PATH: _path("DYN_SYSTEM_HEALTH_PATH", "/health"),
  DYN_SYSTEM_LIVE_PATH: _path("DYN_SYSTEM_LIVE_PATH", "/live"),
});

/** Status server settings from the environment; `null` when `DYN_SYSTEM_PORT` is negative/unset. */
export function readStatusSettings(getEnv: EnvGetter): StatusSettings | null {
  const raw: Record<string, string> = {};
  for (const name of STATUS_ENV_VARS) {
    const value = getEnv(name);
    // An empty variable counts as unset, as in src/config/env.ts.
    if (value !== undefined && value !== "") raw[name] = value;
  }
  const parsed = _schema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => `${String(i.path[0] ?? "")}: ${i.message}`).join("; "),
      { cause: parsed.error },
    );
  }
  const env = parsed.data;
  if (env.DYN_SYSTEM_PORT < 0) return null;
  return {
    host: env.DYN_SYSTEM_HOST,
    port: env.DYN_SYSTEM_PORT,
    healthPath: env.DYN_SYSTEM_HEALTH_PATH,
    livePath: env.DYN_SYSTEM_LIVE_PATH,
  };
}
