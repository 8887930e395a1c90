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
 * Writes all of `bytes`: `writeSync` on a pipe may take only part of a buffer (a full pipe, a
 * signal), so the rest is written until nothing is left, and lines never lose their tail.
 */
function writeWhole(writer: SyncWriter, bytes: Uint8Array): void {
  while (bytes.length > 0) {
    const written = writer.writeSync(bytes);
    if (written <= 0) return; // a closed stderr: nowhere left to log
    bytes = bytes.subarray(written);
  }
}

/** A sink writing each line whole, at once (one write per line). */
export function writerSink(writer: SyncWriter): LogSink {
  return (line) => writeWhole(writer, encoder.encode(line + "\n"));
}

export interface BufferedSink {
  sink: LogSink;
  /** Writes every line taken so far, in order; nothing is left pending afterwards. */
  flush(): void;
  /** Characters taken and not yet written. */
  readonly pending: number;
}

export interface BufferedSinkOptions {
  /** Pending characters at which a line is written at once, before `sink` returns. */
  maxPending?: number;
  /** Runs `flush` later; returns how to cancel that (an explicit `flush` comes first). */
  schedule?: (flush: () => void) => () => void;
}

/** The default bound: a burst's worth of lines, small enough that a crash loses little. */
export const LOG_BUFFER_CHARS = 64 * 1024;

const nextTurn = (flush: () => void): () => void => {
  const timer = setTimeout(flush, 0);
  return () => clearTimeout(timer);
};

/**
 * A sink that gathers the lines of one turn of the event loop and writes them with one
 * `writeSync`: a line per request was a synchronous syscall per request (`--cpu-prof`). Lines
 * keep their order and are never dropped: the buffer is written when it reaches `maxPending`
 * (so a stuck stderr blocks, as an unbuffered write would, instead of growing memory), on the
 * next turn, and on `flush` (the process calls it before it exits).
 */
export function bufferedSink(writer: SyncWriter, options: BufferedSinkOptions = {}): BufferedSink {
  const max = options.maxPending ?? LOG_BUFFER_CHARS;
  const schedule = options.schedule ?? nextTurn;
  let lines: string[] = [];
  let pending = 0;
  let cancel: (() => void) | undefined;
  const flush = () => {
    cancel?.();
    cancel = undefined;
    if (lines.length === 0) return;
    const text = lines.join("");
    lines = [];
    pending = 0;
    writeWhole(writer, encoder.encode(text));
  };
  const sink = (line: string) => {
    lines.push(line + "\n");
    pending += line.length + 1;
    if (pending >= max) flush();
    else cancel ??= schedule(flush);
  };
  return {
    sink,
    flush,
    get pending() {
      return pending;
    },
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

/** Methods on a prototype: a child logger is one small object, not a set of closures. */
class FieldLogger implements Logger {
  #threshold: number;
  #text: boolean;
  #sink: LogSink;
  #clock: () => Date;
  #base: LogFields | undefined;

  constructor(threshold: number, text: boolean, sink: LogSink, clock: () => Date, base?: LogFields) {
    this.#threshold = threshold;
    this.#text = text;
    this.#sink = sink;
    this.#clock = clock;
    this.#base = base;
  }

  error(message: string, fields?: LogFields): void {
    this.#emit(0, "error", message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    this.#emit(1, "warn", message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.#emit(2, "info", message, fields);
  }
  debug(message: string, fields?: LogFields): void {
    this.#emit(3, "debug", message, fields);
  }
  trace(message: string, fields?: LogFields): void {
    this.#emit(4, "trace", message, fields);
  }

  child(fields: LogFields): Logger {
    return new FieldLogger(this.#threshold, this.#text, this.#sink, this.#clock, {
      ...this.#base,
      ...fields,
    });
  }

  #emit(rank: number, level: LogLevel, message: string, fields?: LogFields): void {
    if (rank > this.#threshold) return;
    const time = this.#clock().toISOString();
    const all = this.#base ? { ...this.#base, ...fields } : fields;
    if (this.#text) {
      const extra = all ? Object.entries(all).map(([k, v]) => `${k}=${_textValue(v)}`).join(" ") : "";
      this.#sink(`${time} ${level.toUpperCase().padEnd(5)} ${message}${extra ? " " + extra : ""}`);
    } else {
      this.#sink(_safeStringify({ time, level, message, ...all }));
    }
  }
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return new FieldLogger(
    RANK[options.level ?? "info"],
    options.format === "text",
    options.sink ?? _stderrSink,
    options.clock ?? (() => new Date()),
    options.fields && Object.keys(options.fields).length > 0 ? { ...options.fields } : undefined,
  );
}

let _processSink: BufferedSink | undefined;

/**
 * A logger for the process: level from `DYN_LOG`, text on a terminal, JSON otherwise, through
 * one buffered stderr sink (call `flushProcessLogs` before `Deno.exit`, which skips `unload`).
 */
export function processLogger(dynLog: string | undefined): Logger {
  let terminal = false;
  try {
    terminal = Deno.stderr.isTerminal();
  } catch { /* not a terminal */ }
  if (!_processSink) {
    const buffered = bufferedSink(Deno.stderr);
    _processSink = buffered;
    // A crash (an uncaught error or rejection) or the end of the event loop: the buffered lines
    // still reach stderr. The listeners only flush, so a crash stays a crash.
    for (const event of ["unload", "error", "unhandledrejection"]) {
      globalThis.addEventListener(event, buffered.flush);
    }
  }
  return createLogger({
    level: parseLogLevel(dynLog),
    format: terminal ? "text" : "json",
    sink: _processSink.sink,
  });
}

/** Writes what the process logger still holds (before `Deno.exit`). */
export function flushProcessLogs(): void {
  _processSink?.flush();
}

function _textValue(value: unknown): string {
  if (typeof value === "string") return /\s/.test(value) ? JSON.stringify(value) : value;
  return _safeStringify(value);
}

/** The replacer costs a call per key; most lines hold only strings, numbers and plain objects. */
function _safeStringify(value: unknown): string {
  if (_plain(value, 0)) return JSON.stringify(value);
  return JSON.stringify(value, (_key, v) => {
    if (typeof v === "bigint") return v.toString();
    if (v instanceof Error) return { name: v.name, message: v.message };
    return v;
  });
}

/** Whether JSON.stringify alone gives what the replacer would: no bigint, no Error, anywhere. */
function _plain(value: unknown, depth: number): boolean {
  if (value === null) return true;
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
    case "undefined":
      return true;
    case "object": {
      if (depth > 4) return false;
      if (Array.isArray(value)) {
        for (const item of value) if (!_plain(item, depth + 1)) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key in value) {
        if (!_plain((value as Record<string, unknown>)[key], depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}
