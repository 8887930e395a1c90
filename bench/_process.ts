/**
 * What a phase reads of the service process: CPU time and RSS from /proc, counters and
 * histograms from its /metrics. Private to bench/.
 */

/** Deno needs --allow-all to read /proc/<pid>/*, so the files are read by `cat`. */
export async function readProc(path: string): Promise<string> {
  const out = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" }).output();
  if (!out.success) throw new Error(`cannot read ${path}`);
  return new TextDecoder().decode(out.stdout);
}

/** utime + stime of a process so far (seconds; clock ticks at the usual 100 Hz). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readProc(`/proc/${pid}/stat`);
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident set size (MiB). */
export async function rssMiB(pid: number): Promise<number> {
  const status = await readProc(`/proc/${pid}/status`);
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!kb) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb[1]) / 1024;
}

/** Cumulative bucket counts by upper bound (`le`), plus sum and count. */
export interface Histogram {
  buckets: [number, number][];
  sum: number;
  count: number;
}

export interface Scrape {
  /** The first sample of an unlabelled (or any-labelled) counter; throws when absent. */
  counter(name: string): number;
  /** A histogram's series (`labels` as rendered, e.g. `span="turn"`); all zero without a sample yet. */
  histogram(name: string, labels?: string): Histogram;
}

export async function scrape(port: number): Promise<Scrape> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return {
    counter(name) {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, "m").exec(text);
      if (!m) throw new Error(`no ${name} in /metrics`);
      return Number(m[1]);
    },
    histogram(name, labels) {
      const buckets: [number, number][] = [];
      const lead = labels ? `${labels},` : "";
      for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{${lead}le="([^"]+)"\\}\\s+(\\S+)`, "gm"))) {
        buckets.push([m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2])]);
      }
      const series = labels ? `\\{${labels}\\}` : "";
      const one = (suffix: string) =>
        Number(new RegExp(`^${name}_${suffix}${series}\\s+(\\S+)`, "m").exec(text)?.[1] ?? 0);
      return { buckets, sum: one("sum"), count: one("count") };
    },
  };
}

/** What was observed between two scrapes. */
export function histogramDelta(before: Histogram, after: Histogram): Histogram {
  const was = new Map(before.buckets);
  return {
    buckets: after.buckets.map(([le, n]) => [le, n - (was.get(le) ?? 0)]),
    sum: after.sum - before.sum,
    count: after.count - before.count,
  };
}

/** The upper bound of the bucket holding quantile `q`: the quantile is at most this. */
export function quantileBound(h: Histogram, q: number): number {
  if (h.count === 0) return NaN;
  const rank = Math.ceil(q * h.count);
  return h.buckets.find(([, n]) => n >= rank)?.[0] ?? NaN;
}
