/**
 * Command-line flags, parsed with `node:util` `parseArgs` (JSR's `@std/cli` is unreachable
 * here). `--managed-namespaces` takes several values after one flag, as upstream's argparse
 * `nargs="+"` does; the values end at the next `--flag`.
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../errors.ts";

export interface CliFlags {
  help: boolean;
  managedNamespaces?: string[];
  environment?: string;
  /** `undefined` when not given, so a `--config` file may set it. */
  noOperation?: boolean;
  maxTotalGpus?: string;
  minTotalGpus?: string;
  intentCacheTtlSeconds?: string;
  config?: string;
  serviceAccountDir?: string;
  blockingTimeoutSeconds?: string;
  dgdApiVersion?: string;
  callerBinding?: string;
  /** `CALLER=NS/DGD[,NS/DGD...]`, one per occurrence. */
  callerMap?: string[];
  managedK8sNamespaces?: string[];
  rejectStale?: boolean;
  dryRun?: boolean;
  recordEvents?: boolean;
  leaderElect?: boolean;
  leaderElectLeaseDuration?: string;
  leaderElectRenewDeadline?: string;
  leaderElectRetryPeriod?: string;
  leaderElectResourceName?: string;
}

/** `--service-account-dir`'s default (upstream's, where the kubelet mounts the token). */
export const DEFAULT_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export const USAGE = `Usage: global-planner [options]
       global-planner call --help        (call the service as a planner would)

Serves <DYN_NAMESPACE>.GlobalPlanner.scale_request and .health on the Dynamo runtime.

Options:
  --managed-namespaces NS [NS ...]  Dynamo namespaces allowed to call (default: all)
  --environment kubernetes          Only supported environment (default: kubernetes)
  --no-operation                    Log scale requests and answer success without scaling
  --max-total-gpus N                GPU ceiling over all managed DGDs (-1 = off, default)
  --min-total-gpus N                GPU floor over all managed DGDs (-1 = off, default)
  --intent-cache-ttl-seconds S      How long a planner's last request counts for pairing (360)
  --config JSON|PATH                Settings as inline JSON or a .json/.yaml/.yml file (keys:
                                    managed_namespaces, environment, no_operation,
                                    max_total_gpus, min_total_gpus, intent_cache_ttl_seconds,
                                    leader_elect, leader_elect_lease_duration,
                                    leader_elect_renew_deadline, leader_elect_retry_period,
                                    leader_elect_resource_name);
                                    flags given on the command line win
  --blocking-timeout-seconds S      How long a blocking request waits for Ready (default 1800)
  --dgd-api-version V               v1alpha1 | v1beta1 | auto (default: newest served)
  --service-account-dir DIR         In-cluster credentials (default
                                    ${DEFAULT_SERVICE_ACCOUNT_DIR})
  --caller-binding off|operator|map Which DGDs a caller may scale (default off = any):
                                    operator = caller is "{k8s_namespace}-{dgd}",
                                    map = only the DGDs --caller-map lists for it
  --caller-map CALLER=NS/DGD[,...]  One caller's DGDs (repeat per caller; with map)
  --managed-k8s-namespaces NS [NS ...]
                                    Kubernetes namespaces whose DGDs may be scaled (default: all)
  --reject-stale                    Refuse requests older than the DGD's last applied one;
                                    answer an identical retry without writing again
  --dry-run                         Decide and send the writes with server-side dry run;
                                    answers are prefixed [dry-run]; nothing is persisted
  --record-events                   Record each decision as a Kubernetes Event on the DGD
  --leader-elect                    Run as one of several replicas: only the holder of a
                                    Lease in POD_NAMESPACE serves and writes (default: off)
  --leader-elect-lease-duration D   How long others wait for an unrenewed Lease (15s)
  --leader-elect-renew-deadline D   How long the leader keeps trying to renew (10s)
  --leader-elect-retry-period D     Between attempts to acquire or renew (2s)
  --leader-elect-resource-name N    Lease name (default global-planner-<DYN_NAMESPACE>)
  -h, --help                        Show this help and exit

Environment: DYN_NAMESPACE (required), POD_NAMESPACE (default "default"), and the Dynamo
runtime variables (DYN_DISCOVERY_BACKEND, ETCD_ENDPOINTS, DYN_FILE_KV, DYN_REQUEST_PLANE,
DYN_TCP_RPC_HOST, DYN_TCP_RPC_PORT, DYN_LOG, ...). See README.md.`;

const NUMERIC_OPTIONS = new Set([
  "--max-total-gpus",
  "--min-total-gpus",
  "--intent-cache-ttl-seconds",
  "--blocking-timeout-seconds",
]);

/** argparse takes `--max-total-gpus -1`; parseArgs would read `-1` as an option, so join the pair. */
function _joinNegativeNumbers(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (NUMERIC_OPTIONS.has(argv[i]) && /^-\d/.test(argv[i + 1] ?? "")) {
      out.push(`${argv[i]}=${argv[i + 1]}`);
      i++;
    } else {
      out.push(argv[i]);
    }
  }
  return out;
}

export function parseCliFlags(argv: string[]): CliFlags {
  let parsed;
  try {
    parsed = parseArgs({
      args: _joinNegativeNumbers(argv),
      strict: true,
      allowPositionals: true,
      tokens: true,
      options: {
        "help": { type: "boolean", short: "h" },
        "managed-namespaces": { type: "string", multiple: true },
        "environment": { type: "string" },
        "no-operation": { type: "boolean" },
        "max-total-gpus": { type: "string" },
        "min-total-gpus": { type: "string" },
        "intent-cache-ttl-seconds": { type: "string" },
        "config": { type: "string" },
        "service-account-dir": { type: "string" },
        "blocking-timeout-seconds": { type: "string" },
        "dgd-api-version": { type: "string" },
        "caller-binding": { type: "string" },
        "caller-map": { type: "string", multiple: true },
        "managed-k8s-namespaces": { type: "string", multiple: true },
        "reject-stale": { type: "boolean" },
        "dry-run": { type: "boolean" },
        "record-events": { type: "boolean" },
        "leader-elect": { type: "boolean" },
        "leader-elect-lease-duration": { type: "string" },
        "leader-elect-renew-deadline": { type: "string" },
        "leader-elect-retry-period": { type: "string" },
        "leader-elect-resource-name": { type: "string" },
      },
    });
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n\n${USAGE}`, { cause: error });
  }

  const flags: CliFlags = { help: false };
  let collecting: string[] | undefined;
  for (const token of parsed.tokens ?? []) {
    if (token.kind === "option") {
      collecting = undefined;
      switch (token.name) {
        case "help":
          flags.help = true;
          break;
        case "no-operation":
          flags.noOperation = true;
          break;
        case "environment":
          flags.environment = token.value;
          break;
        case "max-total-gpus":
          flags.maxTotalGpus = token.value;
          break;
        case "min-total-gpus":
          flags.minTotalGpus = token.value;
          break;
        case "intent-cache-ttl-seconds":
          flags.intentCacheTtlSeconds = token.value;
          break;
        case "config":
          flags.config = token.value;
          break;
        case "service-account-dir":
          flags.serviceAccountDir = token.value;
          break;
        case "blocking-timeout-seconds":
          flags.blockingTimeoutSeconds = token.value;
          break;
        case "dgd-api-version":
          flags.dgdApiVersion = token.value;
          break;
        case "caller-binding":
          flags.callerBinding = token.value;
          break;
        case "caller-map":
          flags.callerMap ??= [];
          flags.callerMap.push(token.value ?? "");
          break;
        case "reject-stale":
          flags.rejectStale = true;
          break;
        case "dry-run":
          flags.dryRun = true;
          break;
        case "record-events":
          flags.recordEvents = true;
          break;
        case "managed-k8s-namespaces":
          flags.managedK8sNamespaces ??= [];
          if (token.value !== undefined) flags.managedK8sNamespaces.push(token.value);
          collecting = flags.managedK8sNamespaces;
          break;
        case "leader-elect":
          flags.leaderElect = true;
          break;
        case "leader-elect-lease-duration":
          flags.leaderElectLeaseDuration = token.value;
          break;
        case "leader-elect-renew-deadline":
          flags.leaderElectRenewDeadline = token.value;
          break;
        case "leader-elect-retry-period":
          flags.leaderElectRetryPeriod = token.value;
          break;
        case "leader-elect-resource-name":
          flags.leaderElectResourceName = token.value;
          break;
        case "managed-namespaces":
          flags.managedNamespaces ??= [];
          if (token.value !== undefined) flags.managedNamespaces.push(token.value);
          // `--managed-namespaces=a b`: `b` still belongs to the flag, as with argparse.
          collecting = flags.managedNamespaces;
          break;
      }
    } else if (token.kind === "positional") {
      if (!collecting) {
        throw new ConfigError(`unrecognized argument: ${token.value}\n\n${USAGE}`);
      }
      collecting.push(token.value);
    } else {
      collecting = undefined;
    }
  }
  if (flags.managedNamespaces) {
    if (flags.managedNamespaces.length === 0 || flags.managedNamespaces.some((ns) => !ns)) {
      throw new ConfigError("--managed-namespaces expects one or more non-empty namespaces");
    }
  }
  if (flags.managedK8sNamespaces) {
    if (flags.managedK8sNamespaces.length === 0 || flags.managedK8sNamespaces.some((ns) => !ns)) {
      throw new ConfigError("--managed-k8s-namespaces expects one or more non-empty namespaces");
    }
  }
  return flags;
}
