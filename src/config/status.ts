/**
 * Settings of the Dynamo system status server (`DYN_SYSTEM_*`, read like ai-dynamo-runtime 1.6.1
 * reads them). The server itself (src/ops/status_server.ts) refuses probe paths that collide
 * with its own routes.
 */
import { Issues } from "./setting_checks.ts";
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

function _path(issues: Issues, name: string, raw: string | undefined, fallback: string): string {
  const path = raw?.trim() ?? fallback;
  if (!/^\/[^\s?#]*$/.test(path)) {
    issues.add(name, `${name} must be a URL path starting with '/' (no spaces, '?' or '#')`);
  }
  return path;
}

/** Status server settings from the environment; `null` when `DYN_SYSTEM_PORT` is negative/unset. */
export function readStatusSettings(getEnv: EnvGetter): StatusSettings | null {
  const raw: Record<string, string> = {};
  for (const name of STATUS_ENV_VARS) {
    const value = getEnv(name);
    // An empty variable counts as unset, as in src/config/env.ts.
    if (value !== undefined && value !== "") raw[name] = value;
  }
  const issues = new Issues();
  // Negative disables the server, as in the runtime (its default is -1).
  const port = raw.DYN_SYSTEM_PORT?.trim() ?? "-1";
  if (!(/^-?\d+$/.test(port) && Number(port) <= 65535)) {
    issues.add(
      "DYN_SYSTEM_PORT",
      "DYN_SYSTEM_PORT must be an integer: -1 (off), 0 (any free port) or a port up to 65535",
    );
  }
  const host = raw.DYN_SYSTEM_HOST?.trim() ?? "0.0.0.0";
  if (!(host.length > 0 && !/\s/.test(host))) {
    issues.add("DYN_SYSTEM_HOST", "DYN_SYSTEM_HOST must be a host name or IP address");
  }
  const env = {
    DYN_SYSTEM_PORT: Number(port),
    DYN_SYSTEM_HOST: host,
    DYN_SYSTEM_HEALTH_PATH: _path(issues, "DYN_SYSTEM_HEALTH_PATH", raw.DYN_SYSTEM_HEALTH_PATH, "/health"),
    DYN_SYSTEM_LIVE_PATH: _path(issues, "DYN_SYSTEM_LIVE_PATH", raw.DYN_SYSTEM_LIVE_PATH, "/live"),
  };
  issues.throwIfAny();
  if (env.DYN_SYSTEM_PORT < 0) return null;
  return {
    host: env.DYN_SYSTEM_HOST,
    port: env.DYN_SYSTEM_PORT,
    healthPath: env.DYN_SYSTEM_HEALTH_PATH,
    livePath: env.DYN_SYSTEM_LIVE_PATH,
  };
}
