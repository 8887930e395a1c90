/**
 * Python's `repr()` of the values `json.loads` builds, and pydantic-core's truncation of it in
 * `input_value=` (over 50 UTF-8 bytes: the first ≤ 25 and the last ≤ 24 bytes on character
 * boundaries, joined by `...`). Checked against CPython 3.11 / pydantic 2.13.
 */
import { PyFloat, PyInt, type PyValue } from "./py_value.ts";

export function pyRepr(value: PyValue): string {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "string") return pyStrRepr(value);
  if (value instanceof PyInt) return value.digits;
  if (value instanceof PyFloat) return pyFloatRepr(value.value);
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(", ")}]`;
  return `{${[...value].map(([k, v]) => `${pyStrRepr(k)}: ${pyRepr(v)}`).join(", ")}}`;
}

/** `str()`: the text itself for a string, `repr()` for everything else. */
export function pyStr(value: PyValue): string {
  return typeof value === "string" ? value : pyRepr(value);
}

// Python's str.isprintable() is false for these categories (space excepted).
const NOT_PRINTABLE = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]$/u;

export function pyStrRepr(text: string): string {
  const quote = _quoteFor(text);
  return quote + _escape(text, quote) + quote;
}

function _quoteFor(text: string): string {
  return text.includes("'") && !text.includes('"') ? '"' : "'";
}

function _escape(text: string, quote: string): string {
  let out = "";
  for (const char of text) {
    const cp = char.codePointAt(0)!;
    if (char === quote || char === "\\") out += `\\${char}`;
    else if (char === "\t") out += "\\t";
    else if (char === "\n") out += "\\n";
    else if (char === "\r") out += "\\r";
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${_hex(cp, 2)}`;
    else if (cp < 0x7f || !NOT_PRINTABLE.test(char)) out += char;
    else if (cp <= 0xff) out += `\\x${_hex(cp, 2)}`;
    else if (cp <= 0xffff) out += `\\u${_hex(cp, 4)}`;
    else out += `\\U${_hex(cp, 8)}`;
  }
  return out;
}

/** `repr(float)`: shortest round-trip digits; exponent form below 1e-4 and from 1e16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mantissa, exponentText] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exponent = Number(exponentText);
  const decimalPoint = exponent + 1;
  if (decimalPoint <= -4 || decimalPoint > 16) {
    const rest = digits.length > 1 ? `.${digits.slice(1)}` : "";
    const e = Math.abs(exponent).toString().padStart(2, "0");
    return `${sign}${digits[0]}${rest}e${exponent < 0 ? "-" : "+"}${e}`;
  }
  if (decimalPoint <= 0) return `${sign}0.${"0".repeat(-decimalPoint)}${digits}`;
  if (decimalPoint >= digits.length) return `${sign}${digits}${"0".repeat(decimalPoint - digits.length)}.0`;
  return `${sign}${digits.slice(0, decimalPoint)}.${digits.slice(decimalPoint)}`;
}

const encoder = new TextEncoder();
const TRUNCATE_OVER = 50;
const HEAD_BYTES = 25;
const TAIL_BYTES = 24;
/** A string longer than this is shown by its ends only (its repr is over 50 bytes anyway). */
const LONG_STRING = 128;
const KEEP = 64;

/**
 * pydantic-core's `input_value` display, `truncateRepr(pyRepr(value))`, in bounded memory: the
 * repr is streamed and only its first and last few dozen characters are kept, so a 30 MiB
 * string or a list of a million items costs no more than a short one.
 */
export function displayRepr(value: PyValue): string {
  const sink = new _Sink();
  _stream(value, sink);
  return sink.result();
}

class _Sink {
  #start = "";
  #tail = "";
  #long = false;
  write(piece: string): void {
    if (this.#start.length < KEEP) this.#start += piece;
    else this.#long = true;
    this.#tail += piece;
    if (this.#tail.length > 2 * KEEP) this.#tail = this.#tail.slice(-KEEP);
  }
  skip(): void {
    this.#long = true;
  }
  result(): string {
    if (!this.#long) return truncateRepr(this.#start);
    return `${_head(this.#start)}...${_tail(this.#tail)}`;
  }
}

function _stream(value: PyValue, sink: _Sink): void {
  if (typeof value === "string") {
    if (value.length <= LONG_STRING) return sink.write(pyStrRepr(value));
    // The same escaping as pyStrRepr, on the two ends only (cut outside surrogate pairs).
    const quote = _quoteFor(value);
    sink.write(quote + _escape(value.slice(0, _cut(value, KEEP)), quote));
    sink.skip();
    sink.write(_escape(value.slice(_cut(value, value.length - KEEP)), quote) + quote);
    return;
  }
  if (Array.isArray(value)) {
    sink.write("[");
    value.forEach((item, i) => {
      if (i > 0) sink.write(", ");
      _stream(item, sink);
    });
    return sink.write("]");
  }
  if (value instanceof Map) {
    sink.write("{");
    let first = true;
    for (const [key, item] of value) {
      if (!first) sink.write(", ");
      first = false;
      _stream(key, sink);
      sink.write(": ");
      _stream(item, sink);
    }
    return sink.write("}");
  }
  sink.write(pyRepr(value));
}

/** An index at or after `at` that does not split a surrogate pair. */
function _cut(text: string, at: number): number {
  const c = text.charCodeAt(at);
  const before = text.charCodeAt(at - 1);
  return c >= 0xdc00 && c <= 0xdfff && before >= 0xd800 && before <= 0xdbff ? at + 1 : at;
}

/** pydantic-core's truncation of a repr it has in full. */
export function truncateRepr(repr: string): string {
  if (encoder.encode(repr).length <= TRUNCATE_OVER) return repr;
  return `${_head(repr)}...${_tail(repr)}`;
}

/** The longest prefix of at most 25 UTF-8 bytes. */
function _head(text: string): string {
  let head = "";
  let bytes = 0;
  for (const char of text) {
    const n = encoder.encode(char).length;
    if (bytes + n > HEAD_BYTES) break;
    head += char;
    bytes += n;
  }
  return head;
}

/** The longest suffix of at most 24 UTF-8 bytes (24 bytes are at most 48 UTF-16 units). */
function _tail(text: string): string {
  const end = [...text.slice(-2 * TAIL_BYTES)];
  let tail = "";
  let bytes = 0;
  for (let i = end.length - 1; i >= 0; i--) {
    const n = encoder.encode(end[i]).length;
    if (bytes + n > TAIL_BYTES) break;
    tail = end[i] + tail;
    bytes += n;
  }
  return tail;
}

function _hex(cp: number, width: number): string {
  return cp.toString(16).padStart(width, "0");
}
