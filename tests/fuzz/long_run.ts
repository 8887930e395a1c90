/**
 * `deno task fuzz [--seed N] [--frames N] [--idle N]`: the fuzz/fault scenarios at full size
 * against the service run as `deno task start` runs it (same permission set, same V8 flags),
 * with its RSS sampled throughout. Prints one JSON line per phase and a summary; exits 1 if an
 * invariant broke or the peak RSS reached 2× the idle value.
 */
import { parseArgs } from "node:util";
import { fileBackend } from "../support/backends.ts";
import { CallHomeCollector, readAcks, requestBody, requestFrame, writeAll } from "../support/fake_caller.ts";
import { startService } from "../support/service.ts";
import { ByteReader } from "../../src/runtime/codec/byte_reader.ts";
import {
  badCallHomePeers,
  badFrames,
  fdCount,
  fdsSettle,
  healthAnswered,
  idleAndSlow,
  memoryKiB,
  resetPeak,
  type Target,
} from "./scenarios.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seed: { type: "string", default: "1" },
    frames: { type: "string", default: "2000" },
    idle: { type: "string", default: "500" },
    "string-mib": { type: "string", default: "8,16,24" },
    rounds: { type: "string", default: "1" },
  },
});
const seed = Number(values.seed);
const NS = "fuzz-long";
const CALLER = "fuzz-caller";

const print = (o: Record<string, unknown>) => console.log(JSON.stringify(o));
const mib = (kib: number) => Math.round(kib / 102.4) / 10;

const backend = await fileBackend();
const service = await startService({
  args: ["--no-operation", "--managed-namespaces", CALLER],
  env: { ...backend.env, DYN_NAMESPACE: NS, DYN_LOG: "info" },
  readyTimeoutMs: 60_000,
}).catch(async (error) => {
  await backend.cleanup();
  throw error;
});
const target: Target = {
  port: Number(String(service.ready.address).split(":").at(-1)),
  prefix: `${service.ready.instance_id}/${NS}/GlobalPlanner`,
  pid: service.pid,
  maxMessageSize: 32 * 1024 * 1024,
};

/** The kernel's peak mark (VmHWM), reset at the idle baseline: no sample can miss a spike. */
const peakMiB = async () => mib((await memoryKiB(target.pid)).peak);

const problems: string[] = [];
let idleRss = 0;
try {
  for (let i = 0; i < 50; i++) {
    if (!await healthAnswered(target)) problems.push("warm-up health not answered");
  }
  await new Promise((r) => setTimeout(r, 1000)); // let the heap settle before the baseline
  idleRss = (await memoryKiB(target.pid)).rss;
  await resetPeak(target.pid);
  const fds = fdCount(target.pid);
  print({ phase: "idle", rss_mib: mib(idleRss), fds });

  let started = 0;
  // Rounds after the first show whether the peak keeps rising (a leak) or stays put.
  for (let round = 0; round < Number(values.rounds); round++) {
    started = performance.now();
    const frames = await badFrames(target, Number(values.frames), seed + round);
    problems.push(...frames.problems);
    print({
      phase: "bad_frames",
      round,
      seed,
      frames: frames.frames,
      connections: frames.connections,
      accepted: frames.accepted,
      answered: frames.answered,
      by_class: frames.byClass,
      problems: frames.problems.slice(0, 10),
      seconds: Math.round(performance.now() - started) / 1000,
      peak_rss_mib: await peakMiB(),
    });

    started = performance.now();
    const idle = await idleAndSlow(target, Number(values.idle), 20);
    if (!idle.servedWhileIdle || idle.slowAnswered !== 20) {
      problems.push(`idle/slow: ${JSON.stringify(idle)}`);
    }
    print({
      phase: "idle_and_slow",
      ...idle,
      seconds: Math.round(performance.now() - started) / 1000,
      peak_rss_mib: await peakMiB(),
    });

    const peers = await badCallHomePeers(target, 50);
    if (peers.acked !== 150) problems.push(`call-home peers: ${JSON.stringify(peers)}`);
    print({ phase: "call_home_peers", round, ...peers, peak_rss_mib: await peakMiB() });

    // Huge strings: an unauthorized caller is answered with its namespace in the message.
    const collector = CallHomeCollector.listen();
    try {
      for (const size of String(values["string-mib"]).split(",").map(Number)) {
        const before = await peakMiB();
        const id = `big-${round}-${size}`;
        const request = JSON.stringify({
          caller_namespace: "x".repeat(size << 20),
          graph_deployment_name: "d",
          k8s_namespace: "k",
          target_replicas: [],
        });
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: target.port });
        try {
          const frame = requestFrame(
            `${target.prefix}/scale_request`,
            requestBody(id, collector.address, JSON.stringify(request)),
          );
          await writeAll(conn, frame);
          const [ack] = await readAcks(new ByteReader(conn), 1);
          const answered = ack === "" ? (await collector.stream(`subject-${id}`, 60_000)).length : 0;
          if (ack !== "" && !ack.startsWith("Read error: message too large")) {
            problems.push(`big ${size}: ACK ${ack}`);
          }
          print({
            phase: "big_string",
            mib: size,
            frame_mib: mib(frame.length / 1024),
            ack,
            frames_answered: answered,
            peak_rss_mib: await peakMiB(),
            peak_before_mib: before,
          });
        } finally {
          conn.close();
        }
      }
    } finally {
      await collector.close();
    }
    print({
      phase: "round",
      round,
      rss_mib: mib((await memoryKiB(target.pid)).rss),
      fds: fdCount(target.pid),
    });
  }
  if (!await healthAnswered(target)) problems.push("health not answered after the run");
  const fdsAfter = await fdsSettle(target.pid, fds);
  if (fdsAfter > fds) problems.push(`fds: ${fds} before, ${fdsAfter} after`);
  await new Promise((r) => setTimeout(r, 5000)); // how far RSS comes back on its own
  const { rss: after, peak } = await memoryKiB(target.pid);
  const ratio = Math.round((peak / idleRss) * 100) / 100;
  if (ratio >= 2) problems.push(`peak RSS ${mib(peak)} MiB is ${ratio}× the idle ${mib(idleRss)} MiB`);
  print({
    phase: "summary",
    idle_rss_mib: mib(idleRss),
    peak_rss_mib: await peakMiB(),
    peak_over_idle: ratio,
    after_rss_mib: mib(after),
    after_over_idle: Math.round((after / idleRss) * 100) / 100,
    fds_before: fds,
    fds_after: fdsAfter,
    problems,
  });
} finally {
  const code = await service.stop("SIGTERM");
  if (code !== 0) problems.push(`exit code ${code} after SIGTERM`);
  await backend.cleanup();
}
// EMFILE: the service at a low descriptor limit, more connections than it can accept, for 3 s.
// With the backoff the accept loop costs next to no CPU; without it, a core.
{
  const fdBackend = await fileBackend();
  const limited = await startService({
    args: ["--no-operation"],
    env: { ...fdBackend.env, DYN_NAMESPACE: `${NS}-fd`, DYN_LOG: "info" },
    prefix: ["/usr/bin/prlimit", "--nofile=96:96", "--"],
  });
  const conns: Deno.TcpConn[] = [];
  try {
    const port = Number(String(limited.ready.address).split(":").at(-1));
    for (let i = 0; i < 120; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    await limited.waitForLog((l) => l.message === "accept failing; backing off");
    const before = await cpuMs(limited.pid);
    await new Promise((r) => setTimeout(r, 3000)); // the episode being measured
    const used = (await cpuMs(limited.pid)) - before;
    for (const c of conns.splice(0)) c.close();
    await limited.waitForLog((l) => l.message === "accept works again");
    const episodes = limited.logs.filter((l) => l.message === "accept failing; backing off").length;
    print({
      phase: "emfile",
      held_ms: 3000,
      cpu_ms: used,
      cpu_share: Math.round((used / 3000) * 1000) / 1000,
      log_lines: episodes,
    });
    if (episodes !== 1) problems.push(`EMFILE logged ${episodes} times`);
  } finally {
    for (const c of conns) c.close();
    await limited.stop("SIGTERM");
    await fdBackend.cleanup();
  }
}

/** utime + stime of `pid` in ms (CLK_TCK 100). */
async function cpuMs(pid: number): Promise<number> {
  const out = await new Deno.Command("/bin/cat", { args: [`/proc/${pid}/stat`], stdout: "piped" }).output();
  const fields = new TextDecoder().decode(out.stdout).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

print({ phase: "done", problems });
Deno.exit(problems.length ? 1 : 0);
