/**
 * A tiny Prometheus registry: counters, gauges and fixed-bucket histograms with labels, rendered
 * in the text exposition format 0.0.4.
 *
 * Why not `npm:prom-client` (15.1.3)? It was tried under `-P=service` and its own metrics do
 * work without extra permissions. It was still not chosen because:
 * - its default metrics (`collectDefaultMetrics`) read /proc and process info; under the
 *   service's permission set those reads are denied and silently swallowed, so it publishes
 *   `process_resident_memory_bytes 0`, `process_open_fds 0`, the Node version Deno emulates, and
 *   `nodejs_eventloop_lag_mean_seconds Nan` (not the `NaN` the format requires) — numbers that
 *   look real but are not. Leaving them off leaves only what is below;
 * - it brings three transitive packages (`@opentelemetry/api`, `tdigest`, `bintrees`) for what
 *   is ~200 lines here, and every npm package is a supply-chain and Deno-compat risk for a
 *   service whose metrics are a handful of families.
 *
 * Output is deterministic (families sorted by name, series by label values, as the Go client
 * does) so tests can compare it exactly and scrapes diff cleanly.
 */

export type Labels<L extends string> = Readonly<Record<L, string>>;

/** Label-less metrics take no labels argument; labelled ones require all their labels. */
export type LabelArg<L extends string> = [L] extends [never] ? [labels?: Labels<never>]
  : [labels: Labels<L>];

export interface MetricSpec<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
}

export interface HistogramSpec<L extends string> extends MetricSpec<L> {
  /** Upper bounds, ascending; the `+Inf` bucket is always added. */
  buckets: readonly number[];
}

/** Anything that can produce a Prometheus text exposition (what the status server needs). */
export interface MetricsSource {
  render(): string;
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

type MetricType = "counter" | "gauge" | "histogram";

/** What every family shares: name, help, label names, and series keyed by label values. */
abstract class _Family<L extends string, S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  abstract readonly type: MetricType;
  protected readonly series = new Map<string, { values: string[]; state: S }>();

  constructor(spec: MetricSpec<L>) {
    if (!METRIC_NAME.test(spec.name)) throw new Error(`invalid metric name "${spec.name}"`);
    const labelNames = spec.labelNames ?? [];
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith("__")) {
        throw new Error(`invalid label name "${label}" for metric ${spec.name}`);
      }
    }
    if (new Set(labelNames).size !== labelNames.length) {
      throw new Error(`duplicate label name for metric ${spec.name}`);
    }
    this.name = spec.name;
    this.help = spec.help;
    this.labelNames = labelNames;
  }

  /** Drops one series (e.g. a DGD that is no longer managed). */
  remove(...[labels]: LabelArg<L>): void {
    this.series.delete(JSON.stringify(this._values(labels)));
  }

  /** Drops every series. */
  clear(): void {
    this.series.clear();
  }

  protected abstract initialState(): S;
  protected abstract renderSeries(labelPairs: string[][], state: S): string[];

  // Takes any label object: the public methods' `LabelArg<L>` types the call site, and
  // `_values` checks the names at run time.
  protected stateFor(labels: Labels<string> | undefined): S {
    const values = this._values(labels);
    const key = JSON.stringify(values);
    let entry = this.series.get(key);
    if (!entry) {
      entry = { values, state: this.initialState() };
      this.series.set(key, entry);
    }
    return entry.state;
  }

  /** The exposition of this family: HELP, TYPE, then its series in label-value order. */
  render(): string[] {
    const lines = [`# HELP ${this.name} ${_escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    // A label-less metric always exists (at its initial value), as in the Go client.
    if (this.labelNames.length === 0 && this.series.size === 0) this.stateFor(undefined);
    const entries = [...this.series.values()].sort((a, b) => _compareValues(a.values, b.values));
    for (const { values, state } of entries) {
      lines.push(...this.renderSeries(this.labelNames.map((n, i) => [n, values[i]]), state));
    }
    return lines;
  }

  private _values(labels: Labels<string> | undefined): string[] {
    const given = (labels ?? {}) as Record<string, string>;
    const keys = Object.keys(given);
    const missing = this.labelNames.filter((n) => !(n in given));
    const extra = keys.filter((k) => !(this.labelNames as readonly string[]).includes(k));
    if (missing.length > 0 || extra.length > 0) {
      throw new Error(
        `metric ${this.name} takes labels [${this.labelNames.join(", ")}], got [${keys.join(", ")}]`,
      );
    }
    return this.labelNames.map((n) => String(given[n]));
  }
}

export class Counter<L extends string = never> extends _Family<L, { value: number }> {
  readonly type = "counter";

  inc(...labels: LabelArg<L>): void {
    this.add(1, ...labels);
  }

  add(amount: number, ...[labels]: LabelArg<L>): void {
    if (!(amount >= 0)) throw new Error(`counter ${this.name} can only increase (got ${amount})`);
    this.stateFor(labels).value += amount;
  }

  /** Creates the series at 0 so `rate()` sees it before the first event. */
  touch(...[labels]: LabelArg<L>): void {
    this.stateFor(labels);
  }

  get(...[labels]: LabelArg<L>): number {
    return this.stateFor(labels).value;
  }

  protected initialState() {
    return { value: 0 };
  }

  protected renderSeries(pairs: string[][], state: { value: number }): string[] {
    return [`${this.name}${_labelText(pairs)} ${_formatNumber(state.value)}`];
  }
}

export class Gauge<L extends string = never> extends _Family<L, { value: number }> {
  readonly type = "gauge";

  set(value: number, ...[labels]: LabelArg<L>): void {
    this.stateFor(labels).value = value;
  }

  add(amount: number, ...[labels]: LabelArg<L>): void {
    this.stateFor(labels).value += amount;
  }

  get(...[labels]: LabelArg<L>): number {
    return this.stateFor(labels).value;
  }

  protected initialState() {
    return { value: 0 };
  }

  protected renderSeries(pairs: string[][], state: { value: number }): string[] {
    return [`${this.name}${_labelText(pairs)} ${_formatNumber(state.value)}`];
  }
}

interface _HistogramState {
  /** Per-bucket (non-cumulative) counts; the last slot is the `+Inf` overflow. */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram<L extends string = never> extends _Family<L, _HistogramState> {
  readonly type = "histogram";
  readonly buckets: readonly number[];

  constructor(spec: HistogramSpec<L>) {
    super(spec);
    if ((spec.labelNames ?? []).includes("le" as L)) {
      throw new Error(`histogram ${spec.name} cannot have a label named "le"`);
    }
    const finite = spec.buckets.filter((b) => b !== Infinity);
    for (let i = 0; i < finite.length; i++) {
      if (!Number.isFinite(finite[i]) || (i > 0 && finite[i] <= finite[i - 1])) {
        throw new Error(`histogram ${spec.name} buckets must be finite and strictly ascending`);
      }
    }
    this.buckets = finite;
  }

  observe(value: number, ...[labels]: LabelArg<L>): void {
    const state = this.stateFor(labels);
    let index = this.buckets.findIndex((bound) => value <= bound);
    if (index < 0) index = this.buckets.length;
    state.counts[index]++;
    state.sum += value;
    state.count++;
  }

  protected initialState(): _HistogramState {
    return { counts: new Array(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  protected renderSeries(pairs: string[][], state: _HistogramState): string[] {
    const lines: string[] = [];
    let cumulative = 0;
    const bounds = [...this.buckets, Infinity];
    bounds.forEach((bound, i) => {
      cumulative += state.counts[i];
      const le = _labelText([...pairs, ["le", _formatNumber(bound)]]);
      lines.push(`${this.name}_bucket${le} ${cumulative}`);
    });
    lines.push(`${this.name}_sum${_labelText(pairs)} ${_formatNumber(state.sum)}`);
    lines.push(`${this.name}_count${_labelText(pairs)} ${state.count}`);
    return lines;
  }
}

type _AnyFamily = Counter<string> | Gauge<string> | Histogram<string>;

/** Owns metric families and renders them; one per service (no hidden global registry). */
export class Registry implements MetricsSource {
  private readonly _families = new Map<string, _AnyFamily>();
  /** Every sample name a family produces, so `x_count` cannot clash with histogram `x`. */
  private readonly _sampleNames = new Set<string>();

  counter<const L extends string = never>(spec: MetricSpec<L>): Counter<L> {
    return this._add(new Counter<L>(spec));
  }

  gauge<const L extends string = never>(spec: MetricSpec<L>): Gauge<L> {
    return this._add(new Gauge<L>(spec));
  }

  histogram<const L extends string = never>(spec: HistogramSpec<L>): Histogram<L> {
    return this._add(new Histogram<L>(spec));
  }

  /** The text exposition format 0.0.4, ending with a newline. */
  render(): string {
    const names = [..._sortedKeys(this._families)];
    const lines = names.flatMap((name) => this._families.get(name)!.render());
    return lines.length === 0 ? "" : lines.join("\n") + "\n";
  }

  private _add<F extends _AnyFamily>(family: F): F {
    const samples = family.type === "histogram"
      ? ["_bucket", "_sum", "_count"].map((suffix) => family.name + suffix)
      : [family.name];
    const names = [family.name, ...samples];
    if (names.some((n) => this._families.has(n) || this._sampleNames.has(n))) {
      throw new Error(`metric ${family.name} clashes with an already registered metric`);
    }
    this._families.set(family.name, family);
    for (const n of names) this._sampleNames.add(n);
    return family;
  }
}

function _sortedKeys(map: Map<string, unknown>): string[] {
  return [...map.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function _compareValues(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

function _labelText(pairs: string[][]): string {
  if (pairs.length === 0) return "";
  return `{${pairs.map(([name, value]) => `${name}="${_escapeLabelValue(value)}"`).join(",")}}`;
}

/** Label values escape backslash, double quote and line feed (format 0.0.4). */
function _escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text escapes backslash and line feed only. */
function _escapeHelp(help: string): string {
  return help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Go-compatible float text: `+Inf`, `-Inf`, `NaN`; otherwise JavaScript's shortest form. */
function _formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
