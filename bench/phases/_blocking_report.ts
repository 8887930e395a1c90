/** The blocking phase's figures: its Markdown section and its rows. Private to bench/. */
import type { BenchRow } from "../_rows.ts";
import type { PatchLimit } from "./_blocking_limit.ts";

export const PHASE = "blocking · kubernetes connector";

export interface Plan {
  /** Warm-up: one round of `width` at once, then one of one DGD (not measured). */
  warmup: boolean;
  /** Rounds of one DGD blocking alone (each of the first `single` DGDs in turn). */
  single: number;
  /** Rounds of `width` DGDs at once. */
  batches: number;
  width: number;
}

export interface Answer {
  dgd: string;
  /** End to end, as the caller measured it. */
  ms: number;
  /** The caller saw the answer, after the Ready write was acknowledged. */
  afterReadyMs: number;
  /** A raw watch in a process of its own (./_ready_watcher.ts) saw that Ready, after it was acknowledged. */
  rawAfterReadyMs: number;
  /** Ours only: we logged the answer as it left (ms resolution), after the Ready write was acknowledged. */
  leftAfterReadyMs?: number;
  /** Ours only: our watch showed Ready (our log), after the Ready write was acknowledged. */
  watchAfterReadyMs?: number;
  /** Ours only: we logged the answer, after our watch showed Ready. */
  answerAfterWatchMs?: number;
  /** Ours only: the caller saw the answer, after we logged it. */
  callerAfterAnswerMs?: number;
  /** The caller sent the request → the operator's watch showed the written generation. */
  sentToSeenMs: number;
  status: string;
}

export interface Measured {
  plan: Plan;
  single: Answer[];
  batches: Answer[][];
  error?: string;
}

export function pct(xs: number[], p: number): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.round((p / 100) * (s.length - 1)))] : NaN;
}

function fmt(x: number): string {
  return !Number.isFinite(x) ? "—" : Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2);
}

function max(xs: number[]): number {
  const f = xs.filter(Number.isFinite);
  return f.length ? Math.max(...f) : NaN;
}

interface Figures {
  /** The caller has the answer, after Ready. */
  after: number[];
  /** The answer leaves (ours only: our log), after Ready. */
  left: number[];
  /** The raw watch of its own process sees Ready, same rounds. */
  raw: number[];
  unmatched: number;
  singleP50: number;
  slowestSingle: number;
  batchWall: number;
  ok: number;
  total: number;
}

function figures(m: Measured): Figures {
  const all = [...m.single, ...m.batches.flat()];
  const after = all.map((a) => a.afterReadyMs).filter(Number.isFinite);
  return {
    after,
    left: all.map((a) => a.leftAfterReadyMs ?? NaN).filter(Number.isFinite),
    raw: all.map((a) => a.rawAfterReadyMs).filter(Number.isFinite),
    unmatched: all.length - after.length,
    singleP50: pct(m.single.map((a) => a.ms), 50),
    slowestSingle: max(m.single.map((a) => a.ms)),
    batchWall: pct(m.batches.map((b) => max(b.map((a) => a.ms))), 50),
    ok: all.filter((a) => a.status === "success").length,
    total: all.length,
  };
}

function finite(x: number): number | undefined {
  return Number.isFinite(x) ? x : undefined;
}

function spread(xs: (number | undefined)[]): string {
  const f = xs.filter((x): x is number => x !== undefined && Number.isFinite(x));
  return `${fmt(pct(f, 50))} / ${fmt(pct(f, 99))} / ${fmt(max(f))}`;
}

export interface Report {
  markdown: string;
  rows: BenchRow[];
}

export function blockingReport(
  ours: Measured,
  upstream: Measured,
  limit: PatchLimit,
  context: { smoke: boolean; dgds: number; delayMs: number; wallMs: number },
): Report {
  const o = figures(ours);
  const u = figures(upstream);
  const oursAll = [...ours.single, ...ours.batches.flat()];
  const w = ours.plan.width, uw = upstream.plan.width;
  const cell = (a: number, b: number, unit = ""): string =>
    `| ${fmt(a)}${Number.isFinite(a) ? unit : ""} | ${fmt(b)}${Number.isFinite(b) ? unit : ""} | ${
      Number.isFinite(a / b) ? `${fmt(a / b)}×` : "—"
    } |`;
  const patchRatio = pct(limit.batches, 50) / max(limit.single);
  const limitRatio = pct(limit.blockBatches, 50) / max(limit.blockSingle);
  const oRatio = o.batchWall / o.slowestSingle, uRatio = u.batchWall / u.slowestSingle;
  let md = `## Kubernetes: blocking scale${
    context.smoke ? " (SMOKE: tiny counts, figures meaningless)" : ""
  }\n\n`;
  md += `${context.dgds} v1beta1 DGDs; the bench's operator (a watch, one reconcile per DGD) writes Ready ` +
    `${context.delayMs} ms after it sees a new generation; ours: ${ours.plan.single} single rounds, ` +
    `${ours.plan.batches} rounds of ${w} at once (after a warm-up of all ${w}); upstream: ` +
    `${upstream.plan.single} single, ${upstream.plan.batches} of ${uw} at once (it sleeps 10 s between ` +
    `readiness reads, one lock); wall ${(context.wallMs / 1000).toFixed(0)} s\n\n`;
  if (upstream.error) md += `upstream did not run: ${upstream.error}\n\n`;
  md += `| metric | ours | Python GP | ours / Python GP |\n|---|---:|---:|---:|\n` +
    `| the answer leaves after Ready for the written generation, p50 (ms) ${cell(pct(o.left, 50), NaN)}\n` +
    `| the answer leaves after Ready for the written generation, p99 (ms) ${cell(pct(o.left, 99), NaN)}\n` +
    `| the caller has the answer after Ready, p50 (ms) ${cell(pct(o.after, 50), pct(u.after, 50))}\n` +
    `| the caller has the answer after Ready, p99 (ms) ${cell(pct(o.after, 99), pct(u.after, 99))}\n` +
    `| the caller has the answer after Ready, max (ms) ${cell(max(o.after), max(u.after))}\n` +
    `| same rounds: a raw watch in a process of its own sees Ready, p50 (ms) ${
      cell(pct(o.raw, 50), pct(u.raw, 50))
    }\n` +
    `| same rounds: a raw watch in a process of its own sees Ready, p99 (ms) ${
      cell(pct(o.raw, 99), pct(u.raw, 99))
    }\n` +
    `| single blocking scale end to end, p50 (ms) ${cell(o.singleP50, u.singleP50)}\n` +
    `| single blocking scale end to end, slowest (ms) ${cell(o.slowestSingle, u.slowestSingle)}\n` +
    `| request sent → the operator's watch shows the write, p50 single (ms) ${
      cell(
        pct(ours.single.map((a) => a.sentToSeenMs), 50),
        pct(upstream.single.map((a) => a.sentToSeenMs), 50),
      )
    }\n` +
    `| request sent → the operator's watch shows the write, p50 at once (ms) ${
      cell(
        pct(ours.batches.flat().map((a) => a.sentToSeenMs), 50),
        pct(upstream.batches.flat().map((a) => a.sentToSeenMs), 50),
      )
    }\n` +
    `| at once (ours ${w}, upstream ${uw}): slowest, median over rounds (ms) ${
      cell(o.batchWall, u.batchWall)
    }\n` +
    `| at once: slowest / slowest single ${cell(oRatio, uRatio, "×")}\n` +
    `| answered \`success\` | ${o.ok} of ${o.total} | ${u.ok} of ${u.total} | — |\n` +
    `| answers without a recorded Ready (not in the after-Ready rows) | ${o.unmatched} | ${u.unmatched} | — |\n\n`;
  md +=
    `the physical limit (this process, as our ServiceAccount, warm connection: the raw PATCH, then a watch ` +
    `of the DGD until Ready for its generation): single p50 ${fmt(pct(limit.blockSingle, 50))} / slowest ` +
    `${
      fmt(max(limit.blockSingle))
    } ms; all ${w} at once, slowest (median over ${limit.blockBatches.length}) ` +
    `${fmt(pct(limit.blockBatches, 50))} ms: **${fmt(limitRatio)}×**; ours / limit ${
      fmt(oRatio / limitRatio)
    }×. ` +
    `The PATCH alone: single p50 ${fmt(pct(limit.single, 50))} / slowest ${fmt(max(limit.single))} ms, all ` +
    `${w} at once ${fmt(pct(limit.batches, 50))} ms (${fmt(patchRatio)}×). Ready acknowledged → that watch ` +
    `shows it (p50 / p99 / max, ms; in the operator's own process, whose stalls delay the acknowledgement ` +
    `and the watch alike, so no other process can match it): ${spread(limit.seenAfterReady)}\n\n`;
  md += `ours, where the time after Ready goes (p50 / p99 / max, ms; our log has ms resolution): ` +
    `Ready acknowledged → our watch shows it ${spread(oursAll.map((a) => a.watchAfterReadyMs))} ` +
    `(the raw watch of its own process, same event: ${spread(oursAll.map((a) => a.rawAfterReadyMs))}; ` +
    `ours − raw, paired: ${spread(oursAll.map((a) => (a.watchAfterReadyMs ?? NaN) - a.rawAfterReadyMs))}; ` +
    `the answer leaves − raw, paired: ${
      spread(oursAll.map((a) => (a.leftAfterReadyMs ?? NaN) - a.rawAfterReadyMs))
    }); ` +
    `→ we answer ${spread(oursAll.map((a) => a.answerAfterWatchMs))}; ` +
    `→ the caller has it ${spread(oursAll.map((a) => a.callerAfterAnswerMs))}\n`;
  const rows: BenchRow[] = [
    {
      phase: PHASE,
      metric: "answer leaves after Ready, p50",
      unit: "ms",
      ours: pct(o.left, 50),
      limit: finite(pct(o.raw, 50)),
      limitName: "Ready seen by a raw watch of its own process, same rounds, p50",
    },
    {
      phase: PHASE,
      metric: "answer leaves after Ready, p99",
      unit: "ms",
      ours: pct(o.left, 99),
      limit: finite(pct(o.raw, 99)),
      limitName: "Ready seen by a raw watch of its own process, same rounds, p99",
      target: { of: "value", max: 50 },
    },
    {
      phase: PHASE,
      metric: "the caller has the answer after Ready, p99",
      unit: "ms",
      ours: pct(o.after, 99),
      upstream: finite(pct(u.after, 99)),
      limit: finite(pct(o.raw, 99)),
      limitName: "Ready seen by a raw watch of its own process, same rounds, p99",
    },
    {
      phase: PHASE,
      metric: "single blocking scale, p50",
      unit: "ms",
      ours: o.singleP50,
      upstream: finite(u.singleP50),
    },
    {
      phase: PHASE,
      metric: `${w} at once: slowest / slowest single`,
      unit: "×",
      ours: oRatio,
      upstream: finite(uRatio),
      limit: finite(limitRatio),
      limitName: `raw PATCH + watch, ${w} at once / single`,
      target: { of: "value", max: 1.2 },
    },
    {
      phase: PHASE,
      metric: "answered success",
      unit: "",
      ours: o.ok,
      upstream: upstream.error ? undefined : u.ok,
    },
  ];
  return { markdown: md, rows };
}
