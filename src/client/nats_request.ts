/**
 * The caller's half of the NATS request plane (the server's half is
 * src/runtime/request_plane/nats.ts): one core-NATS request to the subject an instance
 * advertises (`transport.nats_tcp`), the TwoPart body as payload, the `request-id` and
 * `x-frontend-send-ts-ns` headers a 1.6.1 caller sends, and the reply read as the ACK
 * (empty = accepted). The answer still streams back over the call-home listener.
 *
 * Loaded only when DYN_REQUEST_PLANE=nats, so a TCP call never loads nats.js.
 */
import { connect } from "@nats-io/transport-node";
import { headers as natsHeaders, TimeoutError } from "@nats-io/nats-core";
import type { NatsSettings } from "../config/nats.ts";
import { errorText } from "../errors.ts";
import { fromUtf8 } from "../runtime/codec/json.ts";
import { natsConnectionAuth } from "../runtime/request_plane/nats_auth.ts";
import { CallFailed } from "./error_text.ts";

export interface NatsRequest {
  subject: string;
  body: Uint8Array;
  requestId: string;
  /** Connect + request, each bounded by this. */
  timeoutMs: number;
  nowMs?: number;
}

/** Sends the request; resolves with the ACK text, throws `CallFailed` in the 1.6.1 wording. */
export async function sendOverNats(settings: NatsSettings, request: NatsRequest): Promise<string> {
  const auth = await natsConnectionAuth(settings, Deno.readTextFile);
  let nc;
  try {
    nc = await connect({
      servers: settings.servers,
      name: "global-planner-call",
      timeout: request.timeoutMs,
      maxReconnectAttempts: 0,
      ...auth,
    });
  } catch (error) {
    throw new CallFailed(`Unavailable: NATS server ${settings.url} not reachable: ${errorText(error)}`, {
      cause: error,
    });
  }
  try {
    const headers = natsHeaders();
    headers.set("request-id", request.requestId);
    headers.set(
      "x-frontend-send-ts-ns",
      (BigInt(Math.round(request.nowMs ?? Date.now())) * 1_000_000n).toString(),
    );
    try {
      const reply = await nc.request(request.subject, request.body, { timeout: request.timeoutMs, headers });
      return fromUtf8(reply.data);
    } catch (error) {
      if (error instanceof TimeoutError || (error as Error).cause instanceof TimeoutError) {
        throw new CallFailed(`DeadlineExceeded: NATS request to ${request.subject} timed out (no ACK)`, {
          cause: error,
        });
      }
      // No responders (nobody subscribed) and a lost connection both mean the instance is gone.
      throw new CallFailed(`Unavailable: NATS request to ${request.subject} failed`, { cause: error });
    }
  } finally {
    await nc.close().catch(() => {});
  }
}
