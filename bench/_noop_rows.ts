/** A no-op cell's figures as rows of the one table, with the targets. Private to bench/. */
import type { Json } from "./_json_lines.ts";
import type { Key } from "./_noop_targets.ts";
import type { ProcMemory } from "./_proc.ts";
import type { BenchRow, RowTarget } from "./_rows.ts";
import { median } from "./_util.ts";

export interface TargetResult {
  startupMs: number[];
  phases: Json[];
  rss: Partial<Record<"idle" | "at2k" | "at10k" | "at20k", ProcMemory>>;
  cpuMsPer1k?: number;
  exe: string;
  /** Set when the target could not run in this cell: why. */
  unavailable?: string;
}

const MiB = (m: ProcMemory | undefined): number => (m ? m.rssKb / 1024 : NaN);

/**
 * Rows of one cell. The full set adds 64 callers, the soak and the RSS rows (whose limit is an
 * empty Deno process, `emptyKb`); a missing target leaves its column empty with the reason.
 */
export function cellRows(
  phase: string,
  r: Record<Key, TargetResult>,
  full: boolean,
  emptyKb: number | undefined,
  smoke: boolean,
): BenchRow[] {
  const ph = (k: Key, i: number, f: string) => r[k].unavailable ? NaN : Number(r[k].phases[i]?.[f] ?? NaN);
  const notes = (["peer", "echo", "ours"] as Key[]).filter((k) => r[k].unavailable)
    .map((k) => `${k === "peer" ? "upstream" : k} not available: ${r[k].unavailable}`).join("; ");
  const extra = notes ? { note: notes } : {};
  const vs = (
    metric: string,
    unit: string,
    get: (k: Key) => number,
    target?: RowTarget,
  ): BenchRow => ({
    phase,
    metric,
    unit,
    ours: get("ours"),
    ...(r.peer.unavailable ? {} : { upstream: get("peer") }),
    ...(r.echo.unavailable ? {} : { limit: get("echo"), limitName: "echo" }),
    ...(target ? { target } : {}),
    ...extra,
  });
  const rss = (metric: string, get: (k: Key) => number, target?: RowTarget): BenchRow => ({
    ...vs(metric, "MiB", get, target),
    limit: emptyKb === undefined ? undefined : emptyKb / 1024,
    limitName: "empty Deno",
  });
  const failed = (k: Key) =>
    r[k].unavailable ? NaN : r[k].phases.reduce((s, p) => s + Number(p.failed) + Number(p.lost), 0);
  const answered = (k: Key) => r[k].unavailable ? NaN : r[k].phases.reduce((s, p) => s + Number(p.ok), 0);
  const c16 = 1;
  const rows: BenchRow[] = [
    vs("scale_request p50, 1 caller", "ms", (k) => ph(k, 0, "p50_ms"), { of: "limit", max: 1.3 }),
    vs("scale_request p50, 1 caller (to upstream)", "ms", (k) => ph(k, 0, "p50_ms"), {
      of: "upstream",
      max: 0.2,
    }),
    vs("scale_request p99, 1 caller", "ms", (k) => ph(k, 0, "p99_ms")),
    vs("throughput, 16 callers", "req/s", (k) => ph(k, c16, "rps")),
    vs("p99, 16 callers", "ms", (k) => ph(k, c16, "p99_ms")),
  ];
  if (full) {
    rows.push(
      vs("throughput, 64 callers", "req/s", (k) => ph(k, 2, "rps"), { of: "upstream", min: 5 }),
      vs("p99, 64 callers", "ms", (k) => ph(k, 2, "p99_ms")),
    );
  }
  rows.push(
    vs(
      `server CPU per 1,000 requests, 16 callers${full ? " (soak)" : ""}`,
      "ms",
      (k) => r[k].unavailable ? NaN : r[k].cpuMsPer1k ?? NaN,
      { of: "upstream", max: 0.25 },
    ),
    vs("requests answered (all phases)", "", answered),
    vs("failed + lost (all phases)", "", failed, { of: "value", max: 0 }),
    vs(
      `spawn → health AND scale_request answered (median of ${r.ours.startupMs.length})`,
      "ms",
      (k) => r[k].unavailable ? NaN : median(r[k].startupMs),
      full ? { of: "upstream", max: 0.25 } : undefined,
    ),
  );
  if (!full) return rows;
  const at = (when: "idle" | "at2k" | "at10k" | "at20k") => (k: Key) =>
    r[k].unavailable ? NaN : MiB(r[k].rss[when]);
  const steady = at("at10k");
  const growth = (MiB(r.ours.rss.at20k) - MiB(r.ours.rss.at10k)) / MiB(r.ours.rss.at10k) * 100;
  rows.push(
    rss("RSS idle after start", at("idle")),
    rss(`RSS after ${smoke ? "1 caller" : "2,000 requests"}`, at("at2k")),
    rss(`steady RSS, after ${smoke ? "64 callers" : "10,000 requests"}`, steady, { of: "limit", max: 1.5 }),
    rss(`steady RSS, after ${smoke ? "64 callers" : "10,000 requests"} (to upstream)`, steady, {
      of: "upstream",
      max: 0.25,
    }),
    rss(`RSS after ${smoke ? "soak" : "20,000 requests"}`, at("at20k")),
    rss("peak RSS (VmHWM)", (k) => r[k].unavailable ? NaN : (r[k].rss.at20k?.hwmKb ?? NaN) / 1024),
    {
      phase,
      metric: "ours RSS growth over the soak (10k → 20k)",
      unit: "%",
      ours: growth,
      target: { of: "value", max: 2 },
    },
  );
  return rows;
}
