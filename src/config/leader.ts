/**
 * `--leader-elect` and its timings, with the flag names, defaults and checks of client-go's
 * leader election (every Kubernetes component has the same `--leader-elect-*` flags). Durations
 * are Go durations (`15s`, `1m30s`, `500ms`); in a `--config` file also a number of seconds.
 */
import { ConfigError } from "../errors.ts";
import { MAX_TIMER_MS } from "../timing.ts";

export interface LeaderElectionSettings {
  enabled: boolean;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** Name of the Lease in `POD_NAMESPACE`. */
  resourceName: string;
}

export const DEFAULT_LEASE_DURATION_MS = 15_000;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;
/** client-go's `JitterFactor`: the renew deadline must exceed retry × 1.2. */
export const LEADER_JITTER_FACTOR = 1.2;

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** A Go duration (`1h2m3.5s`, `250ms`) in milliseconds; `undefined` when it is not one. */
export function parseGoDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(trimmed)) return undefined;
  let total = 0;
  for (const [, value, , unit] of trimmed.matchAll(/(\d+(\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(value) * UNITS[unit];
  }
  return total;
}

export interface LeaderInputs {
  enabled?: boolean;
  leaseDuration?: string | number;
  renewDeadline?: string | number;
  retryPeriod?: string | number;
  resourceName?: string;
}

/** The default Lease name: one per Dynamo namespace, as a DNS subdomain. */
export function defaultLeaseName(dynNamespace: string): string {
  const safe = dynNamespace.toLowerCase().replace(/[^a-z0-9.-]+/g, "-").replace(
    /^[^a-z0-9]+|[^a-z0-9]+$/g,
    "",
  );
  return `global-planner-${safe || "default"}`.slice(0, 253).replace(/[^a-z0-9]+$/, "");
}

/** `flags` wins over `file`; errors name the flag or key the bad value came from. */
export function leaderElectionSettings(
  flags: LeaderInputs,
  file: LeaderInputs,
  dynNamespace: string,
): LeaderElectionSettings {
  const duration = (
    key: "leaseDuration" | "renewDeadline" | "retryPeriod",
    flagName: string,
    fileName: string,
    fallback: number,
  ) => {
    const fromFlag = flags[key];
    const value = fromFlag ?? file[key];
    if (value === undefined) return fallback;
    const name = fromFlag !== undefined ? flagName : fileName;
    const ms = typeof value === "number" ? value * 1000 : parseGoDuration(value);
    if (ms === undefined || !Number.isFinite(ms)) {
      throw new ConfigError(`${name} expects a duration such as 15s, 1m30s or 500ms, got "${value}"`);
    }
    if (ms <= 0) throw new ConfigError(`${name} must be greater than 0`);
    if (ms > MAX_TIMER_MS) {
      throw new ConfigError(`${name} must be at most ${MAX_TIMER_MS} ms (the longest a timer can wait)`);
    }
    return ms;
  };
  const leaseDurationMs = duration(
    "leaseDuration",
    "--leader-elect-lease-duration",
    "leader_elect_lease_duration",
    DEFAULT_LEASE_DURATION_MS,
  );
  const renewDeadlineMs = duration(
    "renewDeadline",
    "--leader-elect-renew-deadline",
    "leader_elect_renew_deadline",
    DEFAULT_RENEW_DEADLINE_MS,
  );
  const retryPeriodMs = duration(
    "retryPeriod",
    "--leader-elect-retry-period",
    "leader_elect_retry_period",
    DEFAULT_RETRY_PERIOD_MS,
  );
  // The Lease stores whole seconds (client-go truncates); others trust that figure.
  const leaseSeconds = Math.floor(leaseDurationMs / 1000);
  if (leaseSeconds < 1) throw new ConfigError("leader election lease duration must be at least 1s");
  if (renewDeadlineMs >= leaseSeconds * 1000) {
    throw new ConfigError(
      `leader election renew deadline (${renewDeadlineMs} ms) must be shorter than the lease duration ` +
        `(${leaseSeconds * 1000} ms as the Lease stores it): a leader must stop before others may take over`,
    );
  }
  if (renewDeadlineMs <= retryPeriodMs * LEADER_JITTER_FACTOR) {
    throw new ConfigError(
      `leader election renew deadline (${renewDeadlineMs} ms) must be longer than ` +
        `${LEADER_JITTER_FACTOR} × the retry period (${retryPeriodMs} ms)`,
    );
  }
  const resourceName = flags.resourceName ?? file.resourceName ?? defaultLeaseName(dynNamespace);
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(resourceName) || resourceName.length > 253) {
    throw new ConfigError(
      `leader election resource name "${resourceName}" is not a valid Kubernetes object name ` +
        "(lower-case letters, digits, '-' and '.', at most 253)",
    );
  }
  return {
    enabled: flags.enabled ?? file.enabled ?? false,
    leaseDurationMs,
    renewDeadlineMs,
    retryPeriodMs,
    resourceName,
  };
}
