/** argv + env → one validated `Config`. */
import { ConfigError } from "../errors.ts";
import { type CliFlags, parseCliFlags } from "./args.ts";
import { type EnvGetter, type EnvSettings, readEnv } from "./env.ts";

export interface Config extends EnvSettings {
  /** `null` = implicit mode: every caller is accepted. */
  managedNamespaces: string[] | null;
  environment: "kubernetes";
  noOperation: boolean;
}

export type LoadResult = { kind: "help" } | { kind: "config"; config: Config };

export function loadConfig(argv: string[], getEnv: EnvGetter): LoadResult {
  const flags: CliFlags = parseCliFlags(argv);
  if (flags.help) return { kind: "help" };
  if (flags.environment !== undefined && flags.environment !== "kubernetes") {
    throw new ConfigError(
      `--environment: invalid choice "${flags.environment}" (choose from "kubernetes")`,
    );
  }
  const env = readEnv(getEnv);
  const managed = flags.managedNamespaces?.length ? [...new Set(flags.managedNamespaces)] : null;
  return {
    kind: "config",
    config: { ...env, managedNamespaces: managed, environment: "kubernetes", noOperation: flags.noOperation },
  };
}
