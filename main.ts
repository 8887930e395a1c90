/**
 * Entry point: config → adapters → core; signals. Exit codes: 0 clean stop, 1 runtime
 * failure (e.g. discovery lost), 2 invalid configuration. `call ...` is the operator's client.
 */
import { startGlobalPlanner } from "./src/app.ts";
import { loadConfig, loadConfigParsers, USAGE } from "./src/config/mod.ts";
import { ConfigError, errorText } from "./src/errors.ts";
import { flushProcessLogs, processLogger } from "./src/ops/log.ts";

async function main(argv: string[]): Promise<number> {
  if (argv[0] === "call") {
    // The operator's client is not part of the service: loaded only when asked for.
    const { runCall } = await import("./src/cli/call.ts");
    return await runCall(argv.slice(1), (name) => Deno.env.get(name));
  }
  // Only a --config file may be YAML: the parser is not loaded otherwise.
  if (argv.some((arg) => arg === "--config" || arg.startsWith("--config="))) await loadConfigParsers();
  let loaded;
  try {
    loaded = loadConfig(argv, (name) => Deno.env.get(name), readSmallFile);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`global-planner: ${error.message}`);
      return 2;
    }
    throw error;
  }
  if (loaded.kind === "help") {
    console.log(USAGE);
    return 0;
  }
  const { config } = loaded;
  const logger = processLogger(config.logFilter);
  logger.info("effective configuration", {
    namespace: config.dynNamespace,
    pod_namespace: config.podNamespace,
    managed_namespaces: config.managedNamespaces,
    environment: config.environment,
    no_operation: config.noOperation,
    max_total_gpus: config.budget.maxTotalGpus,
    min_total_gpus: config.budget.minTotalGpus,
    intent_cache_ttl_seconds: config.budget.intentCacheTtlSeconds,
    blocking_timeout_seconds: config.kube.blockingTimeoutSeconds,
    dgd_api_version: config.kube.dgdApiVersion ?? "auto",
    discovery: config.runtime.discovery,
    request_plane: config.runtime.requestPlane,
    leader_elect: config.leaderElection.enabled,
    ...(config.leaderElection.enabled
      ? {
        leader_elect_lease: `${config.podNamespace}/${config.leaderElection.resourceName}`,
        leader_elect_lease_duration_ms: config.leaderElection.leaseDurationMs,
        leader_elect_renew_deadline_ms: config.leaderElection.renewDeadlineMs,
        leader_elect_retry_period_ms: config.leaderElection.retryPeriodMs,
      }
      : {}),
  });

  // Listen before starting, so a SIGTERM during start-up still ends in a clean stop.
  const stopSignal = new Promise<string>((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      Deno.addSignalListener(signal, () => resolve(signal));
    }
  });
  let planner;
  try {
    planner = await startGlobalPlanner(config, logger, (name) => Deno.env.get(name));
  } catch (error) {
    logger.error("Global Planner failed to start", { error: errorText(error) });
    return error instanceof ConfigError ? 2 : 1;
  }

  const outcome = await Promise.race([
    stopSignal.then((signal) => ({ signal, error: undefined })),
    planner.host.lost.catch((error) => ({ signal: undefined, error })),
  ]);
  if (outcome.error) {
    logger.error("stopping: discovery registration lost", { error: errorText(outcome.error) });
    await planner.stop(0);
    return 1;
  }
  logger.info("stopping", { signal: outcome.signal, grace_ms: config.shutdownGraceMs });
  await planner.stop(config.shutdownGraceMs);
  logger.info("stopped");
  return 0;
}

/** The downward-API files (/etc/podinfo): absent files are normal outside Kubernetes. */
function readSmallFile(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new ConfigError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
}

if (import.meta.main) {
  const code = await main(Deno.args);
  // Deno.exit skips `unload`: the last lines (e.g. "stopped") would stay in the log buffer.
  flushProcessLogs();
  Deno.exit(code);
}
