/**
 * The environment `global-planner call` reads. Discovery and request plane settings are read by
 * the service's own `readEnv`, so both sides of a call are configured by the same variables with
 * the same validation. Only DYN_NAMESPACE differs: `call` takes it from `--namespace` when given,
 * so the variable is not required then.
 */
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { DEFAULT_SERVICE_ACCOUNT_DIR } from "../config/args.ts";
import { type EnvGetter, readEnv, type RuntimeSettings } from "../config/env.ts";
import type { KubeAccess } from "./kube_lookup.ts";

/**
 * Variables `call` reads on top of the service's `ENV_VARS` (the caller's call-home listener,
 * as the 1.6.1 runtime names them). The permission set of a `call` run must allow these too.
 */
export const CALL_ENV_VARS = ["DYN_TCP_RESPONSE_STREAM_HOST", "DYN_TCP_RESPONSE_STREAM_PORT"] as const;

export interface ResponseStreamSettings {
  /** Host the call-home listener binds; unset = the auto-detected local IP, as 1.6.1 callers. */
  host?: string;
  port: number;
}

export interface CallEnv {
  namespace: string;
  runtime: RuntimeSettings;
  responseStream: ResponseStreamSettings;
  /** Kubernetes credentials for a kubernetes lookup (in cluster, or KUBECONFIG). */
  kube: KubeAccess;
}

export const NAMESPACE_MISSING = "no Dynamo namespace: pass --namespace NS or set DYN_NAMESPACE";

const _responseSchema = z.object({
  DYN_TCP_RESPONSE_STREAM_HOST: z.string().trim().optional(),
  DYN_TCP_RESPONSE_STREAM_PORT: z.string().trim().regex(
    /^\d+$/,
    "DYN_TCP_RESPONSE_STREAM_PORT must be an integer between 0 and 65535",
  ).transform(Number).refine(
    (n) => n <= 65535,
    "DYN_TCP_RESPONSE_STREAM_PORT must be an integer between 0 and 65535",
  ).default(0),
});

/** Same rule as the service's DYN_NAMESPACE: one segment of an endpoint path. */
export function validateNamespace(flag: string, value: string): string {
  const ns = value.trim();
  if (!ns) throw new ConfigError(`${flag} must not be empty`);
  if (/[./\s]/.test(ns)) {
    throw new ConfigError(
      `${flag} must not contain '.', '/' or white space (it is one part of a Dynamo endpoint path)`,
    );
  }
  return ns;
}

/** Reads and validates; throws `ConfigError` (exit 2) naming the variable. */
export function readCallEnv(getEnv: EnvGetter, namespaceFlag?: string): CallEnv {
  let namespace: string;
  if (namespaceFlag !== undefined) {
    namespace = validateNamespace("--namespace", namespaceFlag);
  } else {
    const fromEnv = getEnv("DYN_NAMESPACE");
    if (fromEnv === undefined || fromEnv.trim() === "") throw new ConfigError(NAMESPACE_MISSING);
    namespace = validateNamespace("DYN_NAMESPACE", fromEnv);
  }
  // The service's reader, with the namespace already settled (it requires DYN_NAMESPACE).
  const env = readEnv((name) => name === "DYN_NAMESPACE" ? namespace : getEnv(name));

  const raw: Record<string, string> = {};
  for (const name of CALL_ENV_VARS) {
    const value = getEnv(name);
    if (value !== undefined && value !== "") raw[name] = value;
  }
  const parsed = _responseSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => `${String(i.path[0] ?? "")}: ${i.message}`).join("; "),
      { cause: parsed.error },
    );
  }
  return {
    namespace,
    runtime: env.runtime,
    responseStream: {
      host: parsed.data.DYN_TCP_RESPONSE_STREAM_HOST || undefined,
      port: parsed.data.DYN_TCP_RESPONSE_STREAM_PORT,
    },
    kube: { getEnv, serviceAccountDir: DEFAULT_SERVICE_ACCOUNT_DIR },
  };
}
