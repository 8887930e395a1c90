/**
 * The two endpoint handlers. `scale_request`: parse → authorize → no-operation or the scaler
 * port → exactly one `ScaleResponse` (or one error item for a malformed request). `health`:
 * one status object, whatever the request.
 */
import { errorText, outcomeOf, PolicyRefusal, type ScaleStatus } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import type { Handler } from "../runtime/endpoint.ts";
import { isAuthorized, notAuthorizedMessage } from "./authorize.ts";
import { bindingRefusal, type BindingSettings } from "./caller_binding.ts";
import {
  parseScaleRequest,
  type ScaleRequest,
  type ScaleResponse,
  scaleResponse,
  taggedReason,
} from "./contract.ts";
import { negativeReplicasMessage, NO_CONNECTOR_MESSAGE, NO_OPERATION_MESSAGE } from "./messages.ts";

/**
 * Largest request either endpoint decodes. A scale request is a few hundred bytes (about 80 per
 * target); 1 MiB holds thousands of targets, and nothing larger is ever materialised as text.
 */
export const MAX_REQUEST_BYTES = 1024 * 1024;

export const COMPONENT = "GlobalPlanner";
export const SCALE_ENDPOINT = "scale_request";
export const HEALTH_ENDPOINT = "health";
export const HEALTH_CHECK_PAYLOAD = { text: "health" };

/** The port through which a scale request changes replicas (the Kubernetes connector). */
export interface Scaler {
  scale(request: ScaleRequest, signal: AbortSignal): Promise<ScaleResponse>;
}

/** One finished request, for metrics: response status, reason label, seconds taken. */
export type OutcomeObserver = (result: ScaleStatus, reason: string, seconds: number) => void;

export interface ScaleHandlerOptions {
  managedNamespaces: readonly string[] | null;
  noOperation: boolean;
  /** Caller binding and the Kubernetes namespace allow-list (absent = upstream: any DGD). */
  binding?: BindingSettings;
  /** `--dry-run`: every answer's message starts with `[dry-run] `. */
  dryRun?: boolean;
  /** Absent when no Kubernetes connector is wired: requests then answer `error`. */
  scaler?: Scaler;
  logger: Logger;
  clock?: () => number;
  observe?: OutcomeObserver;
  /** Counts a request in flight; returns the function that ends it. */
  track?: () => () => void;
}

export function createScaleRequestHandler(options: ScaleHandlerOptions): Handler {
  const managed = options.managedNamespaces?.length ? new Set(options.managedNamespaces) : null;
  const clock = options.clock ?? (() => performance.now());
  const logger = options.logger;

  const observe = options.observe ?? (() => {});
  return async function* scaleRequest(input, context) {
    const started = clock();
    const done = options.track?.();
    try {
      yield await _answer(input, context.id, context.signal, started);
    } finally {
      done?.();
    }
  };

  async function _answer(input: unknown, requestId: string, signal: AbortSignal, started: number) {
    let request: ScaleRequest;
    try {
      request = parseScaleRequest(input);
    } catch (error) {
      logger.warn("scale request rejected", {
        result: "error",
        reason: "invalid_request",
        error: errorText(error),
        request_id: requestId,
      });
      observe("error", "invalid_request", (clock() - started) / 1000);
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
      request_id: requestId,
    };
    let response: ScaleResponse;
    let reason: string;
    const negative = request.target_replicas.filter((t) => t.desired_replicas < 0);
    const refused = options.binding && bindingRefusal(options.binding, {
      caller: request.caller_namespace,
      k8sNamespace: request.k8s_namespace,
      dgd: request.graph_deployment_name,
    });
    if (!isAuthorized(managed, request.caller_namespace)) {
      response = scaleResponse("error", notAuthorizedMessage(request.caller_namespace));
      reason = "not_authorized";
    } else if (refused) {
      response = scaleResponse("error", refused.message);
      reason = refused.reason;
    } else if (negative.length > 0) {
      // Upstream's shape (status error, no replicas) with a message that says what is wrong.
      response = scaleResponse(
        "error",
        negativeReplicasMessage(
          negative.map((t) => ({
            role: t.sub_component_type,
            component: t.component_name,
            replicas: t.desired_replicas,
          })),
        ),
      );
      reason = "invalid_request";
    } else if (options.noOperation) {
      response = scaleResponse("success", NO_OPERATION_MESSAGE);
      reason = "no_operation";
    } else if (!options.scaler) {
      response = scaleResponse("error", NO_CONNECTOR_MESSAGE);
      reason = "unavailable";
    } else {
      try {
        response = await options.scaler.scale(request, signal);
        reason = taggedReason(response) ?? (response.status === "success" ? "success" : "internal_error");
      } catch (error) {
        const outcome = outcomeOf(error);
        // A policy refusal leaves the replicas as they are, and says so.
        response = scaleResponse(
          outcome.status,
          errorText(error),
          error instanceof PolicyRefusal ? error.currentReplicas : {},
        );
        reason = outcome.reason;
      }
    }
    if (options.dryRun) {
      response = { ...response, message: `[dry-run] ${response.message}` };
      if (reason === "success") reason = "dry_run";
    }
    const level = response.status === "success" ? "info" : "warn";
    logger[level]("scale request", {
      ...fields,
      result: response.status,
      reason,
      response_message: response.message,
      duration_ms: Math.round((clock() - started) * 1000) / 1000,
    });
    observe(response.status, reason, (clock() - started) / 1000);
    return response;
  }
}

/** What health reports about the DGD watch cache (any fields; these two decide the status). */
export interface DgdWatchState {
  degraded: boolean;
  message?: string;
}

export interface HealthHandlerOptions {
  namespace: string;
  managedNamespaces: readonly string[] | null;
  /** With a GPU budget: the DGD watch cache's state (reported as `dgd_watch` in health). */
  dgdWatch?: () => DgdWatchState | undefined;
  /**
   * Whether this process's discovery registration is in place (`undefined` = not known yet).
   * A lost registration (e.g. a deleted DynamoWorkerMetadata being re-applied) reports `degraded`.
   */
  registered?: () => boolean | undefined;
  /** Discovery backend name for the degraded message. */
  discovery?: string;
  /**
   * With leader election only: this replica's role, answered as `role` (without it the answer
   * is upstream's, unchanged).
   */
  role?: () => string | undefined;
}

export function createHealthHandler(options: HealthHandlerOptions): Handler {
  const fixed = {
    status: "healthy",
    component: COMPONENT,
    namespace: options.namespace,
    managed_namespaces: options.managedNamespaces?.length ? [...options.managedNamespaces] : "all",
  };
  return async function* health() {
    const role = options.role?.();
    const base = role ? { ...fixed, role } : fixed;
    const watch = options.dgdWatch?.();
    const lost = options.registered?.() === false;
    const registration = lost
      ? {
        status: "degraded",
        message: `discovery registration (${options.discovery ?? "discovery"}) is not in place; restoring it`,
      }
      : {};
    if (!watch) {
      yield { ...base, ...registration };
      return;
    }
    yield {
      ...base,
      status: watch.degraded ? "degraded" : "healthy",
      ...(watch.degraded && watch.message ? { message: watch.message } : {}),
      ...registration,
      dgd_watch: watch,
    };
  };
}
