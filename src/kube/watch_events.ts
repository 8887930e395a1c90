/**
 * A Kubernetes watch response body: one JSON event per line. Lines are found by scanning only
 * the bytes that arrived since the last scan (linear in the body size), and one line may not
 * exceed `maxLineBytes`: a peer that never sends a newline cannot grow our memory without bound.
 */
import { KubeError } from "../errors.ts";

export interface WatchEvent {
  type: string;
  object: unknown;
}

/**
 * Large enough for any DGD (etcd refuses values over 1.5 MiB by default, and a watch event
 * carries one object), small enough to bound a broken stream.
 */
export const MAX_WATCH_LINE_BYTES = 16 * 1024 * 1024;

export class WatchLineTooLong extends KubeError {}

export async function* watchEvents(
  body: ReadableStream<Uint8Array>,
  maxLineBytes = MAX_WATCH_LINE_BYTES,
): AsyncGenerator<WatchEvent> {
  const decoder = new TextDecoder();
  let parts: Uint8Array[] = [];
  let partBytes = 0;
  const take = (tail: Uint8Array): string => {
    const line = parts.length === 0 ? tail : _concat([...parts, tail], partBytes + tail.length);
    parts = [];
    partBytes = 0;
    return decoder.decode(line).trim();
  };
  for await (const chunk of body) {
    let start = 0;
    let nl: number;
    while ((nl = chunk.indexOf(10, start)) >= 0) {
      const piece = chunk.subarray(start, nl);
      _check(partBytes + piece.length, maxLineBytes);
      const line = take(piece);
      start = nl + 1;
      if (line) yield JSON.parse(line) as WatchEvent;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      _check(partBytes + rest.length, maxLineBytes);
      // Copied: the stream may reuse the chunk's buffer.
      parts.push(rest.slice());
      partBytes += rest.length;
    }
  }
  // An unterminated last line is an event cut short: the watch resumes from the last one seen.
}

function _check(bytes: number, max: number): void {
  if (bytes > max) {
    throw new WatchLineTooLong(
      `watch event line exceeds ${max} bytes without a newline; the stream is dropped`,
      { verb: "watch", resource: "(stream)" },
    );
  }
}

function _concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
