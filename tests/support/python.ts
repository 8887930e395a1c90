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
  /** Written to the driver's stdin, which is then closed (none: no stdin). */
  input?: string,
): Promise<DriverResult> {
  await assertVenv();
  const child = new Deno.Command(VENV_PYTHON, {
    args: [`${PY_DRIVERS}/${script}`, ...args],
    env: { DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1", ...env },
    stdin: input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  }
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

export interface RunningDriver {
  /** Resolves with the first stdout JSON line that matches; rejects on exit or after `timeoutMs`. */
  waitForLine(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** SIGTERM, then SIGKILL if still running after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number>;
}

/** Starts a long-running driver (e.g. `echo_server.py`, a real 1.6.1 `serve_endpoint`). */
export async function spawnDriver(
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<RunningDriver> {
  await assertVenv();
  const child = new Deno.Command(VENV_PYTHON, {
    args: [`${PY_DRIVERS}/${script}`, ...args],
    env: { DYN_TCP_RPC_HOST: "127.0.0.1", DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  const waiters: {
    match: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }[] = [];
  const reading = (async () => {
    let buffered = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const text = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!text.startsWith("{")) continue;
        const line = JSON.parse(text);
        lines.push(line);
        for (const w of [...waiters]) {
          if (w.match(line)) waiters.splice(waiters.indexOf(w), 1) && w.resolve(line);
        }
      }
    }
  })();
  const status = child.status.then(async (s) => (await reading, s));
  return {
    waitForLine(match, timeoutMs = 30_000) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${script}: no such line within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiters.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
        status.then((s) => {
          clearTimeout(timer);
          reject(new Error(`${script} exited (${s.code}) before the expected line`));
        });
      });
    },
    async stop(graceMs = 5_000) {
      try {
        child.kill("SIGTERM");
      } catch { /* exited */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
      }, graceMs);
      const s = await status;
      clearTimeout(timer);
      return s.code;
    },
  };
}

/** What tests/interop/py/planner_client.py prints for one `set_component_replicas` call. */
export interface ConnectorOutcome {
  request: Record<string, unknown> | null;
  response: { status: string; message: string; current_replicas: Record<string, number> } | null;
  raised: { exception: string; message: string } | null;
}

export interface ConnectorCall {
  /** The Global Planner's DYN_NAMESPACE. */
  gpNamespace: string;
  /** The planner's own Dynamo namespace (what caller binding authorizes). */
  caller: string;
  dgd: string;
  k8sNamespace: string;
  prefill?: number;
  decode?: number;
}

/**
 * One non-blocking `GlobalPlannerConnector.set_component_replicas` of upstream's planner
 * (ai-dynamo 1.6.1) in a process of its own; a driver that fails or prints anything but one
 * outcome line fails the test.
 */
export async function callConnector(
  env: Record<string, string>,
  call: ConnectorCall,
): Promise<ConnectorOutcome> {
  const argv = ["--via", "connector", "--gp-namespace", call.gpNamespace, "--caller-namespace", call.caller];
  argv.push("--dgd", call.dgd, "--k8s-namespace", call.k8sNamespace, "--timeout", "30");
  if (call.prefill !== undefined) argv.push("--prefill", String(call.prefill));
  if (call.decode !== undefined) argv.push("--decode", String(call.decode));
  const result = await runDriver("planner_client.py", argv, env, 45_000);
  if (result.code !== 0 || result.lines.length !== 1) {
    throw new Error(
      `planner_client.py exited ${result.code} with ${result.lines.length} outcome lines: ${result.stdout}\n` +
        result.stderr.slice(-2000),
    );
  }
  return result.lines[0] as unknown as ConnectorOutcome;
}
