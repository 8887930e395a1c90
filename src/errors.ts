/**
 * One small family of named errors. Each carries an optional `cause` (as nats.js does) and
 * maps to a response status and a metric reason in one table (`outcomeOf`), not in scattered
 * `catch` blocks.
 */

export type ScaleStatus = "success" | "error" | "rejected" | "scaling";

/** Base class: every error the service raises on purpose is a `GlobalPlannerError`. */
export class GlobalPlannerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Invalid configuration at start-up; the process exits with code 2. */
export class ConfigError extends GlobalPlannerError {}

/** The request body does not match the wire contract; answered as a runtime error item. */
export class InvalidRequest extends GlobalPlannerError {}

/** The caller's namespace is not among the managed namespaces. */
export class NotAuthorized extends GlobalPlannerError {}

/** The DGD exists but is not Ready: a soft denial (`rejected`). */
export class NotReady extends GlobalPlannerError {}

/** The GPU budget forbids the request: a soft denial (`rejected`). */
export class BudgetBreach extends GlobalPlannerError {}

/**
 * A policy of ours refused the request (`rejected`); the answer still reports the DGD's replicas,
 * which the refusal leaves as they are.
 */
export class PolicyRefusal extends GlobalPlannerError {
  constructor(
    message: string,
    readonly currentReplicas: Record<string, number>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The DGD's pause annotation is set. */
export class Paused extends PolicyRefusal {}

/** The request is older than the last one applied to the DGD (`--reject-stale`). */
export class StaleRequest extends PolicyRefusal {}

/** A policy annotation on the DGD has a value we cannot read: fail the request, change nothing. */
export class PolicyAnnotationError extends GlobalPlannerError {}

/** The request cannot be served in the current mode (e.g. no Kubernetes connector yet). */
export class Unavailable extends GlobalPlannerError {}

/**
 * This replica does not hold the leader Lease (or stopped holding it): a write it would make
 * is refused before it is sent, and one in flight is aborted. Answered as `unavailable`.
 */
export class NotLeader extends Unavailable {}

/** A Kubernetes API call failed; carries what was attempted and the HTTP status. */
export class KubeError extends GlobalPlannerError {
  constructor(
    message: string,
    readonly detail: {
      verb: string;
      resource: string;
      name?: string;
      namespace?: string;
      status?: number;
    },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A guarded write found the object changed since it was read (HTTP 409): the decision's basis
 * moved, so the core reads again and decides again.
 */
export class WriteConflict extends KubeError {}

/**
 * A DynamoGraphDeployment object does not have the shape the CRD promises (no `spec`, unknown
 * `apiVersion`, a component without a name, ...). Raised by the pure DGD view, never retried.
 */
export class DgdShapeError extends GlobalPlannerError {}

/**
 * A request's targets cannot be mapped onto the DGD's services/components (none or several
 * match a role, two targets hit one component, no targets). It extends `InvalidRequest` so that
 * `outcomeOf` reports it as `invalid_request`: the caller asked for something this DGD lacks.
 */
export class TargetResolutionError extends InvalidRequest {}

/** The GPU budget cannot be checked because some pool's GPU count is unknown (fail closed). */
export class GpuCountUnknown extends GlobalPlannerError {}

/** A `blocking: true` request's DGD did not become Ready within the configured time. */
export class BlockingTimeout extends GlobalPlannerError {}

/** A peer broke the Dynamo wire protocol (bad frame, bad header, unknown transport). */
export class ProtocolError extends GlobalPlannerError {}

/** A socket write (or connect) did not complete within its deadline; the socket was closed. */
export class SocketTimeout extends GlobalPlannerError {}

/** Discovery registration failed or was lost. */
export class DiscoveryError extends GlobalPlannerError {}

/** The request plane cannot be set up (e.g. the NATS server is unreachable at start). */
export class RequestPlaneError extends GlobalPlannerError {}

export interface Outcome {
  status: ScaleStatus;
  /** Metric/log reason label. */
  reason: string;
}

/** The single table from error class to response status and metric reason. */
export function outcomeOf(error: unknown): Outcome {
  if (error instanceof NotAuthorized) return { status: "error", reason: "not_authorized" };
  if (error instanceof NotReady) return { status: "rejected", reason: "rejected_not_ready" };
  if (error instanceof BudgetBreach) return { status: "rejected", reason: "rejected_budget" };
  if (error instanceof Paused) return { status: "rejected", reason: "rejected_paused" };
  if (error instanceof StaleRequest) return { status: "rejected", reason: "rejected_stale" };
  if (error instanceof PolicyAnnotationError) return { status: "error", reason: "invalid_policy" };
  if (error instanceof InvalidRequest) return { status: "error", reason: "invalid_request" };
  if (error instanceof KubeError) return { status: "error", reason: "kubernetes_error" };
  if (error instanceof Unavailable) return { status: "error", reason: "unavailable" };
  if (error instanceof BlockingTimeout) return { status: "error", reason: "blocking_timeout" };
  if (error instanceof GpuCountUnknown) return { status: "error", reason: "gpu_count_unknown" };
  return { status: "error", reason: "internal_error" };
}

/** Text of any thrown value, for messages and logs. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
