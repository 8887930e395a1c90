/**
 * How a 1.6.1 caller turns a failed call into text, so `call` prints what a Python planner
 * would raise (measured against the real runtime, docs/runtime-1.6.1.md (b)):
 * `<class>: <message>` from the item's `error` object, else `Internal: <comments joined ", ">`.
 */
import { GlobalPlannerError } from "../errors.ts";

/** A call that did not produce a usable answer; the message is the text to show. */
export class CallFailed extends GlobalPlannerError {}

/** `error_type` values 1.6.1 maps to a class other than `Internal` (as observed). */
const _CLASS_OF_ERROR_TYPE: Record<string, string> = { InvalidArgument: "InvalidRequest" };

function _errorTypeName(errorType: unknown): string | undefined {
  if (typeof errorType === "string") return errorType;
  if (errorType && typeof errorType === "object") {
    // `{"Backend": "InvalidArgument"}`: the variant's payload names the type.
    const inner = Object.values(errorType)[0];
    if (typeof inner === "string") return inner;
  }
  return undefined;
}

/** The text of an Annotated item with `event: "error"`. */
export function renderErrorItem(annotated: Record<string, unknown>): string {
  const error = annotated.error;
  if (error && typeof error === "object" && !Array.isArray(error)) {
    const e = error as Record<string, unknown>;
    const typeName = _errorTypeName(e.error_type);
    const cls = typeof e.class === "string"
      ? e.class
      : (typeName && _CLASS_OF_ERROR_TYPE[typeName]) ?? "Internal";
    const message = typeof e.message === "string" ? e.message : "unknown error";
    return `${cls}: ${message}`;
  }
  const comments = Array.isArray(annotated.comment)
    ? annotated.comment.filter((c): c is string => typeof c === "string")
    : [];
  return `Internal: ${comments.length ? comments.join(", ") : "unknown error"}`;
}

/**
 * The text for a non-empty ACK. 1.6.1 honours the two load-shedding prefixes; it ignores any
 * other text and hangs, which a CLI must not do, so those fail at once as well.
 */
export function renderAck(text: string, address: string): string {
  if (text.startsWith("Server overloaded:")) return `CapacityExhausted: ${text}`;
  if (text.startsWith("Server unavailable:")) return `Unavailable: ${text}`;
  return `Unavailable: request refused by ${address}: ${text}`;
}
