import assert from "node:assert/strict";
import { createLogger, parseLogLevel, writerSink } from "../../src/ops/log.ts";

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
