/**
 * The Dynamo system status HTTP server (`DYN_SYSTEM_PORT`), which Kubernetes probes in DGD-style
 * pods. It answers like ai-dynamo-runtime 1.6.1 (checked against the real runtime):
 * - `GET $DYN_SYSTEM_HEALTH_PATH` and `GET $DYN_SYSTEM_LIVE_PATH` — the same handler:
 *   `{"status":"ready","uptime":{"secs":S,"nanos":N},"endpoints":{"scale_request":"ready",...}}`
 *   with 200, or `"status":"notready"` with 503 (plus `"reason"`, which 1.6.1 does not send but
 *   tells an operator why). 1.6.1 labels this JSON `text/plain; charset=utf-8`; so do we.
 * - `GET /metrics` — Prometheus text exposition.
 * - other paths → 404 `Route not found`; other methods than GET/HEAD → 405, `allow: GET,HEAD`,
 *   empty body.
 * Readiness is injected, so this file knows nothing about discovery or Kubernetes.
 */
import { z } from "zod";
import type { EnvGetter } from "../config/env.ts";
import { ConfigError, errorText, GlobalPlannerError } from "../errors.ts";
import type { Logger } from "./log.ts";
import { type MetricsSource, PROMETHEUS_CONTENT_TYPE } from "./metrics.ts";

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

export type EndpointHealth = "ready" | "notready";

export interface Readiness {
  ready: boolean;
  /** Bare endpoint names (e.g. `scale_request`) → their state. */
  endpoints: Record<string, EndpointHealth>;
  /** Why not ready; sent only when not ready. */
  reason?: string;
}

export type ReadinessProbe = () => Readiness;

export interface StatusServer {
  port: number;
  close(): Promise<void>;
}

export const METRICS_PATH = "/metrics";
/** The runtime's content type for the health JSON (1.6.1 does not say `application/json`). */
const HEALTH_CONTENT_TYPE = "text/plain; charset=utf-8";

const _path = (name: string, fallback: string) =>
  z.string().trim().default(fallback).refine(
    (p) => /^\/[^\s?#]*$/.test(p),
    `${name} must be a URL path starting with '/' (no spaces, '?' or '#')`,
  ).refine((p) => p !== METRICS_PATH, `${name} must not be ${METRICS_PATH}`);

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

/** Starts listening; resolves once bound, with the actual port (useful when asked for 0). */
export function startStatusServer(
  settings: StatusSettings,
  readiness: ReadinessProbe,
  metrics: MetricsSource,
  logger: Logger,
): Promise<StatusServer> {
  const log = logger.child({ component: "system_status" });
  const handler = (request: Request) => _route(request, settings, readiness, metrics, log);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: settings.host,
      port: settings.port,
      // Replaces Deno's default "Listening on ..." console line with a structured log line.
      onListen: () => {},
      onError: (error) => {
        log.error("system status request failed", { error: errorText(error) });
        return new Response("Internal Server Error", { status: 500 });
      },
    }, handler);
  } catch (error) {
    return Promise.reject(
      new GlobalPlannerError(
        `system status server cannot listen on ${settings.host}:${settings.port}: ${errorText(error)}`,
        { cause: error },
      ),
    );
  }
  const port = server.addr.port;
  log.info("system status server listening", {
    host: settings.host,
    port,
    health_path: settings.healthPath,
    live_path: settings.livePath,
    metrics_path: METRICS_PATH,
  });
  let closing: Promise<void> | undefined;
  return Promise.resolve({
    port,
    close: () => {
      closing ??= server.shutdown().then(() => server.finished);
      return closing;
    },
  });
}

function _route(
  request: Request,
  settings: StatusSettings,
  readiness: ReadinessProbe,
  metrics: MetricsSource,
  log: Logger,
): Response {
  const path = new URL(request.url).pathname;
  const isHealth = path === settings.healthPath;
  const isLive = path === settings.livePath && !isHealth;
  if (!isHealth && !isLive && path !== METRICS_PATH) {
    return _text(request, 404, "Route not found", HEALTH_CONTENT_TYPE);
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response(null, { status: 405, headers: { allow: "GET,HEAD" } });
  }
  if (isLive) {
    // Liveness is the process and its event loop, which answering proves. Registration and the
    // Kubernetes API are readiness: an outage outside this process must not make the kubelet
    // restart every replica.
    const body = JSON.stringify({ status: "live", uptime: _uptime(performance.now()) });
    return _text(request, 200, body, HEALTH_CONTENT_TYPE);
  }
  if (isHealth) {
    const { status, body } = _healthBody(readiness, log);
    return _text(request, status, body, HEALTH_CONTENT_TYPE);
  }
  return _text(request, 200, metrics.render(), PROMETHEUS_CONTENT_TYPE);
}

function _healthBody(readiness: ReadinessProbe, log: Logger): { status: number; body: string } {
  let state: Readiness;
  try {
    state = readiness();
  } catch (error) {
    // A broken probe must not look healthy, nor crash the server the kubelet relies on.
    log.warn("readiness probe failed", { error: errorText(error) });
    state = { ready: false, endpoints: {}, reason: `readiness check failed: ${errorText(error)}` };
  }
  const body: Record<string, unknown> = {
    status: state.ready ? "ready" : "notready",
    uptime: _uptime(performance.now()),
    endpoints: state.endpoints,
  };
  if (!state.ready && state.reason) body.reason = state.reason;
  return { status: state.ready ? 200 : 503, body: JSON.stringify(body) };
}

/**
 * Rust's `Duration` as serde writes it. `performance.now()` counts from process start, as the
 * runtime's uptime counts from the runtime's creation at start-up.
 */
function _uptime(elapsedMs: number): { secs: number; nanos: number } {
  const secs = Math.floor(elapsedMs / 1000);
  const nanos = Math.min(999_999_999, Math.floor((elapsedMs - secs * 1000) * 1e6));
  return { secs, nanos };
}

function _text(request: Request, status: number, body: string, contentType: string): Response {
  // HEAD answers with the headers of GET and no body.
  return new Response(request.method === "HEAD" ? null : body, {
    status,
    headers: { "content-type": contentType },
  });
}
