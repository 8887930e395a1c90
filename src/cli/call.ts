/**
 * `global-planner call`: acts as a planner would (same discovery, same planes, same env) and
 * prints the Global Planner's answer as JSON, one line per item. For operators checking a
 * deployment: exit 0 on success/healthy, 1 on `error`/`rejected` or a failed call, 2 on usage
 * errors.
 */
import { parseArgs } from "node:util";
import type { EnvGetter } from "../config/env.ts";
import { ConfigError, errorText } from "../errors.ts";
import { COMPONENT, HEALTH_CHECK_PAYLOAD, HEALTH_ENDPOINT, SCALE_ENDPOINT } from "../service/handlers.ts";
import { callEndpoint } from "../client/call_endpoint.ts";
import { readCallEnv } from "../client/env.ts";
import { CallFailed } from "../client/error_text.ts";
import type { CallResult } from "../client/response_stream.ts";

export { CALL_ENV_VARS } from "../client/env.ts";

export const CALL_USAGE = `Usage: global-planner call [--namespace NS] [--timeout S] <what>

Calls <NS>.GlobalPlanner.<endpoint> the way a planner does and prints the answer as JSON.

What to send (exactly one):
  --health                   Call the health endpoint
  --request JSON             Send this ScaleRequest (sent as JSON text, like model_dump_json())
  --prefill N --decode M --dgd NAME --k8s-namespace NS [--caller-namespace NS] [--blocking]
                             Build a ScaleRequest (either count may be omitted, not both);
                             the caller namespace defaults to <k8s-namespace>-<dgd>

Options:
  --namespace NS   Dynamo namespace of the Global Planner (default: $DYN_NAMESPACE)
  --timeout S      Give up after S seconds (default 60; a --blocking request waits for the
                   DGD to be Ready, up to the planner's --blocking-timeout-seconds: raise it)
  -h, --help       Show this help and exit

Exit status: 0 success/healthy, 1 error/rejected or a failed call, 2 usage error.
Discovery and request plane come from the same variables as the service (DYN_DISCOVERY_BACKEND,
ETCD_ENDPOINTS, DYN_FILE_KV, DYN_REQUEST_PLANE, ...); the response listener binds
DYN_TCP_RESPONSE_STREAM_HOST:DYN_TCP_RESPONSE_STREAM_PORT (default: local IP, any port).`;

export const DEFAULT_TIMEOUT_SECONDS = 60;

export type LineWriter = (line: string) => void;

export interface ScaleFlags {
  prefill?: number;
  decode?: number;
  dgd: string;
  k8sNamespace: string;
  callerNamespace?: string;
  blocking: boolean;
}

export type CallCommand =
  | { kind: "help" }
  | {
    kind: "call";
    namespace?: string;
    endpoint: string;
    payload: unknown;
    timeoutMs: number;
  };

const _SCALE_FLAGS = ["prefill", "decode", "dgd", "k8s-namespace", "caller-namespace", "blocking"];

function _usage(message: string): ConfigError {
  return new ConfigError(`${message}\n\n${CALL_USAGE}`);
}

function _count(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\s*\d+\s*$/.test(value)) throw _usage(`--${flag} must be a non-negative integer, got "${value}"`);
  return Number(value);
}

function _name(flag: string, value: string | undefined): string {
  if (value === undefined || value.trim() === "") {
    throw _usage(`--${flag} is required with --prefill/--decode`);
  }
  return value.trim();
}

/** Parses `call`'s flags (everything after `call`); throws `ConfigError` on misuse. */
export function parseCallArgs(argv: string[]): CallCommand {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        "help": { type: "boolean", short: "h" },
        "namespace": { type: "string" },
        "health": { type: "boolean" },
        "request": { type: "string" },
        "prefill": { type: "string" },
        "decode": { type: "string" },
        "dgd": { type: "string" },
        "k8s-namespace": { type: "string" },
        "caller-namespace": { type: "string" },
        "blocking": { type: "boolean" },
        "timeout": { type: "string" },
      },
    }));
  } catch (error) {
    throw _usage(errorText(error));
  }
  if (values.help) return { kind: "help" };

  let timeoutMs = DEFAULT_TIMEOUT_SECONDS * 1000;
  if (values.timeout !== undefined) {
    const seconds = Number(values.timeout);
    if (!values.timeout.trim() || !Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400) {
      throw _usage(`--timeout must be a number of seconds in (0, 86400], got "${values.timeout}"`);
    }
    timeoutMs = seconds * 1000;
  }

  const scaleMode = _SCALE_FLAGS.some((f) => values[f as keyof typeof values] !== undefined);
  const modes = [
    values.health ? "--health" : "",
    values.request !== undefined ? "--request" : "",
    scaleMode ? "--prefill/--decode" : "",
  ]
    .filter(Boolean);
  if (modes.length !== 1) {
    throw _usage(
      modes.length === 0
        ? "say what to send: --health, --request JSON or --prefill/--decode"
        : `${modes.join(", ")} cannot be combined`,
    );
  }
  const base = { kind: "call" as const, namespace: values.namespace, timeoutMs };
  if (values.health) return { ...base, endpoint: HEALTH_ENDPOINT, payload: HEALTH_CHECK_PAYLOAD };
  if (values.request !== undefined) {
    return { ...base, endpoint: SCALE_ENDPOINT, payload: requestText(values.request) };
  }
  const flags: ScaleFlags = {
    prefill: _count("prefill", values.prefill),
    decode: _count("decode", values.decode),
    dgd: _name("dgd", values.dgd),
    k8sNamespace: _name("k8s-namespace", values["k8s-namespace"]),
    callerNamespace: values["caller-namespace"]?.trim() || undefined,
    blocking: values.blocking ?? false,
  };
  if (flags.prefill === undefined && flags.decode === undefined) {
    throw _usage("give --prefill N and/or --decode M");
  }
  return { ...base, endpoint: SCALE_ENDPOINT, payload: JSON.stringify(buildScaleRequest(flags)) };
}

/**
 * `--request`: must be a JSON object; sent as compact JSON *text*, as planners send
 * `model_dump_json()`. Not validated further, so an operator can also probe the planner's
 * answer to a malformed request.
 */
export function requestText(text: string): string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw _usage(`--request is not JSON: ${errorText(error)}`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw _usage("--request must be a JSON object (a ScaleRequest)");
  }
  return JSON.stringify(value);
}

/** The ScaleRequest a planner would send, in `model_dump_json()` field order. */
export function buildScaleRequest(flags: ScaleFlags, nowMs = Date.now()): Record<string, unknown> {
  const targets = [];
  if (flags.prefill !== undefined) {
    targets.push({ sub_component_type: "prefill", component_name: null, desired_replicas: flags.prefill });
  }
  if (flags.decode !== undefined) {
    targets.push({ sub_component_type: "decode", component_name: null, desired_replicas: flags.decode });
  }
  return {
    // A DGD's planner runs in Dynamo namespace `<k8s namespace>-<dgd name>` by convention.
    caller_namespace: flags.callerNamespace ?? `${flags.k8sNamespace}-${flags.dgd}`,
    graph_deployment_name: flags.dgd,
    k8s_namespace: flags.k8sNamespace,
    target_replicas: targets,
    blocking: flags.blocking,
    timestamp: nowMs / 1000,
    predicted_load: null,
  };
}

/** 0 when every item is a success/healthy answer; 1 for error items, `error`/`rejected`, none. */
export function exitCodeFor(endpoint: string, result: CallResult): { code: number; problem?: string } {
  if (result.error !== undefined) return { code: 1, problem: result.error };
  if (result.items.length === 0) return { code: 1, problem: "No response from the Global Planner" };
  for (const item of result.items) {
    const { status, message } = (item ?? {}) as { status?: unknown; message?: unknown };
    const failed = endpoint === HEALTH_ENDPOINT
      ? status !== "healthy"
      : status === "error" || status === "rejected";
    if (failed) {
      return { code: 1, problem: `${String(status)}${typeof message === "string" ? `: ${message}` : ""}` };
    }
  }
  return { code: 0 };
}

/** `global-planner call ...`; returns the exit code. */
export async function runCall(
  argv: string[],
  getEnv: EnvGetter,
  stdout: LineWriter = console.log,
  stderr: LineWriter = console.error,
): Promise<number> {
  let command: CallCommand;
  let env;
  try {
    command = parseCallArgs(argv);
    if (command.kind === "help") {
      stdout(CALL_USAGE);
      return 0;
    }
    env = readCallEnv(getEnv, command.namespace);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    stderr(`global-planner call: ${error.message}`);
    return 2;
  }
  let result: CallResult;
  try {
    result = await callEndpoint({
      env,
      endpoint: { namespace: env.namespace, component: COMPONENT, endpoint: command.endpoint },
      payload: command.payload,
      timeoutMs: command.timeoutMs,
    });
  } catch (error) {
    // CallFailed carries the text a Python planner would see; anything else is unexpected.
    stderr(`global-planner call: ${error instanceof CallFailed ? error.message : errorText(error)}`);
    return 1;
  }
  for (const item of result.items) stdout(JSON.stringify(item));
  const { code, problem } = exitCodeFor(command.endpoint, result);
  if (problem !== undefined) stderr(`global-planner call: ${problem}`);
  return code;
}
