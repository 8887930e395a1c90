/** `--leader-elect` and its timings: client-go's defaults, Go durations, and its checks at the boundaries. */
import assert from "node:assert/strict";
import { type Config, loadConfig, loadConfigParsers } from "../../src/config/mod.ts";
import { defaultLeaseName, parseGoDuration } from "../../src/config/leader.ts";
import { ConfigError } from "../../src/errors.ts";
import { MAX_TIMER_MS } from "../../src/timing.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

// `--config` files are parsed by modules a start without `--config` never loads.
await loadConfigParsers();

const env = (name: string) => ({ DYN_NAMESPACE: "dynamo" } as Record<string, string>)[name];
const load = (...argv: string[]): Config => {
  const result = loadConfig(argv, env);
  assert.equal(result.kind, "config");
  return (result as { config: Config }).config;
};
const refused = (argv: string[], message: RegExp) =>
  assert.throws(
    () => loadConfig(argv, env),
    (e: unknown) => e instanceof ConfigError && message.test(e.message),
  );

Deno.test("leader election is off by default, with client-go's timings and a Lease per Dynamo namespace", () => {
  assert.deepEqual(load().leaderElection, {
    enabled: false,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    resourceName: "global-planner-dynamo",
  });
  assert.equal(load("--leader-elect").leaderElection.enabled, true);
  assert.equal(defaultLeaseName("My_NS"), "global-planner-my-ns");
});

Deno.test("durations are Go durations on the command line, durations or seconds in --config; flags win", () => {
  assert.equal(parseGoDuration("1m30s"), 90_000);
  assert.equal(parseGoDuration("500ms"), 500);
  assert.equal(parseGoDuration("1.5s"), 1_500);
  assert.equal(parseGoDuration("15"), undefined);
  assert.equal(parseGoDuration("-1s"), undefined);
  const le = load(
    "--leader-elect-lease-duration",
    "1m",
    "--leader-elect-renew-deadline=30s",
    "--leader-elect-retry-period",
    "5s",
    "--leader-elect-resource-name",
    "gp",
  ).leaderElection;
  assert.deepEqual(le, {
    enabled: false,
    leaseDurationMs: 60_000,
    renewDeadlineMs: 30_000,
    retryPeriodMs: 5_000,
    resourceName: "gp",
  });
  const file = JSON.stringify({
    leader_elect: true,
    leader_elect_lease_duration: 20,
    leader_elect_renew_deadline: "12s",
    leader_elect_retry_period: 3,
  });
  const fromFile = load("--config", file).leaderElection;
  assert.equal(fromFile.enabled, true);
  assert.equal(fromFile.leaseDurationMs, 20_000);
  assert.equal(fromFile.renewDeadlineMs, 12_000);
  assert.equal(fromFile.retryPeriodMs, 3_000);
  assert.equal(
    load("--config", file, "--leader-elect-retry-period", "4s").leaderElection.retryPeriodMs,
    4_000,
  );
  refused(["--config", JSON.stringify({ leader_elect: "yes" })], /leader_elect must be true or false/);
  refused(
    ["--config", JSON.stringify({ leader_elect_lease_duration: "soon" })],
    /^leader_elect_lease_duration expects a duration/,
  );
});

Deno.test("renew deadline < lease duration and > 1.2 × retry period, exactly at the boundaries", () => {
  // renew deadline equal to the lease duration: refused; 1 ms less: accepted.
  refused(
    ["--leader-elect-renew-deadline", "15s"],
    /renew deadline \(15000 ms\) must be shorter than the lease duration \(15000 ms/,
  );
  assert.equal(load("--leader-elect-renew-deadline", "14999ms").leaderElection.renewDeadlineMs, 14_999);
  // The Lease stores whole seconds: 15.9 s counts as 15 s.
  refused(
    ["--leader-elect-lease-duration", "15900ms", "--leader-elect-renew-deadline", "15s"],
    /shorter than the lease duration \(15000 ms/,
  );
  // renew deadline equal to 1.2 × retry: refused; 1 ms more: accepted.
  refused(
    ["--leader-elect-retry-period", "5s", "--leader-elect-renew-deadline", "6s"],
    /must be longer than 1.2 × the retry period \(5000 ms\)/,
  );
  assert.equal(
    load("--leader-elect-retry-period", "5s", "--leader-elect-renew-deadline", "6001ms").leaderElection
      .renewDeadlineMs,
    6_001,
  );
  refused([
    "--leader-elect-lease-duration",
    "999ms",
    "--leader-elect-renew-deadline",
    "500ms",
    "--leader-elect-retry-period",
    "100ms",
  ], /lease duration must be at least 1s/);
  refused(["--leader-elect-retry-period", "0s"], /--leader-elect-retry-period must be greater than 0/);
  refused(
    ["--leader-elect-lease-duration", "15"],
    /--leader-elect-lease-duration expects a duration such as 15s/,
  );
  refused([`--leader-elect-lease-duration=${MAX_TIMER_MS + 1}ms`], /at most 2147483647 ms/);
  assert.equal(
    load(`--leader-elect-lease-duration=${MAX_TIMER_MS}ms`).leaderElection.leaseDurationMs,
    MAX_TIMER_MS,
  );
  refused(["--leader-elect-resource-name", "Bad_Name"], /not a valid Kubernetes object name/);
});

Deno.test("unknown --config keys are still refused next to the leader keys", () => {
  refused(
    ["--config", JSON.stringify({ leader_elect: true, leader_elected: true })],
    /unknown key\(s\): leader_elected/,
  );
});
