/**
 * The wire contract between planners and the Global Planner, as zod schemas that accept what
 * upstream's pydantic v2 models accept: unknown fields ignored, lax coercion of numbers and
 * booleans, enums matched exactly, and the request either as an object or as a JSON string
 * holding the object (planners send `model_dump_json()`).
 */
import { z } from "zod";
import { InvalidRequest, type ScaleStatus } from "../errors.ts";

export type { ScaleStatus };
export const SCALE_STATUSES = ["success", "error", "rejected", "scaling"] as const;
export const SUB_COMPONENT_TYPES = ["prefill", "decode"] as const;
export type SubComponentType = (typeof SUB_COMPONENT_TYPES)[number];

const TRUE_WORDS = new Set(["1", "true", "t", "yes", "y", "on"]);
const FALSE_WORDS = new Set(["0", "false", "f", "no", "n", "off"]);

/** pydantic's lax `int`: integers, integral floats and integer strings. */
const laxInt = z.preprocess((value) => {
  if (typeof value === "string" && /^\s*[-+]?\d+\s*$/.test(value)) return Number(value.trim());
  if (typeof value === "boolean") return value ? 1 : 0;
  return value;
}, z.number({ error: "Input should be a valid integer" }).int("Input should be a valid integer"));

/** pydantic's lax `bool`: booleans, 0/1 and the usual words. */
const laxBool = z.preprocess((value) => {
  if (value === 0 || value === 1) return value === 1;
  if (typeof value === "string") {
    const word = value.trim().toLowerCase();
    if (TRUE_WORDS.has(word)) return true;
    if (FALSE_WORDS.has(word)) return false;
  }
  return value;
}, z.boolean({ error: "Input should be a valid boolean" }));

/** pydantic's lax `float | None`. */
const laxOptionalFloat = z.preprocess((value) => {
  if (typeof value === "string" && value.trim() !== "" && !isNaN(Number(value))) {
    return Number(value);
  }
  return value;
}, z.number({ error: "Input should be a valid number" }).nullable());

export const TargetReplicaSchema = z.object({
  sub_component_type: z.enum(SUB_COMPONENT_TYPES, {
    error: "Input should be 'prefill' or 'decode'",
  }),
  component_name: z.string().nullable().default(null),
  // Upstream has no lower bound; a negative count only fails later at the API server.
  desired_replicas: laxInt.pipe(z.number().min(0, "Input should be greater than or equal to 0")),
});
export type TargetReplica = z.infer<typeof TargetReplicaSchema>;

export const ScaleRequestSchema = z.object({
  caller_namespace: z.string(),
  graph_deployment_name: z.string(),
  k8s_namespace: z.string(),
  target_replicas: z.array(TargetReplicaSchema),
  blocking: laxBool.default(false),
  timestamp: laxOptionalFloat.default(null),
  predicted_load: z.record(z.string(), z.unknown()).nullable().default(null),
});
export type ScaleRequest = z.infer<typeof ScaleRequestSchema>;

export const ScaleResponseSchema = z.object({
  status: z.enum(SCALE_STATUSES),
  message: z.string(),
  current_replicas: z.record(z.string(), z.number().int()),
});
export type ScaleResponse = z.infer<typeof ScaleResponseSchema>;

/** Parses a request that arrives as an object or as a JSON string; throws `InvalidRequest`. */
export function parseScaleRequest(input: unknown): ScaleRequest {
  let value = input;
  if (typeof input === "string") {
    try {
      value = JSON.parse(input);
    } catch (error) {
      throw new InvalidRequest(`Invalid request: invalid JSON: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidRequest(
      `Invalid request: expected a ScaleRequest object or its JSON text, got ${_kindOf(value)}`,
    );
  }
  const parsed = ScaleRequestSchema.safeParse(value);
  if (!parsed.success) {
    const details = parsed.error.issues.map((issue) => {
      const path = issue.path.join(".");
      const text = issue.code === "invalid_type" && _isMissing(value, issue.path)
        ? "Field required"
        : issue.message;
      return path ? `${path}: ${text}` : text;
    });
    throw new InvalidRequest(`Invalid request: ${details.join("; ")}`, { cause: parsed.error });
  }
  return parsed.data;
}

export function scaleResponse(
  status: ScaleStatus,
  message: string,
  currentReplicas: Record<string, number> = {},
): ScaleResponse {
  return { status, message, current_replicas: currentReplicas };
}

function _isMissing(root: unknown, path: PropertyKey[]): boolean {
  let node: unknown = root;
  for (const key of path) {
    if (node === null || typeof node !== "object") return true;
    if (!(key in (node as Record<PropertyKey, unknown>))) return true;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return false;
}

function _kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return `a ${typeof value}`;
}
