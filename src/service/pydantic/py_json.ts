/**
 * `json.loads` of CPython 3.11 (the C scanner), as upstream's `ScaleRequest.parse_raw` runs it:
 * the same accepted texts (NaN, Infinity, -Infinity included) and the same `JSONDecodeError`
 * texts and positions (`<msg>: line L column C (char P)`, positions in code points).
 */
import { type PyDict, PyFloat, PyInt, type PyValue } from "./py_value.ts";

/** What `parse_raw` turns into a `__root__` error: the exception text and pydantic's type. */
export class PyJsonError extends Error {
  constructor(message: string, readonly errorType: "value_error.jsondecode" | "value_error") {
    super(message);
    this.name = "PyJsonError";
  }
}

/** CPython's default `sys.get_int_max_str_digits()`. */
const INT_MAX_STR_DIGITS = 4300;
/**
 * Nesting bound (CPython raises RecursionError near its recursion limit of 1000, which upstream
 * does not turn into a validation error); ours answers a clear error instead of a stack overflow.
 */
export const MAX_JSON_DEPTH = 900;

export function pyJsonLoads(text: string): PyValue {
  if (text.charCodeAt(0) === 0xfeff) _fail(text, "Unexpected UTF-8 BOM (decode using utf-8-sig)", 0);
  const scanner = new _Scanner(text);
  const start = scanner.skipWhitespace(0);
  const [value, end] = scanner.scan(start, 0);
  const after = scanner.skipWhitespace(end);
  if (after !== text.length) _fail(text, "Extra data", after);
  return value;
}

class _StopIteration {
  constructor(readonly index: number) {}
}

class _Scanner {
  constructor(private readonly s: string) {}

  skipWhitespace(index: number): number {
    const s = this.s;
    while (index < s.length) {
      const c = s.charCodeAt(index);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      index++;
    }
    return index;
  }

  /** `scan_once`: a value at `index`, or "Expecting value" where the value should start. */
  scan(index: number, depth: number): [PyValue, number] {
    try {
      return this.#scanOnce(index, depth);
    } catch (error) {
      if (error instanceof _StopIteration) _fail(this.s, "Expecting value", error.index);
      throw error;
    }
  }

  #scanOnce(index: number, depth: number): [PyValue, number] {
    const s = this.s;
    if (index >= s.length) throw new _StopIteration(index);
    if (depth >= MAX_JSON_DEPTH) {
      throw new PyJsonError(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`, "value_error");
    }
    switch (s[index]) {
      case '"':
        return this.#string(index + 1);
      case "{":
        return this.#object(index + 1, depth + 1);
      case "[":
        return this.#array(index + 1, depth + 1);
      case "n":
        if (s.startsWith("null", index)) return [null, index + 4];
        break;
      case "t":
        if (s.startsWith("true", index)) return [true, index + 4];
        break;
      case "f":
        if (s.startsWith("false", index)) return [false, index + 5];
        break;
      case "N":
        if (s.startsWith("NaN", index)) return [new PyFloat(NaN), index + 3];
        break;
      case "I":
        if (s.startsWith("Infinity", index)) return [new PyFloat(Infinity), index + 8];
        break;
      case "-":
        if (s.startsWith("-Infinity", index)) return [new PyFloat(-Infinity), index + 9];
        break;
    }
    return this.#number(index);
  }

  #object(index: number, depth: number): [PyDict, number] {
    const s = this.s;
    const dict: PyDict = new Map();
    index = this.skipWhitespace(index);
    if (s[index] === "}") return [dict, index + 1];
    while (true) {
      if (s[index] !== '"') _fail(s, "Expecting property name enclosed in double quotes", index);
      const [key, afterKey] = this.#string(index + 1);
      index = this.skipWhitespace(afterKey);
      if (s[index] !== ":") _fail(s, "Expecting ':' delimiter", index);
      index = this.skipWhitespace(index + 1);
      const [value, afterValue] = this.#scanOnce(index, depth);
      dict.set(key, value);
      index = this.skipWhitespace(afterValue);
      if (s[index] === "}") return [dict, index + 1];
      if (s[index] !== ",") _fail(s, "Expecting ',' delimiter", index);
      index = this.skipWhitespace(index + 1);
    }
  }

  #array(index: number, depth: number): [PyValue[], number] {
    const s = this.s;
    const list: PyValue[] = [];
    index = this.skipWhitespace(index);
    if (s[index] === "]") return [list, index + 1];
    while (true) {
      const [value, afterValue] = this.#scanOnce(index, depth);
      list.push(value);
      index = this.skipWhitespace(afterValue);
      if (s[index] === "]") return [list, index + 1];
      if (s[index] !== ",") _fail(s, "Expecting ',' delimiter", index);
      index = this.skipWhitespace(index + 1);
    }
  }

  /** `scanstring` with strict=True; `index` is just past the opening quote. */
  #string(index: number): [string, number] {
    const s = this.s;
    const begin = index - 1;
    const chunks: string[] = [];
    let end = index;
    while (true) {
      let next = end;
      let c = -1;
      for (; next < s.length; next++) {
        c = s.charCodeAt(next);
        if (c === 0x22 || c === 0x5c) break;
        if (c <= 0x1f) _fail(s, "Invalid control character at", next);
      }
      if (next >= s.length) _fail(s, "Unterminated string starting at", begin);
      chunks.push(s.slice(end, next));
      next++;
      if (c === 0x22) return [chunks.join(""), next];
      if (next === s.length) _fail(s, "Unterminated string starting at", begin);
      const escape = s[next];
      if (escape !== "u") {
        end = next + 1;
        const simple = _SIMPLE_ESCAPES[escape];
        if (simple === undefined) _fail(s, "Invalid \\escape", end - 2);
        chunks.push(simple);
        continue;
      }
      next++;
      end = next + 4;
      if (end >= s.length) _fail(s, "Invalid \\uXXXX escape", next - 1);
      const unit = _hex4(s, next);
      if (unit < 0) _fail(s, "Invalid \\uXXXX escape", end - 5);
      let decoded = String.fromCharCode(unit);
      if (unit >= 0xd800 && unit <= 0xdbff && end + 6 < s.length && s[end] === "\\" && s[end + 1] === "u") {
        const low = _hex4(s, end + 2);
        if (low < 0) _fail(s, "Invalid \\uXXXX escape", end + 1);
        if (low >= 0xdc00 && low <= 0xdfff) {
          decoded += String.fromCharCode(low);
          end += 6;
        }
      }
      chunks.push(decoded);
    }
  }

  #number(start: number): [PyValue, number] {
    const s = this.s;
    const last = s.length - 1;
    let index = start;
    const isDigit = (i: number) => i <= last && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39;
    if (s[index] === "-") {
      index++;
      if (index > last) throw new _StopIteration(start);
    }
    if (isDigit(index) && s[index] !== "0") {
      while (isDigit(index)) index++;
    } else if (s[index] === "0") {
      index++;
    } else {
      throw new _StopIteration(start);
    }
    let isFloat = false;
    if (index < last && s[index] === "." && isDigit(index + 1)) {
      isFloat = true;
      index += 2;
      while (isDigit(index)) index++;
    }
    if (index < last && (s[index] === "e" || s[index] === "E")) {
      const eStart = index;
      index++;
      if (index < last && (s[index] === "-" || s[index] === "+")) index++;
      while (isDigit(index)) index++;
      if (isDigit(index - 1)) isFloat = true;
      else index = eStart;
    }
    const literal = s.slice(start, index);
    if (isFloat) return [new PyFloat(Number(literal)), index];
    const digits = literal.replace(/^-/, "").length;
    if (digits > INT_MAX_STR_DIGITS) {
      throw new PyJsonError(
        `Exceeds the limit (${INT_MAX_STR_DIGITS} digits) for integer string conversion: value has ` +
          `${digits} digits; use sys.set_int_max_str_digits() to increase the limit`,
        "value_error",
      );
    }
    return [new PyInt(BigInt(literal).toString()), index];
  }
}

const _SIMPLE_ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

function _hex4(s: string, at: number): number {
  const text = s.slice(at, at + 4);
  return /^[0-9a-fA-F]{4}$/.test(text) ? parseInt(text, 16) : -1;
}

/** `JSONDecodeError`: position, line and column in code points, as Python counts them. */
function _fail(s: string, message: string, utf16Index: number): never {
  const before = s.slice(0, utf16Index);
  const pos = _codePoints(before);
  const lastNewline = before.lastIndexOf("\n");
  const line = (before.match(/\n/g)?.length ?? 0) + 1;
  const column = lastNewline < 0 ? pos + 1 : pos - _codePoints(before.slice(0, lastNewline));
  throw new PyJsonError(`${message}: line ${line} column ${column} (char ${pos})`, "value_error.jsondecode");
}

function _codePoints(text: string): number {
  let count = text.length;
  for (let i = 0; i < text.length - 1; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        count--;
        i++;
      }
    }
  }
  return count;
}
