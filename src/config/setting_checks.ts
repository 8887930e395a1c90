/**
 * Checks of settings given as text (environment variables, flag values), written by hand rather
 * than with zod: zod costs ~10 MiB of resident memory for as long as the process lives
 * (docs/benchmarks.md, "Memory floor"), and these run once at start. Each check records its
 * message in `Issues` and the caller reports them all at once, in the order the settings are
 * checked, `NAME: message` joined by "; " (the texts are those the zod schemas gave, which
 * tests/unit/config_test.ts pins).
 */
import { ConfigError } from "../errors.ts";

/** Problems found so far, each `NAME: message`. */
export class Issues {
  readonly #messages: string[] = [];

  add(name: string, message: string): void {
    this.#messages.push(`${name}: ${message}`);
  }

  /** Throws every recorded problem as one `ConfigError`. */
  throwIfAny(): void {
    if (this.#messages.length > 0) throw new ConfigError(this.#messages.join("; "));
  }
}

/** A check that failed records its message and yields this; the caller throws before using it. */
const FAILED = undefined as never;

/** `[min, max]` integer written in decimal digits (surrounding white space allowed). */
export function intIn(
  issues: Issues,
  name: string,
  raw: string | undefined,
  min: number,
  max: number,
): number | undefined {
  if (raw === undefined) return undefined;
  const text = raw.trim();
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) {
    issues.add(name, `${name} must be an integer between ${min} and ${max}`);
    return FAILED;
  }
  return n;
}

/** One of `choices` after trimming and lower-casing; `refusal` words the error. */
export function choice<T extends string>(
  issues: Issues,
  name: string,
  raw: string | undefined,
  fallback: T,
  choices: readonly T[],
  refusal: (value: string) => string,
): T {
  if (raw === undefined) return fallback;
  const value = raw.trim().toLowerCase();
  if ((choices as readonly string[]).includes(value)) return value as T;
  issues.add(name, refusal(value));
  return FAILED;
}

/** A comma list of absolute http(s) URLs, each trimmed; empty entries are dropped. */
export function httpUrls(issues: Issues, name: string, raw: string, message: string): string[] {
  const urls = raw.split(",").map((e) => e.trim()).filter(Boolean);
  if (urls.length === 0) issues.add(name, `${name} must name at least one endpoint`);
  let ok = true;
  for (const url of urls) {
    // `http:host` and `https:/x` parse as URLs; only the `scheme://` form is taken.
    if (!/^https?:\/\//i.test(url) || !URL.canParse(url)) {
      issues.add(name, message);
      ok = false;
    }
  }
  // The URL parser drops tabs and line feeds inside a URL; the value keeps what it parsed.
  return ok ? urls.map((url) => url.replace(/[\t\n\r]/g, "")) : FAILED;
}
