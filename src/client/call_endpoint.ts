/**
 * One call as a 1.6.1 planner makes it: look the endpoint up in discovery, open a call-home
 * listener, send one request to an instance (a TCP frame, or a NATS request with
 * DYN_REQUEST_PLANE=nats), check its ACK, and read the response stream the instance opens back
 * to us. Everything is bounded by one deadline.
 */
import { DiscoveryError, errorText, ProtocolError } from "../errors.ts";
import { ByteReader } from "../runtime/codec/byte_reader.ts";
import { type PayloadCodec, payloadCodec } from "../runtime/codec/payload_codec.ts";
import { detectLocalIp, formatSocketAddress, writeAll } from "../runtime/net.ts";
import type { CallEnv } from "./env.ts";
import { CallFailed, renderAck } from "./error_text.ts";
import { type EndpointName, endpointText, lookupInstances } from "./lookup.ts";
import { type InstanceRecord, requestTarget, shuffled } from "./records.ts";
import { buildRequest, buildRequestBody, readAck, type RequestIds } from "./request_frame.ts";
import { acceptStream, type CallResult, readStream } from "./response_stream.ts";

export interface CallOptions {
  env: CallEnv;
  endpoint: EndpointName;
  payload: unknown;
  timeoutMs: number;
}

/** 1.6.1 callers give up on a missing ACK after about 5 s. */
const _ACK_TIMEOUT_MS = 5000;

/** Sockets to close when the call ends, however it ends (this also unblocks pending reads). */
class _Sockets {
  #open = new Set<{ close(): void }>();
  add<T extends { close(): void }>(socket: T): T {
    this.#open.add(socket);
    return socket;
  }
  closeAll() {
    for (const socket of this.#open) {
      try {
        socket.close();
      } catch { /* already closed */ }
    }
    this.#open.clear();
  }
}

/** Calls the endpoint; resolves with its items (or the error item's text), throws `CallFailed`. */
export async function callEndpoint(options: CallOptions): Promise<CallResult> {
  const sockets = new _Sockets();
  const deadline = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const seconds = options.timeoutMs / 1000;
      reject(
        new CallFailed(
          `DeadlineExceeded: no complete response from ${endpointText(options.endpoint)} within ${seconds} s`,
        ),
      );
      deadline.abort();
    }, options.timeoutMs);
  });
  const work = _call(options, sockets, deadline.signal);
  work.catch(() => {}); // when the deadline wins, the closed sockets make `work` fail unobserved
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
    sockets.closeAll();
  }
}

async function _call(options: CallOptions, sockets: _Sockets, signal: AbortSignal): Promise<CallResult> {
  const { env, endpoint } = options;
  const { records: found, where } = await lookupInstances(env.runtime, endpoint, signal, env.kube);
  const plane = env.runtime.requestPlane;
  const records = found.filter((r) => (plane === "nats" ? r.nats : r.tcp) !== undefined);
  if (records.length === 0) {
    const elsewhere = found.length > 0
      ? `; ${found.length} found on the other request plane (DYN_REQUEST_PLANE=${plane} here)`
      : "";
    throw new CallFailed(`no instance of ${endpointText(endpoint)} found (looked in ${where})${elsewhere}`);
  }

  const bindHost = env.responseStream.host ?? detectLocalIp();
  const listener = sockets.add(
    Deno.listen({ hostname: bindHost, port: env.responseStream.port, transport: "tcp" }),
  );
  // A wildcard bind is reachable, but the server needs an address to call: use ours.
  const callHomeHost = bindHost === "0.0.0.0" || bindHost === "::" ? detectLocalIp() : bindHost;
  const callHomeAddress = formatSocketAddress(callHomeHost, listener.addr.port);
  const ids = { id: crypto.randomUUID(), subject: crypto.randomUUID() };
  // Listen before sending: the server calls home as soon as it has ACKed.
  const stream = acceptStream(listener, ids.subject, (c) => sockets.add(c));
  stream.catch(() => {});

  const codec = plane === "nats"
    ? await _sendOverNats(options, shuffled(records), ids, callHomeAddress)
    : await _sendOverTcp(options, records, sockets, ids, callHomeAddress);
  if (signal.aborted) throw new CallFailed("aborted");
  const { reader } = await stream;
  return await readStream(reader, codec);
}

async function _codecOf(record: InstanceRecord): Promise<PayloadCodec> {
  const found = payloadCodec(record.codec);
  const codec = found instanceof Promise ? await found : found;
  if (!codec) {
    throw new CallFailed(
      `instance ${record.instanceId.toString(16)} wants request_plane_codec "${record.codec}", ` +
        `which this client does not speak (json, msgpack)`,
    );
  }
  return codec;
}

/** One frame to one reachable instance; resolves with the codec once the ACK accepted it. */
async function _sendOverTcp(
  options: CallOptions,
  records: InstanceRecord[],
  sockets: _Sockets,
  ids: RequestIds,
  callHomeAddress: string,
): Promise<PayloadCodec> {
  const { record, conn } = await _connectToOne(records, sockets);
  const codec = await _codecOf(record);
  const target = requestTarget(record);
  const frame = buildRequest(target.path, ids, codec, callHomeAddress, options.payload);
  const address = formatSocketAddress(target.hostname, target.port);
  await writeAll(conn, frame);
  const ack = await _withTimeout(
    readAck(new ByteReader(conn)),
    _ACK_TIMEOUT_MS,
    () => new CallFailed(`DeadlineExceeded: TCP request to ${address} timed out (no ACK)`),
  );
  if (ack !== "") throw new CallFailed(renderAck(ack, address));
  return codec;
}

/**
 * One NATS request to each instance's subject in turn until one answers (a stale record has no
 * subscriber); resolves with the codec once the reply accepted it. nats.js loads only here.
 */
async function _sendOverNats(
  options: CallOptions,
  records: InstanceRecord[],
  ids: RequestIds,
  callHomeAddress: string,
): Promise<PayloadCodec> {
  const settings = options.env.runtime.nats;
  if (!settings) throw new CallFailed("DYN_REQUEST_PLANE=nats without NATS settings");
  const { sendOverNats } = await import("./nats_request.ts");
  const failures: string[] = [];
  for (const record of records) {
    const codec = await _codecOf(record);
    const subject = record.nats!;
    const body = buildRequestBody(ids, codec, callHomeAddress, options.payload);
    try {
      const ack = await sendOverNats(settings, {
        subject,
        body,
        requestId: ids.id,
        timeoutMs: _ACK_TIMEOUT_MS,
      });
      if (ack !== "") throw new CallFailed(renderAck(ack, subject));
      return codec;
    } catch (error) {
      // Only an instance nobody answers for is skipped; a refusal or a deadline is the answer.
      if (!(error instanceof CallFailed) || !error.message.startsWith("Unavailable: NATS request to ")) {
        throw error;
      }
      failures.push(error.message.replace(/^Unavailable: /, ""));
    }
  }
  throw new CallFailed(`Unavailable: ${failures.join("; ")}`);
}

/** Connects to the instances in random order; a dead one (stale record) is skipped. */
async function _connectToOne(
  records: InstanceRecord[],
  sockets: _Sockets,
): Promise<{ record: InstanceRecord; conn: Deno.TcpConn }> {
  const failures: string[] = [];
  for (const record of shuffled(records)) {
    let address = record.tcp;
    try {
      const target = requestTarget(record);
      address = formatSocketAddress(target.hostname, target.port);
      const conn = sockets.add(await Deno.connect({ hostname: target.hostname, port: target.port }));
      conn.setNoDelay(true);
      return { record, conn };
    } catch (error) {
      if (error instanceof DiscoveryError || error instanceof ProtocolError) {
        failures.push(errorText(error));
      } else {
        failures.push(`TCP connection to ${address} failed: ${errorText(error)}`);
      }
    }
  }
  throw new CallFailed(`Unavailable: ${failures.join("; ")}`);
}

async function _withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(onTimeout()), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
