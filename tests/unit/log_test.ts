import assert from "node:assert/strict";
import { bufferedSink, createLogger, parseLogLevel, writerSink } from "../../src/ops/log.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("DYN_LOG levels as the runtime reads them; unknown → info", () => {
  assert.equal(parseLogLevel(undefined), "info");
  assert.equal(parseLogLevel("debug"), "debug");
  assert.equal(parseLogLevel("WARN"), "warn");
  assert.equal(parseLogLevel("dynamo_runtime=trace,error"), "error");
  assert.equal(parseLogLevel("nonsense"), "info");
});

Deno.test("JSON lines carry time, level, message and fields; the level filters", () => {
  const lines: string[] = [];
  const logger = createLogger({ level: "info", sink: (l) => lines.push(l), clock: () => new Date(0) });
  logger.debug("hidden");
  logger.info("scale request", { dgd: "llama", id: 12n, error: new Error("boom") });
  assert.equal(lines.length, 1);
  assert.deepEqual(JSON.parse(lines[0]), {
    time: "1970-01-01T00:00:00.000Z",
    level: "info",
    message: "scale request",
    dgd: "llama",
    id: "12",
    error: { name: "Error", message: "boom" },
  });
});

Deno.test("text format for terminals; child loggers add fields", () => {
  const lines: string[] = [];
  const logger = createLogger({ format: "text", sink: (l) => lines.push(l), clock: () => new Date(0) }).child(
    { dgd: "a b" },
  );
  logger.warn("not ready", { n: 1 });
  assert.equal(lines[0], '1970-01-01T00:00:00.000Z WARN  not ready dgd="a b" n=1');
});

Deno.test("the stderr sink writes the rest of a line after a partial write", () => {
  const chunks: Uint8Array[] = [];
  // At most 7 bytes per call, as a full pipe may take.
  const sink = writerSink({
    writeSync(bytes) {
      const n = Math.min(7, bytes.length);
      chunks.push(bytes.slice(0, n));
      return n;
    },
  });
  const logger = createLogger({ sink, clock: () => new Date(0) });
  logger.info("é partial writes", { field: "x".repeat(40) });
  logger.warn("second");
  const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  const lines = text.split("\n");
  assert.equal(lines.length, 3);
  assert.equal(lines[2], "");
  assert.equal(JSON.parse(lines[0]).message, "é partial writes");
  assert.equal(JSON.parse(lines[0]).field, "x".repeat(40));
  assert.equal(JSON.parse(lines[1]).message, "second");
  assert.ok(chunks.every((c) => c.length <= 7));
  // A writer that takes nothing (closed stderr) does not hang the logger.
  writerSink({ writeSync: () => 0 })("dropped");
});

/** A writer that records what each write got; `limit` bytes at most per call. */
function recorder(limit = Infinity) {
  const writes: string[] = [];
  const decoder = new TextDecoder();
  return {
    writes,
    writer: {
      writeSync(bytes: Uint8Array): number {
        const n = Math.min(limit, bytes.length);
        writes.push(decoder.decode(bytes.slice(0, n)));
        return n;
      },
    },
  };
}

/** A scheduler the test runs by hand (the sink's "next turn"). */
function manualTurn() {
  let due: (() => void) | undefined;
  let cancelled = 0;
  return {
    schedule: (flush: () => void) => {
      due = flush;
      return () => {
        cancelled++;
        due = undefined;
      };
    },
    run: () => due?.(),
    get scheduled() {
      return due !== undefined;
    },
    get cancelled() {
      return cancelled;
    },
  };
}

Deno.test("buffered sink: the lines of one turn leave in one write, in order", () => {
  const { writes, writer } = recorder();
  const turn = manualTurn();
  const buffered = bufferedSink(writer, { schedule: turn.schedule });
  const logger = createLogger({ sink: buffered.sink, clock: () => new Date(0) });
  for (let i = 0; i < 5; i++) logger.info("line", { i });
  assert.equal(writes.length, 0);
  assert.ok(turn.scheduled);
  turn.run();
  assert.equal(writes.length, 1);
  assert.deepEqual(writes[0].split("\n").slice(0, -1).map((l) => JSON.parse(l).i), [0, 1, 2, 3, 4]);
  assert.equal(buffered.pending, 0);
  // The next turn's lines follow the first ones, in a write of their own.
  logger.warn("later");
  turn.run();
  assert.equal(writes.length, 2);
  assert.equal(JSON.parse(writes[1]).message, "later");
});

Deno.test("buffered sink: a full buffer is written before the line that fills it returns", () => {
  const { writes, writer } = recorder();
  const turn = manualTurn();
  // Lines of 10 characters plus the newline: 11 each, the bound is 33 = three lines.
  const buffered = bufferedSink(writer, { maxPending: 33, schedule: turn.schedule });
  buffered.sink("0123456789");
  buffered.sink("0123456789");
  assert.equal(buffered.pending, 22);
  assert.equal(writes.length, 0);
  buffered.sink("0123456789"); // reaches the bound exactly
  assert.equal(writes.length, 1);
  assert.equal(writes[0], "0123456789\n".repeat(3));
  assert.equal(buffered.pending, 0);
  assert.equal(turn.cancelled, 1, "the scheduled turn is cancelled once the buffer is written");
  for (let i = 0; i < 10; i++) {
    buffered.sink(`line ${i}....`.slice(0, 10));
    assert.ok(buffered.pending < 33, `pending ${buffered.pending} stays under the bound`);
  }
  buffered.flush();
  const all = writes.join("").split("\n").slice(0, -1);
  assert.equal(all.length, 13);
  assert.deepEqual(all.slice(3).map((l) => l.slice(0, 6)), [...Array(10).keys()].map((i) => `line ${i}`));
});

Deno.test("buffered sink: flush writes what is pending whole, through partial writes", () => {
  const { writes, writer } = recorder(5);
  const turn = manualTurn();
  const buffered = bufferedSink(writer, { schedule: turn.schedule });
  buffered.sink("é first");
  buffered.sink("second");
  buffered.flush();
  assert.equal(turn.scheduled, false);
  assert.equal(writes.join(""), "é first\nsecond\n");
  buffered.flush(); // nothing pending: no write
  assert.equal(writes.join(""), "é first\nsecond\n");
});

Deno.test("the process logger's last lines reach stderr when the process exits", async () => {
  // Many lines, then Deno.exit at once (which runs no `unload` listener): nothing may be lost.
  const script = `
    import { flushProcessLogs, processLogger } from ${
    JSON.stringify(new URL("../../src/ops/log.ts", import.meta.url).href)
  };
    const logger = processLogger("info");
    for (let i = 0; i < 2000; i++) logger.info("n", { i });
    logger.info("stopped");
    flushProcessLogs();
    Deno.exit(0);
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0);
  const lines = new TextDecoder().decode(out.stderr).trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 2001);
  assert.deepEqual(lines.slice(0, 2000).map((l) => l.i), [...Array(2000).keys()]);
  assert.equal(lines[2000].message, "stopped");
});

for (
  const [name, crash] of [
    ["an uncaught error", `setTimeout(() => { throw new Error("crash"); }, 0);`],
    ["an unhandled rejection", `Promise.reject(new Error("crash"));`],
  ]
) {
  Deno.test(`${name} still lets the buffered lines out, and the process still fails`, async () => {
    const script = `
    import { processLogger } from ${JSON.stringify(new URL("../../src/ops/log.ts", import.meta.url).href)};
    processLogger("info").error("before the crash");
    ${crash}
  `;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", script],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.notEqual(out.code, 0);
    // Deno prints the error first; the flushed line follows it.
    const lines = new TextDecoder().decode(out.stderr).split("\n").filter((l) => l.startsWith("{"));
    assert.deepEqual(lines.map((l) => JSON.parse(l).message), ["before the crash"]);
  });
}
