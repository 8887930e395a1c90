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
import type { StatusSettings } from "../config/status.ts";
import { ConfigError, errorText, GlobalPlannerError } from "../errors.ts";
import type { Logger } from "./log.ts";
import { type MetricsSource, PROMETHEUS_CONTENT_TYPE } from "./metrics.ts";

export type EndpointHealth = "ready" | "notready";

export interface Readiness {
  ready: boolean;
  /** Bare endpoint names (e.g. `scale_request`) → their state. */
  endpoints: Record<string, EndpointHealth>;
  /** Why not ready; sent only when not ready. */
  reason?: string;
  /** With leader election: `leader` or `standby` (absent otherwise, as in 1.6.1). */
  role?: string;
}

export type ReadinessProbe = () => Readiness;

export interface StatusServer {
  port: number;
  close(): Promise<void>;
}

export const METRICS_PATH = "/metrics";
/** The runtime's content type for the health JSON (1.6.1 does not say `application/json`). */
const HEALTH_CONTENT_TYPE = "text/plain; charset=utf-8";

/** Starts listening; resolves once bound, with the actual port (useful when asked for 0). */
export function startStatusServer(
  settings: StatusSettings,
  readiness: ReadinessProbe,
  metrics: MetricsSource,
  logger: Logger,
): Promise<StatusServer> {
  // The metrics route is fixed; a probe path on it would shadow it.
  for (
    const [name, path] of [["DYN_SYSTEM_HEALTH_PATH", settings.healthPath], [
      "DYN_SYSTEM_LIVE_PATH",
      settings.livePath,
    ]]
  ) {
    if (path === METRICS_PATH) return Promise.reject(new ConfigError(`${name}: must not be ${METRICS_PATH}`));
  }
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
  if (state.role) body.role = state.role;
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
