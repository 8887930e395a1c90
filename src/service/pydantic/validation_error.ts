/** `str(pydantic_core.ValidationError)` as pydantic 2.13 prints it. */
import { displayRepr } from "./py_repr.ts";
import { pyTypeName, type PyValue } from "./py_value.ts";

/** The pydantic version whose documentation URL the messages carry (upstream's venv has 2.13.5). */
export const PYDANTIC_DOCS_VERSION = "2.13";

export interface LineError {
  /** Field path; empty for the model itself. */
  loc: readonly (string | number)[];
  msg: string;
  type: string;
  input: PyValue;
  /** pydantic's own error types link their documentation; custom ones (parse_raw's) do not. */
  documented: boolean;
}

/**
 * pydantic lists every error; past this many we stop (one line says how many were left out), so
 * a request with a million bad items cannot build a message of hundreds of megabytes.
 */
export const MAX_LISTED_ERRORS = 1000;

export function formatValidationError(title: string, errors: readonly LineError[]): string {
  const n = errors.length;
  const lines = [`${n} validation error${n === 1 ? "" : "s"} for ${title}`];
  const reprs = new Map<PyValue, string>(); // a dict is printed once per missing field
  for (const error of errors.slice(0, MAX_LISTED_ERRORS)) {
    if (error.loc.length > 0) lines.push(error.loc.join("."));
    let repr = reprs.get(error.input);
    if (repr === undefined) {
      repr = displayRepr(error.input);
      if (typeof error.input === "object" && error.input !== null) reprs.set(error.input, repr);
    }
    lines.push(
      `  ${error.msg} [type=${error.type}, input_value=${repr}, input_type=${pyTypeName(error.input)}]`,
    );
    if (error.documented) {
      lines.push(
        `    For further information visit https://errors.pydantic.dev/${PYDANTIC_DOCS_VERSION}/v/${error.type}`,
      );
    }
  }
  if (n > MAX_LISTED_ERRORS) lines.push(`(${n - MAX_LISTED_ERRORS} more errors not shown)`);
  return lines.join("\n");
}
