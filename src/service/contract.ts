/**
 * The wire contract between planners and the Global Planner. Requests are validated exactly as
 * upstream's pydantic v2 models validate them (src/service/pydantic/): the same lax coercions,
 * unknown fields ignored, and on failure the same text, so the Python caller raises
 * `ValueError("Invalid request: <n> validation error(s) for ScaleRequest ...")` as with upstream.
 */
import { InvalidRequest, type ScaleStatus } from "../errors.ts";
import {
  formatValidationError,
  fromJs,
  pyStr,
  scaleRequestFromText,
  scaleRequestFromValue,
  type ValidatedScaleRequest,
  type ValidatedTargetReplica,
} from "./pydantic/mod.ts";

export type { ScaleStatus };
export const SCALE_STATUSES = ["success", "error", "rejected", "scaling"] as const;
export const SUB_COMPONENT_TYPES = ["prefill", "decode"] as const;
export type SubComponentType = (typeof SUB_COMPONENT_TYPES)[number];

export type TargetReplica = ValidatedTargetReplica;
export type ScaleRequest = ValidatedScaleRequest;

export interface ScaleResponse {
  status: ScaleStatus;
  message: string;
  /** Sub-component type → replicas observed (integers). */
  current_replicas: Record<string, number>;
}

/** Upstream echoes a non-object payload whole; we stop at 64 Ki characters. */
const MAX_ECHOED_CHARS = 65_536;

/**
 * `@dynamo_endpoint(ScaleRequest, ...)`: a string is `parse_raw`d, an object `parse_obj`ed,
 * anything else refused with its Python `str()`. Throws `InvalidRequest` with upstream's text.
 */
export function parseScaleRequest(input: unknown): ScaleRequest {
  const isObject = input !== null && typeof input === "object" && !Array.isArray(input) &&
    !(input instanceof Uint8Array);
  if (typeof input !== "string" && !isObject) {
    const text = pyStr(fromJs(input));
    throw new InvalidRequest(
      `Invalid request: ${
        text.length > MAX_ECHOED_CHARS
          ? `${text.slice(0, MAX_ECHOED_CHARS)}... (${text.length} characters)`
          : text
      }`,
    );
  }
  const result = typeof input === "string"
    ? scaleRequestFromText(input)
    : scaleRequestFromValue(fromJs(input));
  if (!result.ok) {
    throw new InvalidRequest(`Invalid request: ${formatValidationError("ScaleRequest", result.errors)}`);
  }
  return result.value;
}

export function scaleResponse(
  status: ScaleStatus,
  message: string,
  currentReplicas: Record<string, number> = {},
): ScaleResponse {
  return { status, message, current_replicas: currentReplicas };
}

/** Why a response is what it is, when that is more than its status says (metrics, logs). */
const REASONS = new WeakMap<ScaleResponse, string>();

export function tagReason(response: ScaleResponse, reason: string): ScaleResponse {
  REASONS.set(response, reason);
  return response;
}

export function taggedReason(response: ScaleResponse): string | undefined {
  return REASONS.get(response);
}
