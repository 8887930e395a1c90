/**
 * Runs the Python driver scripts with the real `ai-dynamo-runtime` 1.6.1 from the project's
 * virtualenv. A missing venv fails loudly (scripts/setup_python_env.sh creates it).
 */
import { PY_DRIVERS, VENV_PYTHON } from "./paths.ts";

export interface DriverResult {
  code: number;
  lines: Record<string, unknown>[];
  /** Raw stdout: JSON.parse rounds 64-bit ids, so exact ids are checked on the text. */
  stdout: string;
  stderr: string;
}

export async function assertVenv(): Promise<void> {
  try {
    await Deno.stat(VENV_PYTHON);
  } catch {
    throw new Error(
      `${VENV_PYTHON} is missing: run scripts/setup_python_env.sh (installs ai-dynamo-runtime 1.6.1)`,
    );
  }
}

/** Runs `tests/interop/py/<script>` and parses its JSON-line stdout. Killed after `timeoutMs`. */
export async function runDriver(
  script: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<DriverResult> {
  await assertVenv();
  const child = new Deno.Command(VENV_PYTHON, {
    args: [`${PY_DRIVERS}/${script}`, ...args],
    env: { DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const stdout = new TextDecoder().decode(out.stdout);
  const lines = stdout.split("\n").filter((l) => l.trim().startsWith("{")).map((l) => JSON.parse(l));
  return { code: out.code, lines, stdout, stderr: new TextDecoder().decode(out.stderr) };
}
