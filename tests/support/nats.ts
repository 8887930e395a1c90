/**
 * A private nats-server (Debian's `nats-server`) on free loopback ports, with its monitoring
 * port (subscriptions are read from `/subsz`). A missing binary fails the suite loudly:
 * `scripts/ensure_deps.sh` installs it. `restart` brings it back on the same port (fault tests).
 */
import { freePort, waitFor } from "./ports.ts";

export const NATS_BIN = "/usr/sbin/nats-server";

export interface NatsServerOptions {
  /** Extra command-line arguments (e.g. `--user u --pass p`, `--max_payload 4096`). */
  args?: string[];
  /** A configuration file's text (accounts, subject mappings), written to the temp dir. */
  config?: string;
}

export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** The server's subscriptions (`/subsz?subs=1`): subject and queue group. */
  subscriptions(): Promise<{ subject: string; qgroup?: string }[]>;
  /** Stops the server (SIGTERM) and waits for it; the port is kept for `start`. */
  kill(): Promise<void>;
  /** Starts it again on the same ports after `kill`. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startNats(options: NatsServerOptions = {}): Promise<NatsServer> {
  try {
    await Deno.stat(NATS_BIN);
  } catch {
    throw new Error(`${NATS_BIN} not found: run scripts/ensure_deps.sh (installs Debian nats-server)`);
  }
  const dir = await Deno.makeTempDir({ prefix: "gp-nats-" });
  const port = freePort();
  const monitor = freePort();
  const configArgs: string[] = [];
  if (options.config !== undefined) {
    await Deno.writeTextFile(`${dir}/nats.conf`, options.config);
    configArgs.push("-c", `${dir}/nats.conf`);
  }
  const args = [
    "-a",
    "127.0.0.1",
    "-p",
    String(port),
    "-m",
    String(monitor),
    ...configArgs,
    ...(options.args ?? []),
  ];
  let child: Deno.ChildProcess | undefined;
  let stderr: Promise<string> = Promise.resolve("");

  const healthy = async () => {
    try {
      const response = await fetch(`http://127.0.0.1:${monitor}/healthz`);
      await response.body?.cancel();
      return response.ok;
    } catch {
      return false;
    }
  };
  const start = async () => {
    child = new Deno.Command(NATS_BIN, { args, stdout: "null", stderr: "piped", stdin: "null" }).spawn();
    stderr = new Response(child.stderr).text();
    try {
      await waitFor(healthy, "nats-server /healthz", 15_000);
    } catch (error) {
      await kill();
      throw new Error(`nats-server did not start: ${(error as Error).message}\n${await stderr}`);
    }
  };
  const kill = async () => {
    if (!child) return;
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await stderr;
    child = undefined;
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    async subscriptions() {
      const response = await fetch(`http://127.0.0.1:${monitor}/subsz?subs=1`);
      const body = await response.json() as { subscriptions_list?: { subject: string; qgroup?: string }[] };
      return (body.subscriptions_list ?? []).map(({ subject, qgroup }) => ({ subject, qgroup }));
    },
    kill,
    start,
    async stop() {
      await kill();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
