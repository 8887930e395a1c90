import assert from "node:assert/strict";
import { createLogger, parseLogLevel } from "../../src/ops/log.ts";

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
