/**
 * The three servers of a no-op cell — ours, upstream's Python Global Planner (ai-dynamo 1.6.1,
 * `--no-operation`) and the echo limit (the Python runtime's handler yielding its input) — and
 * their caller, tests/interop/py/load_driver.py (real ai-dynamo-runtime 1.6.1). Private to bench/.
 */
import { PYTHON, ROOT } from "./_util.ts";
import { SERVICE_V8_FLAGS } from "../tests/support/service.ts";

export const DRIVER = `${ROOT}/tests/interop/py/load_driver.py`;
export const ECHO = `${ROOT}/tests/interop/py/echo_server.py`;

export type Key = "ours" | "peer" | "echo";
export type Plane = "tcp" | "nats";
export const PLANES: readonly Plane[] = ["tcp", "nats"];

export interface Target {
  key: Key;
  label: string;
  namespace: string;
  component: string;
  scale: string;
  health: string;
  expect: "success" | "echo";
  command(env: Record<string, string>): Deno.Command;
}

const piped = { clearEnv: true, stdin: "null", stdout: "piped", stderr: "piped" } as const;

/** Per plane its own namespaces: a registration left by the other plane's run cannot answer. */
export function noopTargets(plane: Plane): Target[] {
  const ns = (key: Key) => `bench-${key}-${plane}`;
  const target = (key: Key, component: string, scaleEp: string) => ({
    key,
    namespace: ns(key),
    component,
    scale: `${ns(key)}.${component}.${scaleEp}`,
    health: `${ns(key)}.${component}.health`,
  });
  return [
    {
      ...target("echo", "Echo", "generate"),
      label: "echo limit (Python runtime, handler yields its input)",
      expect: "echo",
      command: (env) =>
        new Deno.Command(PYTHON, {
          args: [ECHO, "--endpoint", `${ns("echo")}.Echo.generate`, "--extra-endpoint"]
            .concat([`${ns("echo")}.Echo.health`, "--mode", "raw"]),
          env: { ...env, DYN_NAMESPACE: ns("echo") },
          ...piped,
        }),
    },
    {
      ...target("peer", "GlobalPlanner", "scale_request"),
      label: "upstream Python Global Planner (ai-dynamo 1.6.1)",
      expect: "success",
      command: (env) =>
        new Deno.Command(PYTHON, {
          args: ["-m", "dynamo.global_planner", "--no-operation"],
          env: { ...env, DYN_NAMESPACE: ns("peer") },
          ...piped,
        }),
    },
    {
      ...target("ours", "GlobalPlanner", "scale_request"),
      label: "ours (deno run -P=service main.ts)",
      expect: "success",
      // Deno.execPath() is the deno binary itself: the child pid is the serving process.
      command: (env) =>
        new Deno.Command(Deno.execPath(), {
          args: ["run", "-P=service", `--v8-flags=${SERVICE_V8_FLAGS}`]
            .concat(["--quiet", "main.ts", "--no-operation"]),
          cwd: ROOT,
          env: { ...env, DYN_NAMESPACE: ns("ours") },
          ...piped,
        }),
    },
  ];
}

/**
 * A 1.6.1 server subscribes to the lower-cased subject of what it advertises (docs/runtime-1.6.1.md,
 * "NATS request plane"), so a 1.6.1 caller cannot reach upstream's Global Planner or the echo
 * server at all; these mappings on the bench's nats-server route the advertised subjects to the
 * subscribed ones. Ours needs none.
 */
export function natsMappings(targets: readonly Target[]): string {
  const lines = targets.filter((t) => t.key !== "ours").map((t) => {
    const advertised = `${t.namespace}_${t.component}`;
    return `  "${advertised}.*": "${advertised.toLowerCase()}.{{wildcard(1)}}"\n`;
  });
  return `mappings = {\n${lines.join("")}}\n`;
}

export function driverCommand(
  t: Target,
  env: Record<string, string>,
  phases: string,
  warmup: number,
  step: boolean,
): Deno.Command {
  const args = [DRIVER, "--endpoint", t.scale, "--health-endpoint", t.health, "--poll-startup"]
    .concat(["--expect", t.expect, "--startup-timeout", "60", "--deadline", "900"]);
  if (phases) args.push("--phases", phases, "--warmup", String(warmup));
  if (step) args.push("--step");
  return new Deno.Command(PYTHON, {
    args,
    env: { ...env, DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1", DYN_LOG: "warn", PATH: "/usr/bin:/bin" },
    clearEnv: true,
    stdin: step ? "piped" : "null",
    stdout: "piped",
    stderr: "null",
  });
}
