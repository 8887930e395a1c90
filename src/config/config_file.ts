/**
 * `--config <inline JSON | path>` as upstream's config era reads it: a path to an existing file
 * is loaded by suffix (`.yaml`/`.yml` YAML, `.json` JSON, other: JSON then YAML); otherwise the
 * value must be inline JSON. Unknown keys are refused (`extra="forbid"` upstream).
 */
import { ConfigError } from "../errors.ts";
import type { FileConfig, FileConfigParser } from "./config_file_schema.ts";

export type { FileConfig };

let _schema: FileConfigParser | undefined;
let _yaml: ((text: string) => unknown) | undefined;

/**
 * Loads the YAML parser and the file's schema (zod), which only a `--config` file needs: loaded
 * for every start, they would cost the service memory for nothing (zod ~10 MiB for the life of
 * the process). `loadConfig` is synchronous, so the entry point awaits this first when the
 * command line names `--config`.
 */
export async function loadConfigParsers(): Promise<void> {
  _yaml ??= (await import("yaml")).parse;
  _schema ??= (await import("./config_file_schema.ts")).parseFileConfig;
}

function parseYaml(text: string): unknown {
  if (!_yaml) throw new Error("the YAML parser was not loaded (call loadConfigParsers() first)");
  return _yaml(text);
}

export function readConfigOption(value: string): FileConfig {
  if (!_schema) throw new Error("the --config schema was not loaded (call loadConfigParsers() first)");
  return _schema(_load(value));
}

function _load(value: string): unknown {
  let text: string | undefined;
  try {
    if (Deno.statSync(value).isFile) text = Deno.readTextFileSync(value);
  } catch (error) {
    // Inline JSON is also "a path" (relative to the working directory, which the permission set
    // does not read): a value that is not readable as a file but parses as JSON is the JSON.
    const denied = error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
    if (denied && !_isJson(value)) {
      throw new ConfigError(`--config: no permission to read ${value} (see the read list in deno.json)`, {
        cause: error,
      });
    }
    // Not a file: fall through to inline JSON.
  }
  if (text === undefined) {
    try {
      return JSON.parse(value);
    } catch (error) {
      throw new ConfigError(
        `--config value is neither a valid file path nor valid JSON: ${(error as Error).message}`,
      );
    }
  }
  try {
    if (/\.ya?ml$/i.test(value)) return parseYaml(text);
    if (/\.json$/i.test(value)) return JSON.parse(text);
    try {
      return JSON.parse(text);
    } catch {
      return parseYaml(text);
    }
  } catch (error) {
    throw new ConfigError(`--config ${value}: ${(error as Error).message}`, { cause: error });
  }
}

function _isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
