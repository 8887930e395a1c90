/**
 * Structured logging: one JSON object per line on stderr (human-readable text when stderr is a
 * terminal). The level filter follows the Dynamo runtime's `DYN_LOG` (`error|warn|info|debug|
 * trace`; a `target=level,...` filter keeps its first bare level). The logger is injected
 * everywhere so tests can capture lines.
 */

export type LogLevel = "error" | "warn" | "info" | "debug" | "trace";
export type LogFields = Record<string, unknown>;

export interface Logger {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  trace(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

/** Parses a `DYN_LOG` value; unknown or empty → `info`. */
export function parseLogLevel(value: string | undefined): LogLevel {
  if (!value) return "info";
  for (const part of value.split(",")) {
    const level = part.trim().toLowerCase();
    if (level in RANK) return level as LogLevel;
  }
  return "info";
}

export type LogSink = (line: string) => void;

const encoder = new TextEncoder();

/** Anything with Deno's `writeSync` contract: it may write fewer bytes than it was given. */
export interface SyncWriter {
  writeSync(bytes: Uint8Array): number;
}

/**
 * A sink writing each line whole: `writeSync` on a pipe may take only part of a buffer (a
 * full pipe, a signal), so the rest is written until nothing is left, and lines never
 * interleave or lose their tail.
 */
export function writerSink(writer: SyncWriter): LogSink {
  return (line) => {
    let bytes = encoder.encode(line + "\n");
    while (bytes.length > 0) {
      const written = writer.writeSync(bytes);
      if (written <= 0) return; // a closed stderr: nowhere left to log
      bytes = bytes.subarray(written);
    }
  };
}

const _stderrSink: LogSink = writerSink(Deno.stderr);

export interface LoggerOptions {
  level?: LogLevel;
  /** `json` (default) or `text` (for terminals). */
  format?: "json" | "text";
  sink?: LogSink;
  fields?: LogFields;
  clock?: () => Date;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const threshold = RANK[options.level ?? "info"];
  const format = options.format ?? "json";
  const sink = options.sink ?? _stderrSink;
  const clock = options.clock ?? (() => new Date());
  const base = options.fields ?? {};

  const emit = (level: LogLevel, message: string, fields?: LogFields) => {
    if (RANK[level] > threshold) return;
    const time = clock().toISOString();
    const all = { ...base, ...fields };
    if (format === "text") {
      const extra = Object.entries(all).map(([k, v]) => `${k}=${_textValue(v)}`).join(" ");
      sink(`${time} ${level.toUpperCase().padEnd(5)} ${message}${extra ? " " + extra : ""}`);
    } else {
      sink(_safeStringify({ time, level, message, ...all }));
    }
  };
  return {
    error: (m, f) => emit("error", m, f),
    warn: (m, f) => emit("warn", m, f),
    info: (m, f) => emit("info", m, f),
    debug: (m, f) => emit("debug", m, f),
    trace: (m, f) => emit("trace", m, f),
    child: (fields) => createLogger({ ...options, fields: { ...base, ...fields } }),
  };
}

/** A logger for the process: level from `DYN_LOG`, text on a terminal, JSON otherwise. */
export function processLogger(dynLog: string | undefined): Logger {
  let terminal = false;
  try {
    terminal = Deno.stderr.isTerminal();
  } catch { /* not a terminal */ }
  return createLogger({ level: parseLogLevel(dynLog), format: terminal ? "text" : "json" });
}

function _textValue(value: unknown): string {
  if (typeof value === "string") return /\s/.test(value) ? JSON.stringify(value) : value;
  return _safeStringify(value);
}

function _safeStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (typeof v === "bigint") return v.toString();
    if (v instanceof Error) return { name: v.name, message: v.message };
    return v;
  });
}
