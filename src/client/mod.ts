/** The planner side of the Dynamo planes: what `global-planner call` uses to call an endpoint. */
export { callEndpoint, type CallOptions } from "./call_endpoint.ts";
export { CALL_ENV_VARS, type CallEnv, readCallEnv } from "./env.ts";
export { CallFailed, renderErrorItem } from "./error_text.ts";
export { type EndpointName, endpointText } from "./lookup.ts";
export type { CallResult } from "./response_stream.ts";
