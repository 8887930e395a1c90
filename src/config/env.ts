/**
 * Environment variables, validated with zod. The runtime variables mean what they mean to the
 * Dynamo runtime (`ai-dynamo-runtime`), so a Global Planner pod can be configured exactly like
 * any other Dynamo component.
 */
import { z } from "zod";
import { ConfigError } from "../errors.ts";
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

const nonEmpty = (name: string) =>
  z.string().trim().min(1, `${name} must not be empty`).refine(
    (s) => !/[./\s]/.test(s),
    `${name} must not contain '.', '/' or white space (it is one part of a Dynamo endpoint path)`,
  );

const intIn = (name: string, min: number, max: number) =>
  z.string().trim().regex(/^\d+$/, `${name} must be an integer between ${min} and ${max}`)
    .transform(Number).refine(
      (n) => n >= min && n <= max,
      `${name} must be an integer between ${min} and ${max}`,
    );

const schema = z.object({
  DYN_NAMESPACE: nonEmpty("DYN_NAMESPACE"),
  POD_NAMESPACE: z.string().trim().min(1, "POD_NAMESPACE must not be empty").default("default"),
  DYN_DISCOVERY_BACKEND: z.string().trim().toLowerCase().default("etcd").pipe(
    z.enum(["etcd", "file", "kubernetes"], {
      error: (issue) =>
        issue.input === "mem"
          ? `DYN_DISCOVERY_BACKEND=mem is process-local and cannot be reached by callers; use "etcd", "file" or "kubernetes"`
          : `DYN_DISCOVERY_BACKEND must be "etcd", "file" or "kubernetes", got "${issue.input}"`,
    }),
  ),
  ETCD_ENDPOINTS: z.string().default("http://localhost:2379").transform((s) =>
    s.split(",").map((e) => e.trim()).filter(Boolean)
  ).pipe(
    z.array(z.url({ protocol: /^https?$/, error: "ETCD_ENDPOINTS must be a comma list of http(s):// URLs" }))
      .min(1, "ETCD_ENDPOINTS must name at least one endpoint"),
  ),
  ETCD_AUTH_USERNAME: z.string().optional(),
  ETCD_AUTH_PASSWORD: z.string().optional(),
  ETCD_AUTH_CA: z.string().optional(),
  ETCD_AUTH_CLIENT_CERT: z.string().optional(),
  ETCD_AUTH_CLIENT_KEY: z.string().optional(),
  // 1.6.1 grants its primary lease with TTL 30 s (measured; the spec says 10).
  ETCD_LEASE_TTL: intIn("ETCD_LEASE_TTL", 1, 3600).default(30),
  GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS: z.string().trim().toLowerCase().default("false").pipe(
    z.enum(["true", "false", "1", "0"], {
      error: "GLOBAL_PLANNER_EXIT_ON_LEASE_LOSS must be true or false",
    }),
  ).transform((v) => v === "true" || v === "1"),
  DYN_FILE_KV: z.string().optional(),
  DYN_FILE_KV_TTL_SECS: intIn("DYN_FILE_KV_TTL_SECS", 1, 3600).default(10),
  TMPDIR: z.string().optional(),
  DYN_REQUEST_PLANE: z.string().trim().toLowerCase().default("tcp").pipe(
    z.enum(["tcp", "nats"], {
      error: (issue) => `DYN_REQUEST_PLANE must be "tcp" or "nats", got "${issue.input}"`,
    }),
  ),
  DYN_TCP_RPC_HOST: z.string().trim().optional(),
  DYN_TCP_RPC_PORT: intIn("DYN_TCP_RPC_PORT", 0, 65535).default(0),
  DYN_TCP_RPC_ADVERTISE_HOST: z.string().trim().optional(),
  DYN_TCP_MAX_MESSAGE_SIZE: intIn("DYN_TCP_MAX_MESSAGE_SIZE", 1024, 2 ** 31).default(
    32 * 1024 * 1024,
  ),
  DYN_TCP_MAX_CONNECTIONS: intIn("DYN_TCP_MAX_CONNECTIONS", 1, 65535).default(1024),
  DYN_TCP_IDLE_TIMEOUT_SECS: intIn("DYN_TCP_IDLE_TIMEOUT_SECS", 0, 86400).default(600),
  DYN_TCP_MAX_INFLIGHT: intIn("DYN_TCP_MAX_INFLIGHT", 1, 65535).default(256),
  DYN_TCP_WRITE_TIMEOUT_SECS: intIn("DYN_TCP_WRITE_TIMEOUT_SECS", 1, 3600).default(10),
  // Below Kubernetes' default terminationGracePeriodSeconds (30), leaving time to deregister.
  DYN_SHUTDOWN_GRACE_SECS: intIn("DYN_SHUTDOWN_GRACE_SECS", 1, 3600).default(25),
  DYN_LOG: z.string().optional(),
  POD_NAME: z.string().trim().optional(),
  POD_UID: z.string().trim().optional(),
  CONTAINER_NAME: z.string().trim().optional(),
  DYN_KUBE_DISCOVERY_MODE: z.string().trim().toLowerCase().default("pod").pipe(
    z.enum(["pod", "container"], {
      error: (issue) => `DYN_KUBE_DISCOVERY_MODE must be "pod" or "container", got "${issue.input}"`,
    }),
  ),
  GLOBAL_PLANNER_KUBE_REQUEST_TIMEOUT_SECONDS: intIn("GLOBAL_PLANNER_KUBE_REQUEST_TIMEOUT_SECONDS", 1, 3600)
    .optional(),
  GLOBAL_PLANNER_KUBE_WATCH_IDLE_SECONDS: intIn("GLOBAL_PLANNER_KUBE_WATCH_IDLE_SECONDS", 1, 3600).optional(),
});

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
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => `${String(i.path[0] ?? "")}: ${i.message}`).join("; "),
      { cause: parsed.error },
    );
  }
  const env = parsed.data;
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

type ParsedEnv = z.infer<typeof schema>;

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
