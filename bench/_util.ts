/** Small helpers every bench script uses: paths, children, statistics, number formatting. Private to bench/. */

export const ROOT: string = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
export const PYTHON = `${ROOT}/.cache/venv/bin/python`;

/** Wall-clock milliseconds with sub-ms resolution, comparable to a Python driver's `time.time()`. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
export async function stopChild(child: Deno.ChildProcess, graceMs = 15_000): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* exited */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, graceMs);
  await child.status;
  clearTimeout(timer);
}

/** Copies a child's stream into a file until it ends (server logs, kept with --json). */
export async function drain(stream: ReadableStream<Uint8Array>, path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  await stream.pipeTo(file.writable).catch(() => {});
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
}

/** Nearest-rank percentile, the same rule as the Python drivers (`round(p/100 · (n−1))`). */
export function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.round((p / 100) * (s.length - 1)))] : NaN;
}

export function fmt(x: number | undefined, digits = 2): string {
  if (x === undefined || !Number.isFinite(x)) return "—";
  return x >= 100 ? x.toFixed(0) : x.toFixed(digits);
}

/** Exits with a pointer to the setup script when the Python side of a bench is not installed. */
export async function requireFiles(who: string, paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    try {
      await Deno.stat(path);
    } catch {
      console.error(`${who}: ${path} is missing (run scripts/setup_python_env.sh)`);
      Deno.exit(1);
    }
  }
}

/** `--smoke` or BENCH_SMOKE=1: tiny counts that prove the harness works (CI). */
export function isSmoke(flag: boolean | undefined): boolean {
  return Boolean(flag) || Deno.env.get("BENCH_SMOKE") === "1";
}
