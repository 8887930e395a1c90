/**
 * Environment variables, validated (src/config/setting_checks.ts). The runtime variables mean what they mean to the
 * Dynamo runtime (`ai-dynamo-runtime`), so a Global Planner pod can be configured exactly like
 * any other Dynamo component.
 */
import { ConfigError } from "../errors.ts";
import { choice, httpUrls, intIn, Issues } from "./setting_checks.ts";
import type { EnvGetter } from "./env_getter.ts";
import { NATS_ENV_VARS, type NatsSettings, readNatsSettings } from "./nats.ts";
import { STATUS_ENV_VARS } from "./status.ts";

export type { EnvGetter };

/** Every variable the service reads; also the `env` list of the Deno permission set. */
export const ENV_VARS = [
  ...STATUS_ENV_VARS,
  ...NATS_ENV_VARS,
  // Read by the `call` subcommand (the caller's call-home listener), as 1.6.1 callers do.
  "DYN_TCP_RESPONSE_STREAM_HOST",
  "DYN_TCP_RESPONSE_STREAM_PORT",
  "DYN_NAMESPACE",
  "POD_NAMESPACE",
  "DYN_DISCOVERY_BACKEND",
  "ETCD_ENDPOINTS",
  "ETCD_AUTH_USERNAME",
  "ETCD_AUTH_PASSWORD",
  "ETCD_AUTH_CA",
  "ETCD_AUTH_CLIENT_CERT",
  "ETCD_AUTH_CLIENT_KEY",
  "ETCD_LEASE_TTL",
  // Ours: exit (code 1) when the etcd lease is lost instead of re-registering under a new one.
  "GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS",
  "DYN_FILE_KV",
  "DYN_FILE_KV_TTL_SECS",
  "TMPDIR",
  "DYN_REQUEST_PLANE",
  "DYN_TCP_RPC_HOST",
  "DYN_TCP_RPC_PORT",
  "DYN_TCP_RPC_ADVERTISE_HOST",
  "DYN_TCP_MAX_MESSAGE_SIZE",
  // Ours (the runtime has no such limits): resource bounds of the request and response planes.
  "DYN_TCP_MAX_CONNECTIONS",
  "DYN_TCP_IDLE_TIMEOUT_SECS",
  "DYN_TCP_MAX_INFLIGHT",
  "DYN_TCP_WRITE_TIMEOUT_SECS",
  "DYN_SHUTDOWN_GRACE_SECS",
  "DYN_LOG",
  "KUBERNETES_SERVICE_HOST",
  "KUBERNETES_SERVICE_PORT",
  "KUBECONFIG",
  // Kubernetes discovery: the pod's identity (the downward API), as the runtime reads it.
  "POD_NAME",
  "POD_UID",
  "CONTAINER_NAME",
  "DYN_KUBE_DISCOVERY_MODE",
  // Ours: deadline of each Kubernetes request, and how long a watch may stay silent.
  "GLOBAL_PLANNER_KUBE_REQUEST_TIMEOUT_SECONDS",
  "GLOBAL_PLANNER_KUBE_WATCH_IDLE_SECONDS",
] as const;

export type DiscoveryBackend = "etcd" | "file" | "kubernetes";
export type RequestPlaneKind = "tcp" | "nats";

/** Where the downward-API volume puts the pod's identity; these files win over the env vars. */
export const PODINFO_DIR = "/etc/podinfo";

/** Reads a small file; `undefined` when it does not exist. */
export type FileReader = (path: string) => string | undefined;

/** Who this process is, for the Kubernetes discovery backend. */
export interface KubeIdentity {
  podName: string;
  podUid: string;
  podNamespace: string;
  mode: "pod" | "container";
  containerName?: string;
  /** The DynamoWorkerMetadata name: the pod name, or `{pod}-{container}` in container mode. */
  crName: string;
  /** Whether the CR's Pod ownerReference is the controller (only when the CR is named after the pod). */
  controller: boolean;
}

export interface EtcdSettings {
  endpoints: string[];
  username?: string;
  password?: string;
  caFile?: string;
  clientCertFile?: string;
  clientKeyFile?: string;
  leaseTtlSeconds: number;
  /** How often the records are read back and healed (default 1 s). */
  checkIntervalMs?: number;
  /** End the process when the lease is lost instead of re-registering under a new lease. */
  exitOnLeaseLoss?: boolean;
}

export interface FileKvSettings {
  root: string;
  ttlSeconds: number;
}

export interface TcpSettings {
  host?: string;
  port: number;
  advertiseHost?: string;
  maxMessageSize: number;
  /** Open request connections; more are accepted and closed at once. */
  maxConnections: number;
  /** A connection without a complete frame for this long is closed; 0 = never. */
  idleTimeoutMs: number;
  /** Requests being answered; a frame beyond it is ACKed `Server overloaded: ...`. */
  maxInFlight: number;
  /** Deadline of every ACK write, call-home connect and call-home write. */
  writeTimeoutMs: number;
}

export interface RuntimeSettings {
  discovery: DiscoveryBackend;
  etcd: EtcdSettings;
  fileKv: FileKvSettings;
  requestPlane: RequestPlaneKind;
  /** Also with NATS: bounds shared by both planes (in-flight limit, write deadlines). */
  tcp: TcpSettings;
  /** Set when `requestPlane` is `nats`. */
  nats?: NatsSettings;
  /** Set when `discovery` is `kubernetes`. */
  kube?: KubeIdentity;
}

/** Unset = the Kubernetes client's defaults (30 s per request, 90 s of watch silence). */
export interface KubeTimeouts {
  requestTimeoutMs?: number;
  watchIdleMs?: number;
}

export interface EnvSettings {
  dynNamespace: string;
  podNamespace: string;
  /** `POD_NAME` (or the downward-API file): the base of the leader election identity. */
  podName?: string;
  logFilter?: string;
  /** How long SIGTERM waits for in-flight requests before it cuts them off. */
  shutdownGraceMs: number;
  runtime: RuntimeSettings;
  kubeTimeouts: KubeTimeouts;
}

export const DYN_NAMESPACE_MISSING =
  "DYN_NAMESPACE environment variable is required but not set. Please set DYN_NAMESPACE to " +
  "specify the Dynamo namespace for GlobalPlanner.";

/** The variables as `readEnv` has checked them (defaults applied). */
interface ParsedEnv {
  DYN_NAMESPACE: string;
  POD_NAMESPACE: string;
  DYN_DISCOVERY_BACKEND: DiscoveryBackend;
  ETCD_ENDPOINTS: string[];
  ETCD_AUTH_USERNAME?: string;
  ETCD_AUTH_PASSWORD?: string;
  ETCD_AUTH_CA?: string;
  ETCD_AUTH_CLIENT_CERT?: string;
  ETCD_AUTH_CLIENT_KEY?: string;
  ETCD_LEASE_TTL: number;
  GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS: boolean;
  DYN_FILE_KV?: string;
  DYN_FILE_KV_TTL_SECS: number;
  TMPDIR?: string;
  DYN_REQUEST_PLANE: RequestPlaneKind;
  DYN_TCP_RPC_HOST?: string;
  DYN_TCP_RPC_PORT: number;
  DYN_TCP_RPC_ADVERTISE_HOST?: string;
  DYN_TCP_MAX_MESSAGE_SIZE: number;
  DYN_TCP_MAX_CONNECTIONS: number;
  DYN_TCP_IDLE_TIMEOUT_SECS: number;
  DYN_TCP_MAX_INFLIGHT: number;
  DYN_TCP_WRITE_TIMEOUT_SECS: number;
  DYN_SHUTDOWN_GRACE_SECS: number;
  DYN_LOG?: string;
  POD_NAME?: string;
  POD_UID?: string;
  CONTAINER_NAME?: string;
  DYN_KUBE_DISCOVERY_MODE: "pod" | "container";
  GLOBAL_PLANNER_KUBE_REQUEST_TIMEOUT_SECONDS?: number;
  GLOBAL_PLANNER_KUBE_WATCH_IDLE_SECONDS?: number;
}

/** Every check runs, so one start reports every bad variable. */
function _parse(raw: Record<string, string>): ParsedEnv {
  const issues = new Issues();
  const int = (name: string, min: number, max: number) => intIn(issues, name, raw[name], min, max);
  const trimmed = (name: string) => raw[name]?.trim();
  const namespace = raw.DYN_NAMESPACE.trim();
  if (namespace === "") issues.add("DYN_NAMESPACE", "DYN_NAMESPACE must not be empty");
  else if (/[./\s]/.test(namespace)) {
    issues.add(
      "DYN_NAMESPACE",
      "DYN_NAMESPACE must not contain '.', '/' or white space (it is one part of a Dynamo endpoint path)",
    );
  }
  const podNamespace = trimmed("POD_NAMESPACE") ?? "default";
  if (podNamespace === "") issues.add("POD_NAMESPACE", "POD_NAMESPACE must not be empty");
  const env: ParsedEnv = {
    DYN_NAMESPACE: namespace,
    POD_NAMESPACE: podNamespace,
    DYN_DISCOVERY_BACKEND: choice(
      issues,
      "DYN_DISCOVERY_BACKEND",
      raw.DYN_DISCOVERY_BACKEND,
      "etcd",
      ["etcd", "file", "kubernetes"],
      (value) =>
        value === "mem"
          ? `DYN_DISCOVERY_BACKEND=mem is process-local and cannot be reached by callers; use "etcd", "file" or "kubernetes"`
          : `DYN_DISCOVERY_BACKEND must be "etcd", "file" or "kubernetes", got "${value}"`,
    ),
    ETCD_ENDPOINTS: httpUrls(
      issues,
      "ETCD_ENDPOINTS",
      raw.ETCD_ENDPOINTS ?? "http://localhost:2379",
      "ETCD_ENDPOINTS must be a comma list of http(s):// URLs",
    ),
    ETCD_AUTH_USERNAME: raw.ETCD_AUTH_USERNAME,
    ETCD_AUTH_PASSWORD: raw.ETCD_AUTH_PASSWORD,
    ETCD_AUTH_CA: raw.ETCD_AUTH_CA,
    ETCD_AUTH_CLIENT_CERT: raw.ETCD_AUTH_CLIENT_CERT,
    ETCD_AUTH_CLIENT_KEY: raw.ETCD_AUTH_CLIENT_KEY,
    // 1.6.1 grants its primary lease with TTL 30 s (measured; the spec says 10).
    ETCD_LEASE_TTL: int("ETCD_LEASE_TTL", 1, 3600) ?? 30,
    GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS: ["true", "1"].includes(
      choice(
        issues,
        "GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS",
        raw.GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS,
        "false",
        ["true", "false", "1", "0"],
        () => "GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS must be true or false",
      ),
    ),
    DYN_FILE_KV: raw.DYN_FILE_KV,
    DYN_FILE_KV_TTL_SECS: int("DYN_FILE_KV_TTL_SECS", 1, 3600) ?? 10,
    TMPDIR: raw.TMPDIR,
    DYN_REQUEST_PLANE: choice(
      issues,
      "DYN_REQUEST_PLANE",
      raw.DYN_REQUEST_PLANE,
      "tcp",
      ["tcp", "nats"],
      (value) => `DYN_REQUEST_PLANE must be "tcp" or "nats", got "${value}"`,
    ),
    DYN_TCP_RPC_HOST: trimmed("DYN_TCP_RPC_HOST"),
    DYN_TCP_RPC_PORT: int("DYN_TCP_RPC_PORT", 0, 65535) ?? 0,
    DYN_TCP_RPC_ADVERTISE_HOST: trimmed("DYN_TCP_RPC_ADVERTISE_HOST"),
    DYN_TCP_MAX_MESSAGE_SIZE: int("DYN_TCP_MAX_MESSAGE_SIZE", 1024, 2 ** 31) ?? 32 * 1024 * 1024,
    DYN_TCP_MAX_CONNECTIONS: int("DYN_TCP_MAX_CONNECTIONS", 1, 65535) ?? 1024,
    DYN_TCP_IDLE_TIMEOUT_SECS: int("DYN_TCP_IDLE_TIMEOUT_SECS", 0, 86400) ?? 600,
    DYN_TCP_MAX_INFLIGHT: int("DYN_TCP_MAX_INFLIGHT", 1, 65535) ?? 256,
    DYN_TCP_WRITE_TIMEOUT_SECS: int("DYN_TCP_WRITE_TIMEOUT_SECS", 1, 3600) ?? 10,
    // Below Kubernetes' default terminationGracePeriodSeconds (30), leaving time to deregister.
    DYN_SHUTDOWN_GRACE_SECS: int("DYN_SHUTDOWN_GRACE_SECS", 1, 3600) ?? 25,
    DYN_LOG: raw.DYN_LOG,
    POD_NAME: trimmed("POD_NAME"),
    POD_UID: trimmed("POD_UID"),
    CONTAINER_NAME: trimmed("CONTAINER_NAME"),
    DYN_KUBE_DISCOVERY_MODE: choice(
      issues,
      "DYN_KUBE_DISCOVERY_MODE",
      raw.DYN_KUBE_DISCOVERY_MODE,
      "pod",
      ["pod", "container"],
      (value) => `DYN_KUBE_DISCOVERY_MODE must be "pod" or "container", got "${value}"`,
    ),
    GLOBAL_PLANNER_KUBE_REQUEST_TIMEOUT_SECONDS: int("GLOBAL_PLANNER_KUBE_REQUEST_TIMEOUT_SECONDS", 1, 3600),
    GLOBAL_PLANNER_KUBE_WATCH_IDLE_SECONDS: int("GLOBAL_PLANNER_KUBE_WATCH_IDLE_SECONDS", 1, 3600),
  };
  issues.throwIfAny();
  return env;
}

/** A Kubernetes object name (DNS-1123 subdomain), as the API server validates it. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const MAX_CR_NAME = 253;

/**
 * `readFile` reads the downward-API files under /etc/podinfo (kubernetes discovery only);
 * the default finds none.
 */
export function readEnv(getEnv: EnvGetter, readFile: FileReader = () => undefined): EnvSettings {
  const raw: Record<string, string> = {};
  for (const name of ENV_VARS) {
    const value = getEnv(name);
    // An empty variable counts as unset, as it does for the Rust runtime's config loader.
    if (value !== undefined && value !== "") raw[name] = value;
  }
  if (raw.DYN_NAMESPACE === undefined) throw new ConfigError(DYN_NAMESPACE_MISSING);
  const env = _parse(raw);
  const kube = env.DYN_DISCOVERY_BACKEND === "kubernetes" ? _kubeIdentity(env, readFile) : undefined;
  const tmp = (env.TMPDIR ?? "/tmp").replace(/\/+$/, "") || "/";
  return {
    dynNamespace: env.DYN_NAMESPACE,
    podNamespace: kube?.podNamespace ?? env.POD_NAMESPACE,
    podName: kube?.podName ?? env.POD_NAME,
    logFilter: env.DYN_LOG,
    shutdownGraceMs: env.DYN_SHUTDOWN_GRACE_SECS * 1000,
    kubeTimeouts: {
      requestTimeoutMs: _ms(env.GLOBAL_PLANNER_KUBE_REQUEST_TIMEOUT_SECONDS),
      watchIdleMs: _ms(env.GLOBAL_PLANNER_KUBE_WATCH_IDLE_SECONDS),
    },
    runtime: {
      discovery: env.DYN_DISCOVERY_BACKEND,
      etcd: {
        endpoints: env.ETCD_ENDPOINTS,
        username: env.ETCD_AUTH_USERNAME,
        password: env.ETCD_AUTH_PASSWORD,
        caFile: env.ETCD_AUTH_CA,
        clientCertFile: env.ETCD_AUTH_CLIENT_CERT,
        clientKeyFile: env.ETCD_AUTH_CLIENT_KEY,
        leaseTtlSeconds: env.ETCD_LEASE_TTL,
        exitOnLeaseLoss: env.GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS,
      },
      fileKv: {
        root: env.DYN_FILE_KV ?? `${tmp}/dynamo_store_kv`,
        ttlSeconds: env.DYN_FILE_KV_TTL_SECS,
      },
      requestPlane: env.DYN_REQUEST_PLANE,
      tcp: {
        host: env.DYN_TCP_RPC_HOST,
        port: env.DYN_TCP_RPC_PORT,
        advertiseHost: env.DYN_TCP_RPC_ADVERTISE_HOST,
        maxMessageSize: env.DYN_TCP_MAX_MESSAGE_SIZE,
        maxConnections: env.DYN_TCP_MAX_CONNECTIONS,
        idleTimeoutMs: env.DYN_TCP_IDLE_TIMEOUT_SECS * 1000,
        maxInFlight: env.DYN_TCP_MAX_INFLIGHT,
        writeTimeoutMs: env.DYN_TCP_WRITE_TIMEOUT_SECS * 1000,
      },
      nats: env.DYN_REQUEST_PLANE === "nats" ? readNatsSettings(getEnv) : undefined,
      kube,
    },
  };
}

/** The pod identity: /etc/podinfo files first, then the env vars; names checked before any API call. */
function _kubeIdentity(env: ParsedEnv, readFile: FileReader): KubeIdentity {
  const file = (name: string) => readFile(`${PODINFO_DIR}/${name}`)?.trim() || undefined;
  const podName = file("pod_name") ?? env.POD_NAME;
  const podUid = file("pod_uid") ?? env.POD_UID;
  const podNamespace = file("pod_namespace") ?? env.POD_NAMESPACE;
  const missing = [podName ? undefined : "POD_NAME", podUid ? undefined : "POD_UID"].filter(Boolean);
  if (missing.length) {
    throw new ConfigError(
      `DYN_DISCOVERY_BACKEND=kubernetes needs the pod's identity: ${missing.join(" and ")} ` +
        `${missing.length > 1 ? "are" : "is"} not set (nor ${PODINFO_DIR}/` +
        `${missing.map((m) => m!.toLowerCase()).join(", " + PODINFO_DIR + "/")}); ` +
        "set them from the downward API (metadata.name, metadata.uid)",
    );
  }
  const mode = env.DYN_KUBE_DISCOVERY_MODE;
  let crName = podName!;
  if (mode === "container") {
    if (!env.CONTAINER_NAME) {
      throw new ConfigError("DYN_KUBE_DISCOVERY_MODE=container needs CONTAINER_NAME, which is not set");
    }
    if (env.CONTAINER_NAME !== "main") crName = `${podName}-${env.CONTAINER_NAME}`;
  }
  if (crName.length > MAX_CR_NAME || !DNS_SUBDOMAIN.test(crName)) {
    throw new ConfigError(
      `DynamoWorkerMetadata name "${crName}" (from ${
        mode === "container" ? "POD_NAME-CONTAINER_NAME" : "POD_NAME"
      }) ` +
        `is not a valid Kubernetes object name: at most ${MAX_CR_NAME} characters of lower-case letters, ` +
        "digits, '-' and '.', starting and ending with a letter or digit",
    );
  }
  return {
    podName: podName!,
    podUid: podUid!,
    podNamespace,
    mode,
    containerName: env.CONTAINER_NAME,
    crName,
    controller: crName === podName,
  };
}

function _ms(seconds: number | undefined): number | undefined {
  return seconds === undefined ? undefined : seconds * 1000;
}
