/** argv + env → one validated `Config`. */
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { DEFAULT_SERVICE_ACCOUNT_DIR } from "../kube/credentials.ts";
import { type CliFlags, parseCliFlags } from "./args.ts";
import { type EnvGetter, type EnvSettings, readEnv } from "./env.ts";

export interface KubeSettings {
  serviceAccountDir: string;
  blockingTimeoutSeconds: number;
  /** `undefined` = discover the newest served version. */
  dgdApiVersion?: "v1alpha1" | "v1beta1";
}

export interface Config extends EnvSettings {
  /** `null` = implicit mode: every caller is accepted. */
  managedNamespaces: string[] | null;
  environment: "kubernetes";
  noOperation: boolean;
  kube: KubeSettings;
}

const kubeSchema = z.object({
  serviceAccountDir: z.string().min(1, "--service-account-dir must not be empty").default(
    DEFAULT_SERVICE_ACCOUNT_DIR,
  ),
  blockingTimeoutSeconds: z.coerce.number({ error: "--blocking-timeout-seconds expects a number of seconds" })
    .positive("--blocking-timeout-seconds must be greater than 0").default(1800),
  dgdApiVersion: z.enum(["v1alpha1", "v1beta1", "auto"], {
    error: (issue) =>
      `--dgd-api-version: invalid choice "${issue.input}" (choose from v1alpha1, v1beta1, auto)`,
  }).optional().transform((v) => (v === "auto" ? undefined : v)),
});

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
  const kube = kubeSchema.safeParse({
    serviceAccountDir: flags.serviceAccountDir,
    blockingTimeoutSeconds: flags.blockingTimeoutSeconds,
    dgdApiVersion: flags.dgdApiVersion,
  });
  if (!kube.success) throw new ConfigError(kube.error.issues.map((i) => i.message).join("; "));
  return {
    kind: "config",
    config: {
      ...env,
      managedNamespaces: managed,
      environment: "kubernetes",
      noOperation: flags.noOperation,
      kube: kube.data,
    },
  };
}
