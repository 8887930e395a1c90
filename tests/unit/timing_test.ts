/**
 * Waiting helpers (abortable delay, jittered backoff, idle deadline), the watch line splitter's
 * bound, and the range check that keeps configured timeouts inside what a timer can hold.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/mod.ts";
import { MAX_BLOCKING_TIMEOUT_SECONDS } from "../../src/config/config.ts";
import { ConfigError } from "../../src/errors.ts";
import { watchEvents, WatchLineTooLong } from "../../src/kube/watch_events.ts";
import { abortable, backoffMs, delay, IdleDeadline, MAX_TIMER_MS, pause } from "../../src/timing.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const env = (name: string) => ({ DYN_NAMESPACE: "ns" } as Record<string, string>)[name];

Deno.test("--blocking-timeout-seconds above what a timer holds is refused at start, naming the limit", () => {
  assert.equal(MAX_BLOCKING_TIMEOUT_SECONDS, 2_147_483);
  const ok = loadConfig(["--blocking-timeout-seconds", String(MAX_BLOCKING_TIMEOUT_SECONDS)], env);
  assert.equal(ok.kind === "config" && ok.config.kube.blockingTimeoutSeconds, MAX_BLOCKING_TIMEOUT_SECONDS);
  assert.ok(MAX_BLOCKING_TIMEOUT_SECONDS * 1000 <= MAX_TIMER_MS);
  for (const value of [String(MAX_BLOCKING_TIMEOUT_SECONDS + 1), "2147483.648", "1e12"]) {
    assert.throws(
      () => loadConfig(["--blocking-timeout-seconds", value], env),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message === "--blocking-timeout-seconds must be at most 2147483 (about 24.8 days, " +
            "the longest a timer can wait)",
      value,
    );
  }
});

Deno.test("delay rejects with the abort reason at once; pause reports whether it ran out", async () => {
  const controller = new AbortController();
  const waiting = delay(60_000, controller.signal);
  controller.abort(new Error("stop"));
  await assert.rejects(waiting, /stop/);
  await assert.rejects(delay(10, controller.signal), /stop/);
  assert.equal(await pause(60_000, controller.signal), false);
  assert.equal(await pause(1), true);
});

Deno.test("backoff doubles from the first step to the cap, with equal jitter", () => {
  const options = { firstMs: 100, maxMs: 1_000 };
  assert.equal(backoffMs(1, { ...options, random: () => 0 }), 50);
  assert.equal(backoffMs(1, { ...options, random: () => 0.999999 }) < 100, true);
  assert.equal(backoffMs(2, { ...options, random: () => 0 }), 100);
  assert.equal(backoffMs(4, { ...options, random: () => 0 }), 400);
  assert.equal(backoffMs(5, { ...options, random: () => 0 }), 500); // capped: step 1000
  assert.equal(backoffMs(50, { ...options, random: () => 0 }), 500);
});

Deno.test("an idle deadline fires only after a silence, and touching it postpones it", async () => {
  const idle = new IdleDeadline(1_000, () => new Error("silent"));
  const fired = new Promise<void>((resolve) => idle.signal.addEventListener("abort", () => resolve()));
  let touches = 0;
  // Touched from a chain of 20 ms waits: none of them may let it fire.
  while (touches < 5) {
    await pause(20);
    assert.equal(idle.expired, false, `expired after ${touches} touches`);
    idle.touch();
    touches++;
  }
  await fired;
  assert.equal((idle.signal.reason as Error).message, "silent");
  idle.clear();
});

function bodyOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return ReadableStream.from(chunks.map((c) => typeof c === "string" ? encoder.encode(c) : c));
}

async function collect(body: ReadableStream<Uint8Array>, max?: number) {
  const out = [];
  for await (const event of watchEvents(body, max)) out.push(event);
  return out;
}

Deno.test("watch lines: split across chunks, several per chunk, multi-byte characters cut in two", async () => {
  const text = '{"type":"ADDED","object":{"name":"é€"}}\n';
  const bytes = new TextEncoder().encode(text + text);
  // Cut inside the two-byte "é" and between the two events.
  const cut = text.indexOf("é") + 1;
  const events = await collect(bodyOf([bytes.subarray(0, cut), bytes.subarray(cut, 60), bytes.subarray(60)]));
  assert.deepEqual(events.map((e) => (e.object as { name: string }).name), ["é€", "é€"]);
  assert.deepEqual(await collect(bodyOf(['{"type":"A","object":1}\n\n{"type":"B","object":2}\n'])), [
    { type: "A", object: 1 },
    { type: "B", object: 2 },
  ]);
  // An unterminated last line is an event cut short and is not delivered.
  assert.deepEqual(await collect(bodyOf(['{"type":"A","object":1}\n{"type":"B"'])), [{
    type: "A",
    object: 1,
  }]);
});

Deno.test("watch lines: a line longer than the bound fails clearly; one of exactly the bound passes", async () => {
  const line = '{"type":"A","object":"' + "x".repeat(76) + '"}'; // 100 bytes
  assert.equal(line.length, 100);
  assert.equal((await collect(bodyOf([line.slice(0, 40), line.slice(40) + "\n"]), 100)).length, 1);
  await assert.rejects(
    collect(bodyOf([line.slice(0, 40), line.slice(40) + "x\n"]), 100),
    (error: unknown) =>
      error instanceof WatchLineTooLong &&
      error.message === "watch event line exceeds 100 bytes without a newline; the stream is dropped",
  );
  // Never a newline: refused as soon as the bound is passed, not at the end of the stream.
  let pulled = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(new Uint8Array(64).fill(0x78));
    },
  });
  await assert.rejects(collect(endless, 1000), WatchLineTooLong);
  assert.equal(pulled <= 17, true, `pulled ${pulled} chunks`);
});

Deno.test("watch lines: splitting is linear (one 8 MiB line in 1 KiB chunks)", async () => {
  const size = 8 * 1024 * 1024;
  const chunk = new Uint8Array(1024).fill(0x20);
  let sent = 0;
  let scanned = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= size) {
        controller.enqueue(new TextEncoder().encode('{"type":"A","object":0}\n'));
        controller.close();
        return;
      }
      sent += chunk.length;
      scanned++;
      controller.enqueue(chunk);
    },
  });
  // Quadratic re-scanning of 8 Ki chunks would take minutes; this completes in the test's run.
  assert.deepEqual(await collect(body), [{ type: "A", object: 0 }]);
  assert.equal(scanned, 8192);
});

Deno.test("abortable: the promise's own outcome, or the signal's reason as soon as it aborts", async () => {
  const controller = new AbortController();
  assert.equal(await abortable(Promise.resolve(7), controller.signal), 7);
  const failure = new Error("own failure");
  await assert.rejects(abortable(Promise.reject(failure), controller.signal), (e) => e === failure);
  const never = Promise.withResolvers<number>();
  const waiting = abortable(never.promise, controller.signal);
  const reason = new Error("caller went away");
  controller.abort(reason);
  await assert.rejects(waiting, (e) => e === reason);
  // Already aborted: at once, without looking at the promise.
  await assert.rejects(abortable(Promise.resolve(1), controller.signal), (e) => e === reason);
  never.resolve(0);
});
