/** What the bench reads from /proc: memory and CPU of a server, the machine line. Private to bench/. */
import { JsonLines } from "./_json_lines.ts";
import { median } from "./_util.ts";
import { SERVICE_V8_FLAGS } from "../tests/support/service.ts";

/** Deno needs --allow-all to read /proc/<pid>/*, so the files are read by `cat`. */
export async function readProc(path: string): Promise<string> {
  const out = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" }).output();
  if (!out.success) throw new Error(`cannot read ${path}`);
  return new TextDecoder().decode(out.stdout);
}

export interface ProcMemory {
  rssKb: number;
  hwmKb: number;
}

export async function procStatus(pid: number): Promise<ProcMemory> {
  const text = await readProc(`/proc/${pid}/status`);
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return { rssKb: kb("VmRSS"), hwmKb: kb("VmHWM") };
}

/** utime + stime of a process in ms (CLK_TCK = 100 on Linux). */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await readProc(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export async function machine(): Promise<string> {
  const cpuinfo = await readProc("/proc/cpuinfo");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "?";
  const mem = await readProc("/proc/meminfo");
  const memGiB = Number(/^MemTotal:\s+(\d+)/m.exec(mem)?.[1] ?? 0) / 1024 / 1024;
  const kernel = (await readProc("/proc/sys/kernel/osrelease")).trim();
  return `nproc ${navigator.hardwareConcurrency}, CPU "${model}", ${memGiB.toFixed(1)} GiB RAM, ` +
    `Linux ${kernel}, Deno ${Deno.version.deno}`;
}

/**
 * The memory floor: the median of `samples` empty Deno processes (the same binary and V8 flags as
 * `deno task start`, a timer keeping each alive), each read once its RSS has stopped moving.
 * One process is not enough: with the same binary, flags and env, processes land in two modes
 * ~3.5 MiB apart (more or fewer of the binary's code pages resident; cause not found;
 * docs/benchmarks.md, "What the growth under load is").
 */
export async function emptyDenoRssKb(samples = 5): Promise<{ medianKb: number; samplesKb: number[] }> {
  const samplesKb: number[] = [];
  for (let i = 0; i < samples; i++) samplesKb.push(await oneEmptyDenoRssKb());
  return { medianKb: median(samplesKb), samplesKb };
}

async function oneEmptyDenoRssKb(): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `--v8-flags=${SERVICE_V8_FLAGS}`,
      "setInterval(() => {}, 1000); console.log(JSON.stringify({ up: true }));",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = new JsonLines(child.stdout);
  try {
    await lines.next("up", 30_000);
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
    await lines.closed;
  }
}
