/**
 * What a phase reads of the service process: CPU time and RSS from /proc, counters and
 * histograms from its /metrics. Private to bench/.
 */
import { cpuMs, procStatus } from "./_proc.ts";

/** utime + stime of a process so far (seconds). */
export async function cpuSeconds(pid: number): Promise<number> {
  return await cpuMs(pid) / 1000;
}

/** Resident set size (MiB). */
export async function rssMiB(pid: number): Promise<number> {
  const { rssKb } = await procStatus(pid);
  if (!Number.isFinite(rssKb)) throw new Error(`no VmRSS for process ${pid}`);
  return rssKb / 1024;
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
