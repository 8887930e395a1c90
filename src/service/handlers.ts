/**
 * The two endpoint handlers. `scale_request`: parse → authorize → no-operation or the scaler
 * port → exactly one `ScaleResponse` (or one error item for a malformed request). `health`:
 * one status object, whatever the request.
 */
import { errorText, outcomeOf } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import type { Handler } from "../runtime/endpoint.ts";
import { isAuthorized, notAuthorizedMessage } from "./authorize.ts";
import { parseScaleRequest, type ScaleRequest, type ScaleResponse, scaleResponse } from "./contract.ts";
import { NO_CONNECTOR_MESSAGE, NO_OPERATION_MESSAGE } from "./messages.ts";

export const COMPONENT = "GlobalPlanner";
export const SCALE_ENDPOINT = "scale_request";
export const HEALTH_ENDPOINT = "health";
export const HEALTH_CHECK_PAYLOAD = { text: "health" };

/** The port through which a scale request changes replicas (the Kubernetes connector). */
export interface Scaler {
  scale(request: ScaleRequest, signal: AbortSignal): Promise<ScaleResponse>;
}

export interface ScaleHandlerOptions {
  managedNamespaces: readonly string[] | null;
  noOperation: boolean;
  /** Absent until a Kubernetes connector is wired: requests then answer `error`. */
  scaler?: Scaler;
  logger: Logger;
  clock?: () => number;
}

export function createScaleRequestHandler(options: ScaleHandlerOptions): Handler {
  const managed = options.managedNamespaces?.length ? new Set(options.managedNamespaces) : null;
  const clock = options.clock ?? (() => performance.now());
  const logger = options.logger;

  return async function* scaleRequest(input, context) {
    const started = clock();
    let request: ScaleRequest;
    try {
      request = parseScaleRequest(input);
    } catch (error) {
      logger.warn("scale request rejected", {
        result: "error",
        reason: "invalid_request",
        error: errorText(error),
        request_id: context.id,
      });
      throw error; // becomes one error item: the Python caller raises it
    }
    const fields = {
      caller: request.caller_namespace,
      dgd: request.graph_deployment_name,
      k8s_namespace: request.k8s_namespace,
      targets: Object.fromEntries(
        request.target_replicas.map((t) => [t.sub_component_type, t.desired_replicas]),
      ),
      blocking: request.blocking,
      request_id: context.id,
    };
    let response: ScaleResponse;
    let reason: string;
    if (!isAuthorized(managed, request.caller_namespace)) {
      response = scaleResponse("error", notAuthorizedMessage(request.caller_namespace));
      reason = "not_authorized";
    } else if (options.noOperation) {
      response = scaleResponse("success", NO_OPERATION_MESSAGE);
      reason = "no_operation";
    } else if (!options.scaler) {
      response = scaleResponse("error", NO_CONNECTOR_MESSAGE);
      reason = "unavailable";
    } else {
      try {
        response = await options.scaler.scale(request, context.signal);
        reason = response.status === "success" ? "success" : response.status;
      } catch (error) {
        const outcome = outcomeOf(error);
        response = scaleResponse(outcome.status, errorText(error));
        reason = outcome.reason;
      }
    }
    const level = response.status === "success" ? "info" : "warn";
    logger[level]("scale request", {
      ...fields,
      result: response.status,
      reason,
      response_message: response.message,
      duration_ms: Math.round((clock() - started) * 1000) / 1000,
    });
    yield response;
  };
}

export interface HealthHandlerOptions {
  namespace: string;
  managedNamespaces: readonly string[] | null;
}

export function createHealthHandler(options: HealthHandlerOptions): Handler {
  const body = {
    status: "healthy",
    component: COMPONENT,
    namespace: options.namespace,
    managed_namespaces: options.managedNamespaces?.length ? [...options.managedNamespaces] : "all",
  };
  return async function* health() {
    yield body;
  };
}
