/**
 * The API server's own count of our calls: an audit policy logging every request at Metadata
 * level, and the events of one user read back by verb, resource and HTTP code. Private to bench/.
 */
import type { Json } from "./_json_lines.ts";

/** Pass as `--audit-policy-file` (written to a file) with `--audit-log-path`. */
export const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
`;

export interface Audit {
  total: number;
  /** `verb resource[/subresource] code` → events. */
  by: Record<string, number>;
  /** Per event: stageTimestamp − requestReceivedTimestamp (ms, µs resolution). */
  serverMs: number[];
}

/** Audit events (ResponseComplete) of one user so far, with a verb/resource/code breakdown. */
export async function auditCalls(path: string, user: string): Promise<Audit> {
  const text = await Deno.readTextFile(path).catch(() => "");
  const by: Record<string, number> = {};
  const serverMs: number[] = [];
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.includes(user)) continue;
    let e: Json;
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    if ((e.user as Json)?.username !== user || e.stage !== "ResponseComplete") continue;
    total++;
    serverMs.push(micro(e.stageTimestamp) - micro(e.requestReceivedTimestamp));
    const ref = (e.objectRef ?? {}) as Json;
    const key = `${e.verb} ${ref.resource ?? e.requestURI}${ref.subresource ? "/" + ref.subresource : ""} ${
      (e.responseStatus as Json)?.code ?? "?"
    }`;
    by[key] = (by[key] ?? 0) + 1;
  }
  return { total, by, serverMs };
}

/** `after.by − before.by`, the keys that moved only. */
export function auditDelta(before: Audit, after: Audit): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.by)) {
    const d = v - (before.by[k] ?? 0);
    if (d) out[k] = d;
  }
  return out;
}

/** Milliseconds of an RFC 3339 timestamp with microseconds (Date.parse keeps only ms). */
function micro(ts: unknown): number {
  const m = /\.(\d+)Z$/.exec(String(ts));
  const frac = m ? Number(`0.${m[1]}`) * 1000 : 0;
  return Date.parse(String(ts).replace(/\.\d+Z$/, "Z")) + frac;
}
