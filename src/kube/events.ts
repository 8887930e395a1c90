/**
 * Kubernetes Events (`events.k8s.io/v1`) on the DGD for scaling decisions, so that
 * `kubectl describe dgd` and `kubectl events` show what the Global Planner decided and why.
 *
 * A repeat of an identical event (same DGD, reason, type and note) within the series window
 * updates the first one's `series` (count, lastObservedTime) instead of creating another, as
 * client-go's event recorder does. Writes run one at a time off the request path, through a
 * bounded queue; a failed write is logged (once per distinct error text in a row) and never
 * fails a scale.
 */
import { errorText, KubeError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import type { DecisionEvent, DecisionEvents } from "../service/scale_use_case.ts";
import type { KubeClient } from "./client.ts";
import { DGD_GROUP, DGD_KIND, type DgdView, MERGE_PATCH } from "./dgd.ts";

export const EVENTS_GROUP = "events.k8s.io";
/** What `reportingController` says (a name under our annotation domain). */
export const REPORTING_CONTROLLER = "globalplanner.dynamo.example/global-planner";
/** client-go aggregates isomorphic events seen within this window into one series. */
export const SERIES_WINDOW_MS = 6 * 60_000;
/** Distinct events remembered for series (oldest forgotten first). */
export const MAX_SERIES = 1024;
/** Events waiting to be written; more are dropped (and counted in the log). */
export const MAX_QUEUED = 256;
/** The API server's limit on `note`. */
const MAX_NOTE_BYTES = 1024;

export interface KubeEventRecorderOptions {
  client: KubeClient;
  logger: Logger;
  /** `reportingInstance`: which replica decided (the pod name, else the Dynamo namespace). */
  instance: string;
  /** Milliseconds since the epoch. */
  clock?: () => number;
}

interface Series {
  name: string;
  namespace: string;
  count: number;
  lastAt: number;
}

export class KubeEventRecorder implements DecisionEvents<DgdView> {
  #options: KubeEventRecorderOptions;
  #clock: () => number;
  #series = new Map<string, Series>();
  #queue: DecisionEvent<DgdView>[] = [];
  #running: Promise<void> | undefined;
  #lastError?: string;
  #dropped = 0;

  constructor(options: KubeEventRecorderOptions) {
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
  }

  emit(event: DecisionEvent<DgdView>): void {
    if (this.#queue.length >= MAX_QUEUED) {
      this.#dropped++;
      return;
    }
    this.#queue.push(event);
    this.#running ??= this.#drain().finally(() => (this.#running = undefined));
  }

  /** Resolves once every queued event has been written (or has failed). */
  async flush(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const event = this.#queue.shift()!;
      try {
        const count = await this.#write(event);
        this.#lastError = undefined;
        this.#options.logger.debug("Kubernetes Event recorded", {
          dgd: event.ref.name,
          k8s_namespace: event.ref.namespace,
          reason: event.reason,
          count,
        });
      } catch (error) {
        const text = errorText(error);
        if (text !== this.#lastError) {
          this.#options.logger.warn("cannot record a Kubernetes Event; the scale itself is unaffected", {
            dgd: event.ref.name,
            k8s_namespace: event.ref.namespace,
            reason: event.reason,
            error: text,
          });
        }
        this.#lastError = text;
      }
    }
    if (this.#dropped > 0) {
      this.#options.logger.warn("Kubernetes Events dropped: too many waiting to be written", {
        dropped: this.#dropped,
      });
      this.#dropped = 0;
    }
  }

  /** Returns the event's count (1, or its series count). */
  async #write(event: DecisionEvent<DgdView>): Promise<number> {
    const { client } = this.#options;
    const now = this.#clock();
    const note = _truncate(event.note, MAX_NOTE_BYTES);
    const type = event.warning ? "Warning" : "Normal";
    const key = JSON.stringify([event.ref.namespace, event.ref.name, event.reason, type, note]);
    const series = this.#series.get(key);
    if (series && now - series.lastAt <= SERIES_WINDOW_MS) {
      try {
        await client.json({
          method: "PATCH",
          verb: "patch",
          group: EVENTS_GROUP,
          resource: "events",
          namespace: series.namespace,
          name: series.name,
          path: _eventPath(series.namespace, series.name),
          contentType: MERGE_PATCH,
          body: { series: { count: series.count + 1, lastObservedTime: microTime(now) } },
        });
        series.count++;
        series.lastAt = now;
        this.#remember(key, series);
        return series.count;
      } catch (error) {
        // Expired (events live an hour by default) or deleted: start a new one.
        if (!(error instanceof KubeError && error.detail.status === 404)) throw error;
      }
    }
    const name = `${event.ref.name.slice(0, 200)}.${now.toString(16)}${
      Math.floor(Math.random() * 0x10000).toString(16).padStart(4, "0")
    }`;
    await client.json({
      method: "POST",
      verb: "create",
      group: EVENTS_GROUP,
      resource: "events",
      namespace: event.ref.namespace,
      path: _eventPath(event.ref.namespace),
      body: {
        apiVersion: `${EVENTS_GROUP}/v1`,
        kind: "Event",
        metadata: { name, namespace: event.ref.namespace },
        eventTime: microTime(now),
        reportingController: REPORTING_CONTROLLER,
        reportingInstance: this.#options.instance.slice(0, 128),
        action: "Scale",
        reason: event.reason,
        type,
        note,
        regarding: {
          apiVersion: `${DGD_GROUP}/${event.view.apiVersion}`,
          kind: DGD_KIND,
          namespace: event.ref.namespace,
          name: event.ref.name,
          ...(event.view.uid ? { uid: event.view.uid } : {}),
        },
      },
    });
    this.#remember(key, { name, namespace: event.ref.namespace, count: 1, lastAt: now });
    return 1;
  }

  #remember(key: string, series: Series): void {
    this.#series.delete(key);
    this.#series.set(key, series);
    if (this.#series.size > MAX_SERIES) this.#series.delete(this.#series.keys().next().value!);
  }
}

/** Kubernetes `MicroTime`: RFC 3339 with exactly six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

function _eventPath(namespace: string, name?: string): string {
  const base = `/apis/${EVENTS_GROUP}/v1/namespaces/${encodeURIComponent(namespace)}/events`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

function _truncate(text: string, maxBytes: number): string {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= maxBytes) return text;
  return new TextDecoder().decode(bytes.slice(0, maxBytes - 3)).replace(/\uFFFD+$/, "") + "...";
}
