/**
 * Side-by-side benchmark: our Global Planner vs upstream's Python Global Planner (ai-dynamo 1.6.1)
 * vs an echo endpoint on the Python runtime (the limit of the planes), all three on the same
 * discovery backend (file, one fresh DYN_FILE_KV per process start) and request plane (TCP), one
 * after the other, driven by the same caller: tests/interop/py/load_driver.py (real
 * ai-dynamo-runtime 1.6.1, C asyncio callers on one runtime, ScaleRequest.model_dump_json()).
 *
 *   npx -y deno@2.9.6 task bench            full run (≈ 2–3 min on 2 cores)
 *   npx -y deno@2.9.6 task bench --smoke    tiny counts, proves the harness works (< 60 s)
 *   (or BENCH_SMOKE=1)                      --json FILE also writes the raw figures
 *   --no-kube                               skip the Kubernetes phase (bench/kube_scale.ts: real
 *                                           kube-apiserver, non-blocking scale writing one DGD),
 *                                           which otherwise runs last, with the same --smoke/--json
 *   --no-nats                               skip the NATS phase: this script again with
 *                                           --plane nats (a private nats-server; the three targets
 *                                           and the caller on DYN_REQUEST_PLANE=nats), run after the
 *                                           Kubernetes phase, with the same --smoke/--json
 *   --plane tcp|nats                        the request plane of this run (default tcp)
 *   (with the Kubernetes phase, bench/phases/blocking.ts runs after it: blocking scales, own cluster)
 *
 * No assertion on timings: the run fails only if a process cannot be started or a target does
 * not answer at all. Failed/lost responses are counted and printed.
 */
import { parseArgs } from "node:util";
import { type NatsServer, startNats } from "../tests/support/nats.ts";
import { type Json, JsonLines as Lines } from "./_json_lines.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const PYTHON = `${ROOT}/.cache/venv/bin/python`;
const DRIVER = `${ROOT}/tests/interop/py/load_driver.py`;
const ECHO = `${ROOT}/tests/interop/py/echo_server.py`;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    smoke: { type: "boolean", default: false },
    json: { type: "string" },
    "no-kube": { type: "boolean", default: false },
    "no-nats": { type: "boolean", default: false },
    plane: { type: "string", default: "tcp" },
  },
});
if (flags.plane !== "tcp" && flags.plane !== "nats") {
  console.error(`bench: --plane must be tcp or nats, got ${flags.plane}`);
  Deno.exit(2);
}
const PLANE = flags.plane as "tcp" | "nats";
/**
 * A 1.6.1 server subscribes to the lower-cased subject of what it advertises (docs/runtime-1.6.1.md,
 * "NATS request plane"), so a 1.6.1 caller cannot reach upstream's Global Planner or the echo
 * server at all; these mappings on the bench's nats-server route the advertised subjects to the
 * subscribed ones. Ours needs none.
 */
const NATS_MAPPINGS = `mappings = {
  "bench-peer_GlobalPlanner.*": "bench-peer_globalplanner.{{wildcard(1)}}"
  "bench-echo_Echo.*": "bench-echo_echo.{{wildcard(1)}}"
}
`;
let nats: NatsServer | undefined;
const SMOKE = flags.smoke || Deno.env.get("BENCH_SMOKE") === "1";

/** Request counts. The RSS samples fall at 2,000 / 10,000 / 20,000 requests served (full run). */
const PLAN = SMOKE
  ? { startupTrials: 1, warmup: 5, lat: 20, c16: 32, c64: 64, soak: 64 }
  : { startupTrials: 3, warmup: 100, lat: 1_900, c16: 4_000, c64: 4_000, soak: 10_000 };

interface Target {
  key: "ours" | "peer" | "echo";
  label: string;
  namespace: string;
  scale: string;
  health: string;
  expect: "success" | "echo";
  command(kv: string): Deno.Command;
}

/** Read when a process is spawned: with --plane nats the server is known only then. */
const loopback = (): Record<string, string> => ({
  DYN_TCP_RPC_HOST: "127.0.0.1",
  DYN_DISCOVERY_BACKEND: "file",
  DYN_REQUEST_PLANE: PLANE,
  ...(nats ? { NATS_SERVER: nats.url } : {}),
});

const TARGETS: Target[] = [
  {
    key: "echo",
    label: "echo limit (Python runtime, handler yields its input)",
    namespace: "bench-echo",
    scale: "bench-echo.Echo.generate",
    health: "bench-echo.Echo.health",
    expect: "echo",
    command: (kv) =>
      new Deno.Command(PYTHON, {
        args: [ECHO, "--endpoint", "bench-echo.Echo.generate", "--extra-endpoint", "bench-echo.Echo.health"]
          .concat(["--mode", "raw"]),
        env: { ...loopback(), DYN_FILE_KV: kv, DYN_NAMESPACE: "bench-echo" },
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }),
  },
  {
    key: "peer",
    label: "upstream Python Global Planner (ai-dynamo 1.6.1)",
    namespace: "bench-peer",
    scale: "bench-peer.GlobalPlanner.scale_request",
    health: "bench-peer.GlobalPlanner.health",
    expect: "success",
    command: (kv) =>
      new Deno.Command(PYTHON, {
        args: ["-m", "dynamo.global_planner", "--no-operation"],
        env: { ...loopback(), DYN_FILE_KV: kv, DYN_NAMESPACE: "bench-peer" },
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }),
  },
  {
    key: "ours",
    label: "ours (deno run -P=service main.ts)",
    namespace: "bench-ours",
    scale: "bench-ours.GlobalPlanner.scale_request",
    health: "bench-ours.GlobalPlanner.health",
    expect: "success",
    // Deno.execPath() is the deno binary itself: the child pid is the serving process.
    command: (kv) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-P=service",
          "--v8-flags=--max-semi-space-size=1,--max-old-space-size=96",
          "--quiet",
          "main.ts",
          "--no-operation",
        ],
        cwd: ROOT,
        env: { ...loopback(), DYN_FILE_KV: kv, DYN_NAMESPACE: "bench-ours" },
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }),
  },
];

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Deno needs --allow-all to read /proc/<pid>/*, so the files are read by `cat`. */
async function readProc(path: string): Promise<string> {
  const out = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" }).output();
  if (!out.success) throw new Error(`cannot read ${path}`);
  return new TextDecoder().decode(out.stdout);
}

async function procStatus(pid: number): Promise<{ rssKb: number; hwmKb: number }> {
  const text = await readProc(`/proc/${pid}/status`);
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return { rssKb: kb("VmRSS"), hwmKb: kb("VmHWM") };
}

/** utime + stime of a process in ms (CLK_TCK = 100 on Linux). */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readProc(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function stopChild(child: Deno.ChildProcess, graceMs = 30_000): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* exited */ }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      resolve();
    }, graceMs);
  });
  await Promise.race([child.status.then(() => {}), killed]);
  await child.status;
  clearTimeout(timer);
}

function driverCommand(t: Target, kv: string, phases: string, step: boolean): Deno.Command {
  const args = [DRIVER, "--endpoint", t.scale, "--health-endpoint", t.health, "--poll-startup"];
  args.push("--expect", t.expect, "--startup-timeout", "60", "--deadline", "900");
  if (phases) args.push("--phases", phases, "--warmup", String(PLAN.warmup));
  if (step) args.push("--step");
  return new Deno.Command(PYTHON, {
    args,
    env: {
      ...loopback(),
      DYN_FILE_KV: kv,
      DYN_TCP_RESPONSE_STREAM_HOST: "127.0.0.1",
      DYN_LOG: "warn",
      PATH: "/usr/bin:/bin",
    },
    clearEnv: true,
    stdin: step ? "piped" : "null",
    stdout: "piped",
    stderr: "null",
  });
}

interface TargetResult {
  startupMs: number[];
  phases: Json[];
  rss: Record<string, { rssKb: number; hwmKb: number }>;
  cpuMsPer1k?: number;
  exe: string;
}

async function drain(stream: ReadableStream<Uint8Array>, path: string) {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  await stream.pipeTo(file.writable).catch(() => {});
}

async function runTarget(t: Target, scratch: string): Promise<TargetResult> {
  const result: TargetResult = { startupMs: [], phases: [], rss: {}, exe: "" };
  for (let trial = 0; trial < PLAN.startupTrials; trial++) {
    const last = trial === PLAN.startupTrials - 1;
    const kv = await Deno.makeTempDir({ dir: scratch, prefix: `kv-${t.key}-` });
    const phases = last ? `1:${PLAN.lat},16:${PLAN.c16},64:${PLAN.c64},16:${PLAN.soak}` : "";
    const driver = driverCommand(t, kv, phases, last).spawn();
    const lines = new Lines(driver.stdout);
    let server: Deno.ChildProcess | undefined;
    try {
      await lines.next("poller_ready", 60_000);
      const spawnedAt = epochMs();
      server = t.command(kv).spawn();
      drain(server.stdout, `${scratch}/${t.key}-${trial}.stdout`);
      drain(server.stderr, `${scratch}/${t.key}-${trial}.stderr`);
      const startup = (await lines.next("startup", 90_000)).startup as Json;
      result.startupMs.push(Number(startup.both_ok_epoch_ms) - spawnedAt);
      if (!last) {
        await driver.status;
        continue;
      }
      result.exe = (await readProc(`/proc/${server.pid}/cmdline`)).split("\0")[0];
      const pid = server.pid;
      result.rss.idle = await procStatus(pid);
      const writer = driver.stdin.getWriter();
      const phaseTimeout = 600_000;
      // 1 caller: warm-up + latency; the server has then answered 2,000 requests (full run).
      result.phases.push((await lines.next("phase", phaseTimeout)).phase as Json);
      result.rss.at2k = await procStatus(pid);
      await writer.write(new TextEncoder().encode("\n"));
      result.phases.push((await lines.next("phase", phaseTimeout)).phase as Json);
      await writer.write(new TextEncoder().encode("\n"));
      result.phases.push((await lines.next("phase", phaseTimeout)).phase as Json);
      result.rss.at10k = await procStatus(pid);
      const cpuBefore = await cpuMs(pid);
      await writer.write(new TextEncoder().encode("\n"));
      const soak = (await lines.next("phase", phaseTimeout)).phase as Json;
      result.phases.push(soak);
      result.cpuMsPer1k = ((await cpuMs(pid)) - cpuBefore) / (Number(soak.ok) / 1000);
      result.rss.at20k = await procStatus(pid);
      await lines.next("done", 60_000);
      await writer.close().catch(() => {});
      await driver.status;
    } finally {
      try {
        driver.kill("SIGKILL");
      } catch { /* exited */ }
      await driver.status;
      await lines.closed.catch(() => {});
      if (server) await stopChild(server);
    }
  }
  return result;
}

// ---------------------------------------------------------------- report

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

async function machine(): Promise<string> {
  const cpuinfo = await readProc("/proc/cpuinfo");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "?";
  const mem = await readProc("/proc/meminfo");
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(mem)?.[1] ?? 0);
  const kernel = (await readProc("/proc/sys/kernel/osrelease")).trim();
  return `nproc ${navigator.hardwareConcurrency}, CPU "${model}", ${
    (memKb / 1024 / 1024).toFixed(1)
  } GiB RAM, ` +
    `Linux ${kernel}, Deno ${Deno.version.deno}`;
}

function fmt(x: number | undefined, digits = 2): string {
  if (x === undefined || !Number.isFinite(x)) return "—";
  return x >= 100 ? x.toFixed(0) : x.toFixed(digits);
}

/**
 * The memory floor: an empty Deno process (the same binary and V8 flags as `deno task start`,
 * a timer keeping it alive), read as the targets are, once its RSS has stopped moving.
 */
async function emptyDenoRssKb(): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--v8-flags=--max-semi-space-size=1,--max-old-space-size=96",
      "setInterval(() => {}, 1000); console.log(JSON.stringify({ up: true }));",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    await new Lines(child.stdout).next("up", 30_000);
    // Settled = two reads 500 ms apart within 1 % (at most 20 tries).
    let last = (await procStatus(child.pid)).rssKb;
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const now = (await procStatus(child.pid)).rssKb;
      if (Math.abs(now - last) <= last * 0.01) return now;
      last = now;
    }
    return last;
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

function report(
  r: Record<Target["key"], TargetResult>,
  emptyKb: number,
): { table: string; targets: string } {
  const ph = (k: Target["key"], i: number, f: string) => Number(r[k].phases[i]?.[f]);
  const mb = (kb: number) => kb / 1024;
  type Row = [string, (k: Target["key"]) => number, number?];
  const rows: Row[] = [
    ["scale_request p50, 1 caller (ms)", (k) => ph(k, 0, "p50_ms")],
    ["scale_request p99, 1 caller (ms)", (k) => ph(k, 0, "p99_ms")],
    ["throughput, 16 callers (req/s)", (k) => ph(k, 1, "rps")],
    ["p99, 16 callers (ms)", (k) => ph(k, 1, "p99_ms")],
    ["throughput, 64 callers (req/s)", (k) => ph(k, 2, "rps")],
    ["p99, 64 callers (ms)", (k) => ph(k, 2, "p99_ms")],
    [
      "failed + lost responses (all phases)",
      (k) => r[k].phases.reduce((s, p) => s + Number(p.failed) + Number(p.lost), 0),
    ],
    ["spawn → health AND scale_request answered (ms, median)", (k) => median(r[k].startupMs)],
    ["RSS idle after start (MiB)", (k) => mb(r[k].rss.idle?.rssKb)],
    [`RSS after ${SMOKE ? "lat" : "2,000"} requests (MiB)`, (k) => mb(r[k].rss.at2k?.rssKb)],
    [`RSS after ${SMOKE ? "c64" : "10,000"} requests = steady (MiB)`, (k) => mb(r[k].rss.at10k?.rssKb)],
    [`RSS after ${SMOKE ? "soak" : "20,000"} requests (MiB)`, (k) => mb(r[k].rss.at20k?.rssKb)],
    ["peak RSS, VmHWM (MiB)", (k) => mb(r[k].rss.at20k?.hwmKb)],
    ["server CPU per 1,000 requests, 16 callers (ms)", (k) => r[k].cpuMsPer1k ?? NaN],
  ];
  let table = "| metric | ours | Python GP | echo limit | ours / Python GP | ours / echo |\n" +
    "|---|---:|---:|---:|---:|---:|\n";
  for (const [name, get] of rows) {
    const o = get("ours"), p = get("peer"), e = get("echo");
    table += `| ${name} | ${fmt(o)} | ${fmt(p)} | ${fmt(e)} | ${fmt(o / p)}× | ${fmt(o / e)}× |\n`;
  }
  table += `| RSS of an empty Deno ${Deno.version.deno} process, same V8 flags (MiB) | ${
    fmt(mb(emptyKb))
  } | — | — | — | — |\n`;
  table += `| ours steady RSS / empty Deno process | ${
    fmt(r.ours.rss.at10k?.rssKb / emptyKb)
  }× | — | — | — | — |\n`;
  table += `\nstartup samples (ms): ours ${r.ours.startupMs.map((x) => x.toFixed(0)).join(", ")}; ` +
    `Python GP ${r.peer.startupMs.map((x) => x.toFixed(0)).join(", ")}; ` +
    `echo ${r.echo.startupMs.map((x) => x.toFixed(0)).join(", ")}\n`;

  const p50 = (k: Target["key"]) => ph(k, 0, "p50_ms");
  const startup = (k: Target["key"]) => median(r[k].startupMs);
  const rss = (k: Target["key"]) => r[k].rss.at10k?.rssKb;
  const growth = (rss("ours") - r.ours.rss.at2k?.rssKb) / r.ours.rss.at2k?.rssKb;
  const growth2 = (r.ours.rss.at20k?.rssKb - rss("ours")) / rss("ours");
  const check = (ok: boolean) => ok ? "met" : "**missed**";
  const lines = [
    `| target | measured | result |`,
    `|---|---|---|`,
    `| no-op p50 ≤ 1.3× echo limit | ${fmt(p50("ours") / p50("echo"))}× | ${
      check(p50("ours") <= 1.3 * p50("echo"))
    } |`,
    `| no-op p50 ≤ 0.2× Python GP | ${fmt(p50("ours") / p50("peer"))}× | ${
      check(p50("ours") <= 0.2 * p50("peer"))
    } |`,
    `| throughput at 64 callers ≥ 5× Python GP | ${fmt(ph("ours", 2, "rps") / ph("peer", 2, "rps"))}× | ${
      check(ph("ours", 2, "rps") >= 5 * ph("peer", 2, "rps"))
    } |`,
    `| start-to-serving ≤ 0.25× Python GP | ${fmt(startup("ours") / startup("peer"))}× | ${
      check(startup("ours") <= 0.25 * startup("peer"))
    } |`,
    `| steady RSS ≤ 0.25× Python GP | ${fmt(rss("ours") / rss("peer"))}× | ${
      check(rss("ours") <= 0.25 * rss("peer"))
    } |`,
    `| steady RSS ≤ 1.5× an empty Deno process | ${fmt(rss("ours") / emptyKb)}× | ${
      check(rss("ours") <= 1.5 * emptyKb)
    } |`,
    `| RSS flat over 10,000 requests (2k→10k, and 10k→20k) | ${(growth * 100).toFixed(1)}%, ${
      (growth2 * 100).toFixed(1)
    }% | ${check(growth2 <= 0.02)} (≤ 2% growth 10k→20k at constant load) |`,
    `| failed/lost responses = 0 | ${
      ["ours", "peer", "echo"].map((k) => rows[6][1](k as Target["key"])).join(" / ")
    } | ${check(rows[6][1]("ours") === 0 && rows[6][1]("peer") === 0 && rows[6][1]("echo") === 0)} |`,
  ];
  return { table, targets: lines.join("\n") + "\n" };
}

// ---------------------------------------------------------------- main

for (const path of [PYTHON, DRIVER, ECHO]) {
  try {
    await Deno.stat(path);
  } catch {
    console.error(`bench: ${path} is missing (run scripts/setup_python_env.sh)`);
    Deno.exit(1);
  }
}

const scratch = await Deno.makeTempDir({ prefix: "gp-bench-" });
const started = Date.now();
const results = {} as Record<Target["key"], TargetResult>;
try {
  if (PLANE === "nats") nats = await startNats({ config: NATS_MAPPINGS });
  for (const t of TARGETS) {
    console.error(`bench: ${t.label} ...`);
    results[t.key] = await runTarget(t, scratch);
    console.error(
      `bench:   startup ${results[t.key].startupMs.map((x) => x.toFixed(0)).join("/")} ms; ` +
        results[t.key].phases.map((p) => `c=${p.c} ${p.rps} req/s p50 ${p.p50_ms} p99 ${p.p99_ms}`).join(
          "; ",
        ),
    );
  }
} finally {
  await nats?.stop();
  if (!flags.json) await Deno.remove(scratch, { recursive: true }).catch(() => {});
}
const emptyKb = await emptyDenoRssKb();
const { table, targets } = report(results, emptyKb);
console.log(
  `${PLANE === "nats" ? "## NATS request plane: " : "# "}Global Planner side-by-side benchmark${
    SMOKE ? " (SMOKE: tiny counts, figures meaningless)" : ""
  }\n`,
);
console.log(`machine: ${await machine()}`);
console.log(
  `discovery: file (fresh DYN_FILE_KV per start), request plane: ${PLANE}, loopback` +
    (PLANE === "nats"
      ? "; Python GP and echo reachable only through a nats-server subject mapping (1.6.1 subscribes lower-cased)"
      : ""),
);
console.log(
  `plan: warm-up ${PLAN.warmup}, 1 caller ${PLAN.lat}, 16 callers ${PLAN.c16}, 64 callers ${PLAN.c64}, ` +
    `soak 16 callers ${PLAN.soak}; ${PLAN.startupTrials} start(s) per target; ` +
    `ours exe ${results.ours.exe}; wall ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
);
console.log(table);
console.log(targets);
if (flags.json) {
  await Deno.writeTextFile(flags.json, JSON.stringify({ plan: PLAN, smoke: SMOKE, results }, null, 2));
  console.error(`bench: raw figures in ${flags.json}; server logs in ${scratch}`);
}

// The Kubernetes rows (real test cluster, ours vs upstream without --no-operation): a separate
// script, run in its own process after the no-op phases.
if (!flags["no-kube"] && PLANE === "tcp") {
  console.error("bench: Kubernetes phase (bench/kube_scale.ts) ...");
  const args = ["run", "-P=test", "--quiet", `${ROOT}/bench/kube_scale.ts`];
  if (SMOKE) args.push("--smoke");
  if (flags.json) args.push("--json", flags.json.replace(/(\.json)?$/, ".kube.json"));
  const kube = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!kube.success) {
    console.error(`bench: the Kubernetes phase failed (exit ${kube.code})`);
    Deno.exit(1);
  }
}

// The blocking rows (bench/phases/blocking.ts: its own cluster, ours only for now).
if (!flags["no-kube"] && PLANE === "tcp") {
  console.error("bench: blocking phase (bench/phases/blocking.ts) ...");
  const args = ["run", "-P=test", "--quiet", `${ROOT}/bench/phases/blocking.ts`];
  if (SMOKE) args.push("--smoke");
  if (flags.json) args.push("--json", flags.json.replace(/(\.json)?$/, ".blocking.json"));
  const run = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!run.success) {
    console.error(`bench: the blocking phase failed (exit ${run.code})`);
    Deno.exit(1);
  }
}

// The same three targets and caller on the NATS request plane, in a process of its own.
if (!flags["no-nats"] && PLANE === "tcp") {
  console.error("bench: NATS phase (--plane nats) ...");
  const args = ["run", "-P=test", "--quiet", `${ROOT}/bench/side_by_side.ts`, "--plane", "nats", "--no-kube"];
  if (SMOKE) args.push("--smoke");
  if (flags.json) args.push("--json", flags.json.replace(/(\.json)?$/, ".nats.json"));
  const run = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!run.success) {
    console.error(`bench: the NATS phase failed (exit ${run.code})`);
    Deno.exit(1);
  }
}
