/**
 * Upstream's `ScaleRequest` / `TargetReplica` pydantic models (ai-dynamo 1.6.1), validated the
 * way `@dynamo_endpoint` does it: a `str` payload through `parse_raw` (json.loads, then
 * model_validate), a `dict` through `parse_obj`. Fields in declaration order, unknown fields
 * ignored, every error collected.
 */
import { type Lax, laxBool, laxDict, laxEnum, laxFloat, laxInt, laxList, laxStr, optional } from "./lax.ts";
import { PyJsonError, pyJsonLoads } from "./py_json.ts";
import { isDict, type PyDict, type PyValue, toJs } from "./py_value.ts";
import type { LineError } from "./validation_error.ts";

export interface ValidatedTargetReplica {
  sub_component_type: "prefill" | "decode";
  component_name: string | null;
  desired_replicas: number;
}

export interface ValidatedScaleRequest {
  caller_namespace: string;
  graph_deployment_name: string;
  k8s_namespace: string;
  target_replicas: ValidatedTargetReplica[];
  blocking: boolean;
  timestamp: number | null;
  predicted_load: Record<string, unknown> | null;
}

export type ModelResult<T> = { ok: true; value: T } | { ok: false; errors: LineError[] };

type Field = readonly [
  name: string,
  validate: (input: PyValue, loc: (string | number)[]) => Lax<unknown> | LineError[],
  fallback?: unknown,
];

const subComponentType = laxEnum(["prefill", "decode"] as const);

const TARGET_REPLICA_FIELDS: readonly Field[] = [
  ["sub_component_type", subComponentType],
  ["component_name", optional(laxStr), null],
  ["desired_replicas", laxInt],
];

const SCALE_REQUEST_FIELDS: readonly Field[] = [
  ["caller_namespace", laxStr],
  ["graph_deployment_name", laxStr],
  ["k8s_namespace", laxStr],
  ["target_replicas", _targetReplicas],
  ["blocking", laxBool, false],
  ["timestamp", optional(laxFloat), null],
  ["predicted_load", (input) => {
    const dict = optional(laxDict)(input);
    return dict.ok ? { ok: true, value: dict.value === null ? null : toJs(dict.value) } : dict;
  }, null],
];

/** `ScaleRequest.parse_raw(text)`. */
export function scaleRequestFromText(text: string): ModelResult<ValidatedScaleRequest> {
  let value: PyValue;
  try {
    value = pyJsonLoads(text);
  } catch (error) {
    if (!(error instanceof PyJsonError)) throw error;
    return {
      ok: false,
      errors: [{
        loc: ["__root__"],
        msg: error.message,
        type: error.errorType,
        input: text,
        documented: false,
      }],
    };
  }
  return scaleRequestFromValue(value);
}

/** `ScaleRequest.model_validate(value)`. */
export function scaleRequestFromValue(value: PyValue): ModelResult<ValidatedScaleRequest> {
  return _model<ValidatedScaleRequest>(value, [], "ScaleRequest", SCALE_REQUEST_FIELDS);
}

function _targetReplicas(input: PyValue, loc: (string | number)[]): Lax<unknown> | LineError[] {
  const list = laxList(input);
  if (!list.ok) return list;
  const items: ValidatedTargetReplica[] = [];
  const errors: LineError[] = [];
  list.value.forEach((item, index) => {
    const result = _model<ValidatedTargetReplica>(
      item,
      [...loc, index],
      "TargetReplica",
      TARGET_REPLICA_FIELDS,
    );
    if (result.ok) items.push(result.value);
    else errors.push(...result.errors);
  });
  return errors.length > 0 ? errors : { ok: true, value: items };
}

function _model<T>(
  input: PyValue,
  loc: (string | number)[],
  title: string,
  fields: readonly Field[],
): ModelResult<T> {
  if (!isDict(input)) {
    return {
      ok: false,
      errors: [{
        loc,
        msg: `Input should be a valid dictionary or instance of ${title}`,
        type: "model_type",
        input,
        documented: true,
      }],
    };
  }
  const dict: PyDict = input;
  const out: Record<string, unknown> = {};
  const errors: LineError[] = [];
  for (const [name, validate, ...fallback] of fields) {
    const here = [...loc, name];
    if (!dict.has(name)) {
      if (fallback.length > 0) out[name] = fallback[0];
      else errors.push({ loc: here, msg: "Field required", type: "missing", input: dict, documented: true });
      continue;
    }
    const result = validate(dict.get(name)!, here);
    if (Array.isArray(result)) errors.push(...result);
    else if (result.ok) out[name] = result.value;
    else {errors.push({
        loc: here,
        msg: result.msg,
        type: result.type,
        input: dict.get(name)!,
        documented: true,
      });}
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: out as T };
}
