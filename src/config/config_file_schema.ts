/**
 * What a `--config` file may hold. zod is imported here only, and this module only by
 * `loadConfigParsers()`: a start without `--config` does not load it.
 */
import { z } from "zod";
import { ConfigError } from "../errors.ts";

const minusOneOrMore = (key: string) =>
  z.number({ error: `${key} must be an integer` }).int(`${key} must be an integer`).min(
    -1,
    `${key} must be >= -1`,
  );

/** A Go duration text or a number of seconds (checked further with the flags). */
const leaderDuration = (key: string) =>
  z.union([z.string(), z.number()], { error: `${key} must be a duration such as "15s" or seconds` });

export const FileConfigSchema = z.strictObject({
  managed_namespaces: z.array(z.string().min(1, "managed_namespaces entries must not be empty")).nullable()
    .optional(),
  environment: z.literal("kubernetes", { error: 'environment must be "kubernetes"' }).optional(),
  no_operation: z.boolean({ error: "no_operation must be true or false" }).optional(),
  max_total_gpus: minusOneOrMore("max_total_gpus").optional(),
  min_total_gpus: minusOneOrMore("min_total_gpus").optional(),
  intent_cache_ttl_seconds: z.number({ error: "intent_cache_ttl_seconds must be a number" })
    .positive("intent_cache_ttl_seconds must be > 0").optional(),
  caller_binding: z.string({ error: "caller_binding must be a string" }).optional(),
  caller_map: z.record(
    z.string(),
    z.array(z.string(), { error: 'caller_map values must be lists of "namespace/dgd"' }),
    { error: 'caller_map must map callers to lists of "namespace/dgd"' },
  ).optional(),
  managed_k8s_namespaces: z.array(z.string().min(1, "managed_k8s_namespaces entries must not be empty"))
    .nullable().optional(),
  reject_stale: z.boolean({ error: "reject_stale must be true or false" }).optional(),
  dry_run: z.boolean({ error: "dry_run must be true or false" }).optional(),
  record_events: z.boolean({ error: "record_events must be true or false" }).optional(),
  leader_elect: z.boolean({ error: "leader_elect must be true or false" }).optional(),
  leader_elect_lease_duration: leaderDuration("leader_elect_lease_duration").optional(),
  leader_elect_renew_deadline: leaderDuration("leader_elect_renew_deadline").optional(),
  leader_elect_retry_period: leaderDuration("leader_elect_retry_period").optional(),
  leader_elect_resource_name: z.string({ error: "leader_elect_resource_name must be a string" }).optional(),
}, {
  error: (issue) =>
    issue.code === "unrecognized_keys" ? `unknown key(s): ${issue.keys.join(", ")}` : undefined,
});
export type FileConfig = z.infer<typeof FileConfigSchema>;

export type FileConfigParser = (raw: unknown) => FileConfig;

/** Unknown keys are refused (`extra="forbid"` upstream); every problem is named. */
export function parseFileConfig(raw: unknown): FileConfig {
  const parsed = FileConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(`--config: ${parsed.error.issues.map((i) => i.message).join("; ")}`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}
