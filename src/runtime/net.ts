/** Small socket helpers shared by the request and response planes. */
import { SocketTimeout } from "../errors.ts";
import { deadlineAfter } from "./deadlines.ts";

export interface Writable {
  write(p: Uint8Array): Promise<number>;
}

export async function writeAll(w: Writable, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await w.write(bytes.subarray(offset));
}

export interface Closable extends Writable {
  close(): void;
}

/**
 * `writeAll` with a deadline: a peer that stops reading would otherwise hold the write (and
 * whatever awaits it, e.g. a shutdown drain) forever. On expiry the connection is closed, which
 * makes the pending write fail, and `SocketTimeout` is thrown.
 */
export async function writeAllWithin(conn: Closable, bytes: Uint8Array, timeoutMs: number): Promise<void> {
  let timedOut = false;
  const deadline = deadlineAfter(timeoutMs, () => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  });
  try {
    await writeAll(conn, bytes);
  } catch (error) {
    if (timedOut) {
      throw new SocketTimeout(`write of ${bytes.length} bytes not done within ${timeoutMs} ms`, {
        cause: error,
      });
    }
    throw error;
  } finally {
    deadline.cancel();
  }
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  let length = 0;
  for (const c of chunks) length += c.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/**
 * Parses `ip:port` / `[v6]:port` as the runtime's `SocketAddr` does: IP literals only,
 * no host names.
 */
export function parseSocketAddress(text: string): { hostname: string; port: number } | null {
  const match = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ??
    /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  if (!match) return null;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return null;
  return { hostname: match[1], port };
}

/** Formats an address for advertising: IPv6 in brackets. */
export function formatSocketAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/**
 * The address to advertise when none is configured: the first non-loopback IPv4 address,
 * as the runtime's auto-detection picks; loopback if the machine has nothing else.
 */
export function detectLocalIp(): string {
  try {
    const candidates = Deno.networkInterfaces().filter((i) =>
      i.family === "IPv4" && !i.address.startsWith("127.")
    );
    if (candidates.length > 0) return candidates[0].address;
  } catch {
    // Without --allow-sys=networkInterfaces fall through to loopback.
  }
  return "127.0.0.1";
}
