/**
 * Python values as `json.loads` builds them, for pydantic-identical validation and messages:
 * ints and floats stay apart (`1` and `1.0` validate and print differently in Python), ints keep
 * every digit, dicts keep insertion order.
 */

/** A Python `int`: its decimal digits (normalized, `-` for negatives), exact at any size. */
export class PyInt {
  constructor(readonly digits: string) {}
  /** The nearest double (exact up to 2^53). */
  get value(): number {
    return Number(this.digits);
  }
}

/** A Python `float`. */
export class PyFloat {
  constructor(readonly value: number) {}
}

export type PyDict = Map<string, PyValue>;
export type PyValue = null | boolean | string | PyInt | PyFloat | PyValue[] | PyDict;

/**
 * A JavaScript value (already decoded by the request plane) as Python would hold it. After
 * `JSON.parse` nothing tells `1.0` from `1`, nor the digits of an int beyond 2^53: a number is
 * taken as JavaScript (and Python's json.dumps for floats) writes it back, so an integral value
 * below 1e21 is an `int` with those digits and anything written with an exponent is a `float`.
 */
export function fromJs(value: unknown): PyValue {
  if (value === null || value === undefined) return null;
  if (typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") {
    const text = String(value);
    return Number.isInteger(value) && !text.includes("e")
      ? new PyInt(text === "-0" ? "0" : text)
      : new PyFloat(value);
  }
  if (typeof value === "bigint") return new PyInt(value.toString());
  if (Array.isArray(value)) return value.map(fromJs);
  if (typeof value === "object") {
    const dict: PyDict = new Map();
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) dict.set(key, fromJs(item));
    return dict;
  }
  return String(value);
}

/** Back to plain JavaScript (numbers as doubles), for the fields the service passes on. */
export function toJs(value: PyValue): unknown {
  if (value instanceof PyInt || value instanceof PyFloat) return value.value;
  if (Array.isArray(value)) return value.map(toJs);
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of value) {
      Object.defineProperty(out, key, {
        value: toJs(item),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return value;
}

/** Python's `type(value).__name__`. */
export function pyTypeName(value: PyValue): string {
  if (value === null) return "NoneType";
  if (typeof value === "boolean") return "bool";
  if (typeof value === "string") return "str";
  if (value instanceof PyInt) return "int";
  if (value instanceof PyFloat) return "float";
  if (Array.isArray(value)) return "list";
  return "dict";
}

export function isDict(value: PyValue): value is PyDict {
  return value instanceof Map;
}
