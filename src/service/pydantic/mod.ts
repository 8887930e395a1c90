/** pydantic-identical validation of upstream's `ScaleRequest` (texts as pydantic 2.13 prints them). */
export { fromJs, PyFloat, PyInt, type PyValue } from "./py_value.ts";
export { displayRepr, pyRepr, pyStr, truncateRepr } from "./py_repr.ts";
export { MAX_JSON_DEPTH, PyJsonError, pyJsonLoads } from "./py_json.ts";
export {
  formatValidationError,
  type LineError,
  MAX_LISTED_ERRORS,
  PYDANTIC_DOCS_VERSION,
} from "./validation_error.ts";
export {
  type ModelResult,
  scaleRequestFromText,
  scaleRequestFromValue,
  type ValidatedScaleRequest,
  type ValidatedTargetReplica,
} from "./scale_request_model.ts";
