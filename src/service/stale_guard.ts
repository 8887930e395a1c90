/**
 * Stale and duplicate requests (ours, `--reject-stale`). Per DGD, the last applied request
 * (its `timestamp`, caller and targets) is kept in an annotation on the DGD, written with the
 * scale, so it survives a restart and is seen by whichever replica answers next. A request
 * older than that is stale; one with the same timestamp and targets is a retry of it. Pure.
 */

export interface LastRequest {
  timestamp: number;
  caller: string;
  /** Role → requested replicas. */
  targets: Record<string, number>;
}

export type StaleVerdict =
  | { kind: "fresh" }
  | { kind: "duplicate"; last: LastRequest }
  | { kind: "stale"; last: LastRequest };

/** How long an identical retry gets the first answer from memory. */
export const DUPLICATE_WINDOW_SECONDS = 60;
/** Answers kept for retries (a bound, not a target: one per DGD per window is typical). */
export const MAX_RECENT_ANSWERS = 1024;

/** The annotation's value; `undefined` when absent or not ours (it is then ignored). */
export function parseLastRequest(value: string | undefined): LastRequest | undefined {
  if (value === undefined) return undefined;
  try {
    const parsed = JSON.parse(value);
    if (
      typeof parsed?.timestamp === "number" && Number.isFinite(parsed.timestamp) &&
      typeof parsed.caller === "string" && parsed.targets !== null && typeof parsed.targets === "object"
    ) {
      return { timestamp: parsed.timestamp, caller: parsed.caller, targets: parsed.targets };
    }
  } catch { /* not ours */ }
  return undefined;
}

export function formatLastRequest(request: LastRequest): string {
  return JSON.stringify({ timestamp: request.timestamp, caller: request.caller, targets: request.targets });
}

/** A request without a timestamp is never stale (upstream's field is optional). */
export function judgeRequest(last: LastRequest | undefined, request: LastRequest): StaleVerdict {
  if (!last) return { kind: "fresh" };
  if (request.timestamp > last.timestamp) return { kind: "fresh" };
  if (request.timestamp === last.timestamp && _sameTargets(last.targets, request.targets)) {
    return { kind: "duplicate", last };
  }
  return { kind: "stale", last };
}

export function staleMessage(dgd: string, request: LastRequest, last: LastRequest): string {
  return `Stale scale request for DynamoGraphDeployment '${dgd}': its timestamp ${request.timestamp} is not ` +
    `newer than ${last.timestamp}, the last request applied (from caller '${last.caller}'); nothing was changed`;
}

/** First answers to requests, for identical retries within the window. */
export class RecentAnswers<T> {
  #answers = new Map<string, { at: number; answer: T }>();

  get(key: string, now: number): T | undefined {
    const hit = this.#answers.get(key);
    if (!hit) return undefined;
    if (now - hit.at > DUPLICATE_WINDOW_SECONDS) {
      this.#answers.delete(key);
      return undefined;
    }
    return hit.answer;
  }

  put(key: string, answer: T, now: number): void {
    this.#answers.delete(key);
    this.#answers.set(key, { at: now, answer });
    // Oldest first (insertion order): drop expired ones, then any beyond the bound.
    for (const [k, v] of this.#answers) {
      if (now - v.at <= DUPLICATE_WINDOW_SECONDS && this.#answers.size <= MAX_RECENT_ANSWERS) break;
      this.#answers.delete(k);
    }
  }

  get size(): number {
    return this.#answers.size;
  }
}

/** Identity of a request for retries: DGD, timestamp and targets. */
export function requestKey(dgd: string, request: LastRequest): string {
  return `${dgd}|${request.timestamp}|${JSON.stringify(Object.entries(request.targets).sort())}`;
}

function _sameTargets(a: Record<string, number>, b: Record<string, number>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && b[k] === a[k]);
}
