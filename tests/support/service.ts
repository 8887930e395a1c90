/**
 * Runs the Global Planner the way users do: `deno run -P=service main.ts` from the project
 * root, i.e. with exactly the permission set of deno.json (the compiled binary bakes in the same).
 */
import { PROJECT_ROOT } from "./paths.ts";

/**
 * The V8 flags of `deno task start` and `deno task compile` (deno.json; a unit test keeps them
 * equal), so every service the tests and the bench start runs as deployed.
 */
export const SERVICE_V8_FLAGS = "--max-semi-space-size=1,--max-old-space-size=96";

export interface ServiceProcess {
  /** Parsed JSON log lines seen so far (non-JSON stderr lines are kept as `{raw}`). */
  logs: Record<string, unknown>[];
  /** The "Global Planner ready" log line. */
  ready: Record<string, unknown>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** Resolves when a log line matches. */
  waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  status: Promise<Deno.CommandStatus>;
  /** The service's own process id (for /proc/<pid>/fd and /proc/<pid>/status). */
  pid: number;
  /** Everything the service wrote to stdout (it logs to stderr), once it has exited. */
  stdout: Promise<string>;
}

export interface ServiceOptions {
  args?: string[];
  env: Record<string, string>;
  readyTimeoutMs?: number;
  /** A command that execs the service, e.g. `["prlimit", "--nofile=128:128", "--"]`. */
  prefix?: string[];
}

/** The env every test service gets unless overridden: loopback only, debug logs. */
export function baseEnv(): Record<string, string> {
  return { DYN_TCP_RPC_HOST: "127.0.0.1", DYN_LOG: "debug" };
}

export function serviceCommand(
  args: string[],
  env: Record<string, string>,
  prefix: string[] = [],
): Deno.Command {
  return new Deno.Command(prefix[0] ?? Deno.execPath(), {
    // As `deno task start` runs it (same permission set, same V8 flags).
    args: [
      ...(prefix.length ? [...prefix.slice(1), Deno.execPath()] : []),
      "run",
      "-P=service",
      `--v8-flags=${SERVICE_V8_FLAGS}`,
      "--quiet",
      "main.ts",
      ...args,
    ],
    cwd: PROJECT_ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

export async function startService(options: ServiceOptions): Promise<ServiceProcess> {
  const child = serviceCommand(options.args ?? [], { ...baseEnv(), ...options.env }, options.prefix).spawn();
  const logs: Record<string, unknown>[] = [];
  const waiters: {
    match: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }[] = [];
  const stdoutDone = new Response(child.stdout).text();
  const stderrDone = (async () => {
    const decoder = new TextDecoderStream();
    let buffered = "";
    for await (const chunk of child.stderr.pipeThrough(decoder)) {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const text = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let line: Record<string, unknown>;
        try {
          line = JSON.parse(text);
        } catch {
          line = { raw: text };
        }
        logs.push(line);
        for (const w of [...waiters]) {
          if (w.match(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
  })();
  const status = child.status.then(async (s) => {
    await stderrDone;
    await stdoutDone;
    return s;
  });

  const waitForLog = (match: (l: Record<string, unknown>) => boolean, timeoutMs = 15_000) => {
    const seen = logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(waiter), 1);
        reject(
          new Error(
            `no matching log line within ${timeoutMs} ms; logs:\n${
              logs.map((l) => JSON.stringify(l)).join("\n")
            }`,
          ),
        );
      }, timeoutMs);
      const waiter = { match, resolve: (l: Record<string, unknown>) => (clearTimeout(timer), resolve(l)) };
      waiters.push(waiter);
      status.then(() => {
        if (waiters.includes(waiter)) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(
            new Error(
              `service exited before the log line; logs:\n${logs.map((l) => JSON.stringify(l)).join("\n")}`,
            ),
          );
        }
      });
    });
  };

  let ready: Record<string, unknown>;
  try {
    ready = await waitForLog((l) => l.message === "Global Planner ready", options.readyTimeoutMs ?? 30_000);
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await status;
    throw error;
  }
  return {
    pid: child.pid,
    logs,
    ready,
    waitForLog,
    status,
    stdout: status.then(() => stdoutDone),
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
      return (await status).code;
    },
  };
}
