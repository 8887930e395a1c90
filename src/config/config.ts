/** argv + env → one validated `Config`. */
import { ConfigError } from "../errors.ts";
import { type CliFlags, DEFAULT_SERVICE_ACCOUNT_DIR, parseCliFlags } from "./args.ts";
import { type FileConfig, readConfigOption } from "./config_file.ts";
import { type EnvGetter, type EnvSettings, type FileReader, readEnv } from "./env.ts";
import { MAX_TIMER_MS } from "../timing.ts";
import { type LeaderElectionSettings, leaderElectionSettings } from "./leader.ts";

export interface KubeSettings {
  serviceAccountDir: string;
  blockingTimeoutSeconds: number;
  /** `undefined` = discover the newest served version. */
  dgdApiVersion?: "v1alpha1" | "v1beta1";
}

export interface BudgetSettings {
  /** -1 = no ceiling. */
  maxTotalGpus: number;
  /** -1 = no floor. */
  minTotalGpus: number;
  intentCacheTtlSeconds: number;
}

export type CallerBindingMode = "off" | "operator" | "map";
export const CALLER_BINDING_MODES: readonly CallerBindingMode[] = ["off", "operator", "map"];

/** Our opt-in policies; every default keeps upstream 1.6.1's answers. */
export interface PolicySettings {
  callerBinding: CallerBindingMode;
  /** With `map`: caller namespace → the DGDs (`namespace/name`) it may scale. */
  callerMap: Record<string, string[]>;
  /** `null` = DGDs in every Kubernetes namespace may be scaled. */
  managedK8sNamespaces: string[] | null;
  rejectStale: boolean;
  dryRun: boolean;
  recordEvents: boolean;
}

export interface Config extends EnvSettings {
  /** `null` = implicit mode: every caller is accepted. */
  managedNamespaces: string[] | null;
  environment: "kubernetes";
  noOperation: boolean;
  kube: KubeSettings;
  budget: BudgetSettings;
  policy: PolicySettings;
  /** `--leader-elect` (off: one replica, upstream's behaviour). */
  leaderElection: LeaderElectionSettings;
}

/** Budget enforcement is on when either bound is set. */
export function budgetEnabled(budget: BudgetSettings): boolean {
  return budget.maxTotalGpus >= 0 || budget.minTotalGpus >= 0;
}

/** Whole seconds that fit in a timer (2^31-1 ms). */
export const MAX_BLOCKING_TIMEOUT_SECONDS: number = Math.floor(MAX_TIMER_MS / 1000);

/** Integer >= -1 written in digits (`-1` = off). */
function _gpuFlag(flag: string, value: string): number {
  const text = value.trim();
  if (!/^-?\d+$/.test(text) || Number(text) < -1) throw new ConfigError(`${flag} expects an integer >= -1`);
  return Number(text);
}

function _intentTtl(value: string): number {
  const n = Number(value.trim());
  if (!(Number.isFinite(n) && n > 0)) {
    throw new ConfigError("--intent-cache-ttl-seconds expects a number of seconds > 0");
  }
  return n;
}

/** Every problem of the three is reported, joined by "; ". */
function _kube(flags: CliFlags): KubeSettings {
  const problems: string[] = [];
  const serviceAccountDir = flags.serviceAccountDir ?? DEFAULT_SERVICE_ACCOUNT_DIR;
  if (serviceAccountDir === "") problems.push("--service-account-dir must not be empty");
  const seconds = flags.blockingTimeoutSeconds === undefined ? 1800 : Number(flags.blockingTimeoutSeconds);
  if (!Number.isFinite(seconds)) problems.push("--blocking-timeout-seconds expects a number of seconds");
  else if (seconds <= 0) problems.push("--blocking-timeout-seconds must be greater than 0");
  // Longer than a timer can hold would make every blocking request time out at once.
  else if (seconds > MAX_BLOCKING_TIMEOUT_SECONDS) {
    problems.push(
      `--blocking-timeout-seconds must be at most ${MAX_BLOCKING_TIMEOUT_SECONDS} (about 24.8 days, ` +
        "the longest a timer can wait)",
    );
  }
  const version = flags.dgdApiVersion;
  if (version !== undefined && !["v1alpha1", "v1beta1", "auto"].includes(version)) {
    problems.push(`--dgd-api-version: invalid choice "${version}" (choose from v1alpha1, v1beta1, auto)`);
  }
  if (problems.length > 0) throw new ConfigError(problems.join("; "));
  return {
    serviceAccountDir,
    blockingTimeoutSeconds: seconds,
    dgdApiVersion: version === "auto" ? undefined : version as KubeSettings["dgdApiVersion"],
  };
}

export type LoadResult = { kind: "help" } | { kind: "config"; config: Config };

/** `readFile` reads the downward-API files of kubernetes discovery (see `readEnv`). */
export function loadConfig(argv: string[], getEnv: EnvGetter, readFile?: FileReader): LoadResult {
  const flags: CliFlags = parseCliFlags(argv);
  if (flags.help) return { kind: "help" };
  if (flags.environment !== undefined && flags.environment !== "kubernetes") {
    throw new ConfigError(
      `--environment: invalid choice "${flags.environment}" (choose from "kubernetes")`,
    );
  }
  const env = readEnv(getEnv, readFile);
  const file = flags.config !== undefined ? readConfigOption(flags.config) : {};
  const budget = _budget(flags, file);
  const managedList = flags.managedNamespaces ?? file.managed_namespaces ?? null;
  const managed = managedList?.length ? [...new Set(managedList)] : null;
  const kube = _kube(flags);
  return {
    kind: "config",
    config: {
      ...env,
      managedNamespaces: managed,
      environment: "kubernetes",
      noOperation: flags.noOperation ?? file.no_operation ?? false,
      kube,
      budget,
      policy: _policy(flags, file, flags.noOperation ?? file.no_operation ?? false),
      leaderElection: leaderElectionSettings(
        {
          enabled: flags.leaderElect,
          leaseDuration: flags.leaderElectLeaseDuration,
          renewDeadline: flags.leaderElectRenewDeadline,
          retryPeriod: flags.leaderElectRetryPeriod,
          resourceName: flags.leaderElectResourceName,
        },
        {
          enabled: file.leader_elect,
          leaseDuration: file.leader_elect_lease_duration,
          renewDeadline: file.leader_elect_renew_deadline,
          retryPeriod: file.leader_elect_retry_period,
          resourceName: file.leader_elect_resource_name,
        },
        env.dynNamespace,
      ),
    },
  };
}

/** Flags given on the command line override the file; both are validated; the band must be satisfiable. */
function _budget(flags: CliFlags, file: FileConfig): BudgetSettings {
  const budget = {
    maxTotalGpus:
      (flags.maxTotalGpus === undefined ? undefined : _gpuFlag("--max-total-gpus", flags.maxTotalGpus)) ??
        file.max_total_gpus ?? -1,
    minTotalGpus:
      (flags.minTotalGpus === undefined ? undefined : _gpuFlag("--min-total-gpus", flags.minTotalGpus)) ??
        file.min_total_gpus ?? -1,
    intentCacheTtlSeconds:
      (flags.intentCacheTtlSeconds === undefined ? undefined : _intentTtl(flags.intentCacheTtlSeconds)) ??
        file.intent_cache_ttl_seconds ?? 360,
  };
  if (budget.maxTotalGpus >= 0 && budget.minTotalGpus >= 0 && budget.minTotalGpus > budget.maxTotalGpus) {
    throw new ConfigError(
      `min_total_gpus (${budget.minTotalGpus}) exceeds max_total_gpus (${budget.maxTotalGpus}): ` +
        "no total GPU count satisfies this band",
    );
  }
  return budget;
}

const DGD_REF = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/;

/** Caller binding, target namespaces, stale guard and dry run: flags win over the file. */
function _policy(flags: CliFlags, file: FileConfig, noOperation: boolean): PolicySettings {
  const binding = flags.callerBinding ?? file.caller_binding ?? "off";
  if (!(CALLER_BINDING_MODES as readonly string[]).includes(binding)) {
    throw new ConfigError(`--caller-binding: invalid choice "${binding}" (choose from off, operator, map)`);
  }
  let callerMap: Record<string, string[]> = {};
  if (flags.callerMap) {
    for (const entry of flags.callerMap) {
      const at = entry.indexOf("=");
      const caller = entry.slice(0, at);
      const dgds = at < 0 ? [] : entry.slice(at + 1).split(",").filter((d) => d !== "");
      if (at <= 0 || dgds.length === 0) {
        throw new ConfigError(`--caller-map expects CALLER=NAMESPACE/DGD[,NAMESPACE/DGD...], got "${entry}"`);
      }
      callerMap[caller] = [...(callerMap[caller] ?? []), ...dgds];
    }
  } else if (file.caller_map) callerMap = file.caller_map;
  for (const [caller, dgds] of Object.entries(callerMap)) {
    const bad = dgds.find((d) => !DGD_REF.test(d));
    if (bad !== undefined || dgds.length === 0) {
      throw new ConfigError(
        `caller map: caller "${caller}" must map to one or more "namespace/dgd" names, got "${bad ?? ""}"`,
      );
    }
  }
  const mapped = Object.keys(callerMap).length > 0;
  if (binding === "map" && !mapped) {
    throw new ConfigError("--caller-binding map needs --caller-map (or caller_map in --config)");
  }
  if (binding !== "map" && mapped) {
    throw new ConfigError(
      `--caller-map is only used with --caller-binding map (caller binding is ${binding})`,
    );
  }
  const k8s = flags.managedK8sNamespaces ?? file.managed_k8s_namespaces ?? null;
  const dryRun = flags.dryRun ?? file.dry_run ?? false;
  if (dryRun && noOperation) {
    throw new ConfigError(
      "--dry-run and --no-operation exclude each other: --no-operation answers without reading " +
        "Kubernetes, --dry-run decides against it without persisting",
    );
  }
  const rejectStale = flags.rejectStale ?? file.reject_stale ?? false;
  const recordEvents = flags.recordEvents ?? file.record_events ?? false;
  return {
    callerBinding: binding as CallerBindingMode,
    callerMap,
    managedK8sNamespaces: k8s?.length ? [...new Set(k8s)] : null,
    rejectStale,
    dryRun,
    recordEvents,
  };
}
