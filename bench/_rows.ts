/**
 * The rows of the one benchmark table. Every phase script accepts `--rows FILE` and writes its
 * figures there as `BenchRow` JSON lines; the orchestrator reads them all back and prints a single
 * table. Private to bench/.
 */

/** What a row's figure is compared against, and the bound the issue sets on that ratio, if any. */
export interface RowTarget {
  /** `upstream`: ours / upstream; `limit`: ours / limit; `value`: ours itself. */
  readonly of: "upstream" | "limit" | "value";
  /** Met when the compared figure is ≤ max (latency, RSS, CPU, calls). */
  readonly max?: number;
  /** Met when the compared figure is ≥ min (throughput). */
  readonly min?: number;
}

export interface BenchRow {
  /** The phase and its cell, e.g. `no-op · file/tcp`, `kube scale · kubernetes/tcp`, `1k DGDs`. */
  readonly phase: string;
  readonly metric: string;
  /** `ms`, `req/s`, `MiB`, `calls`, `×`, or `` for counts. */
  readonly unit: string;
  readonly ours: number;
  /** Upstream's Python Global Planner (ai-dynamo 1.6.1) in the same run. */
  readonly upstream?: number;
  /** The physical limit measured in the same run (named by `limitName`). */
  readonly limit?: number;
  /** `echo`, `raw PATCH`, `empty Deno`, `no-DGD RSS`, `slowest single`, … */
  readonly limitName?: string;
  readonly target?: RowTarget;
  /** Why a figure is missing (a target that cannot run in this cell, a phase that failed). */
  readonly note?: string;
}

/** Appends rows to `path` (one JSON object per line); a no-op without a path. */
export async function writeRows(path: string | undefined, rows: readonly BenchRow[]): Promise<void> {
  if (!path) return;
  await Deno.writeTextFile(path, rows.map((r) => JSON.stringify(r) + "\n").join(""), { append: true });
}

/** Every row written to `path`, in order; none when the file does not exist. */
export async function readRows(path: string): Promise<BenchRow[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as BenchRow);
}

/** JSON turns NaN into null: a figure that was not measured. */
const known = (x: number | null | undefined): x is number => typeof x === "number" && Number.isFinite(x);

function fmt(x: number | null | undefined): string {
  if (!known(x)) return "—";
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function compared(row: BenchRow): number | undefined {
  if (!row.target) return undefined;
  if (row.target.of === "value") return row.ours;
  const base = row.target.of === "upstream" ? row.upstream : row.limit;
  return known(base) && known(row.ours) ? row.ours / base : undefined;
}

/** `met`, `**missed**`, or `` when the row carries no target. */
export function verdict(row: BenchRow): string {
  const t = row.target;
  const x = compared(row);
  if (!t) return "";
  if (x === undefined || !Number.isFinite(x)) return "not measured";
  const ok = (t.max === undefined || x <= t.max) && (t.min === undefined || x >= t.min);
  return ok ? "met" : "**missed**";
}

function targetText(t: RowTarget | undefined): string {
  if (!t) return "";
  const what = t.of === "value" ? "" : "×";
  const bounds = [
    t.max !== undefined ? `≤ ${t.max}${what}` : "",
    t.min !== undefined ? `≥ ${t.min}${what}` : "",
  ]
    .filter(Boolean).join(", ");
  return t.of === "value" ? bounds : `${bounds} ${t.of}`;
}

/** The one Markdown table of absolute figures and ratios. */
export function renderTable(rows: readonly BenchRow[]): string {
  let out =
    "| phase | metric | ours | upstream | limit | ours / upstream | ours / limit | target | result |\n" +
    "|---|---|---:|---:|---:|---:|---:|---|---|\n";
  for (const r of rows) {
    const unit = r.unit ? ` (${r.unit})` : "";
    const limit = r.limit === undefined ? "—" : `${fmt(r.limit)} ${r.limitName ?? ""}`.trim();
    const ratio = (base: number | undefined) =>
      known(base) && known(r.ours) && base !== 0 ? `${fmt(r.ours / base)}×` : "—";
    const result = [verdict(r), r.note ?? ""].filter(Boolean).join("; ");
    out += `| ${r.phase} | ${r.metric}${unit} | ${fmt(r.ours)} | ${fmt(r.upstream)} | ${limit} | ` +
      `${ratio(r.upstream)} | ${ratio(r.limit)} | ${targetText(r.target)} | ${result} |\n`;
  }
  return out;
}
