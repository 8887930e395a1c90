/**
 * pydantic 2.13's lax (python-mode) validators for the field types of `ScaleRequest`, as
 * `model_validate` applies them to what `json.loads` returns. Each returns the value or one error
 * (type and message exactly as pydantic-core words them).
 */
import { isDict, PyFloat, PyInt, type PyValue } from "./py_value.ts";

export type Lax<T> = { ok: true; value: T } | { ok: false; type: string; msg: string };

const ok = <T>(value: T): Lax<T> => ({ ok: true, value });
const err = (type: string, msg: string): Lax<never> => ({ ok: false, type, msg });

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** pydantic-core reads a str as UTF-8 before parsing it as a number, bool or enum value. */
const notUnicode = (text: string): Lax<never> | undefined =>
  LONE_SURROGATE.test(text)
    ? err("string_unicode", "Input should be a valid string, unable to parse raw data as a unicode string")
    : undefined;

export function laxStr(input: PyValue): Lax<string> {
  return typeof input === "string" ? ok(input) : err("string_type", "Input should be a valid string");
}

const I64_LIMIT = 2 ** 63;
const INT_STRING = /^[+-]?\d+(?:_\d+)*(?:\.0+)?$/;

/** `int`: ints, bools, integral finite floats within i64, integer strings (`_`, `.0` allowed). */
export function laxInt(input: PyValue): Lax<number> {
  if (input instanceof PyInt) return ok(input.value);
  if (typeof input === "boolean") return ok(input ? 1 : 0);
  if (input instanceof PyFloat) {
    const x = input.value;
    if (!Number.isFinite(x)) return err("finite_number", "Input should be a finite number");
    if (x >= I64_LIMIT || x < -I64_LIMIT) {
      return err("int_parsing_size", "Unable to parse input string as an integer, exceeded maximum size");
    }
    if (!Number.isInteger(x)) {
      return err("int_from_float", "Input should be a valid integer, got a number with a fractional part");
    }
    return ok(x === 0 ? 0 : x);
  }
  if (typeof input === "string") {
    const bad = notUnicode(input);
    if (bad) return bad;
    const text = input.trim();
    if (!INT_STRING.test(text)) {
      return err("int_parsing", "Input should be a valid integer, unable to parse string as an integer");
    }
    return ok(Number(text.replace(/_/g, "").replace(/\.0+$/, "")));
  }
  return err("int_type", "Input should be a valid integer");
}

const TRUE_WORDS = new Set(["1", "on", "t", "true", "y", "yes"]);
const FALSE_WORDS = new Set(["0", "off", "f", "false", "n", "no"]);

/** `bool`: bools, 0/1 (int or float), the usual words in any case (not stripped). */
export function laxBool(input: PyValue): Lax<boolean> {
  if (typeof input === "boolean") return ok(input);
  if (input instanceof PyInt) {
    if (input.digits === "0" || input.digits === "1") return ok(input.digits === "1");
    // Ints beyond i64 never reach pydantic-core's int → bool parsing.
    const big = BigInt(input.digits);
    if (big >= 2n ** 63n || big < -(2n ** 63n)) return err("bool_type", "Input should be a valid boolean");
    return err("bool_parsing", "Input should be a valid boolean, unable to interpret input");
  }
  if (input instanceof PyFloat && (input.value === 0 || input.value === 1)) return ok(input.value === 1);
  if (typeof input === "string") {
    const bad = notUnicode(input);
    if (bad) return bad;
    const word = input.toLowerCase();
    if (TRUE_WORDS.has(word)) return ok(true);
    if (FALSE_WORDS.has(word)) return ok(false);
    return err("bool_parsing", "Input should be a valid boolean, unable to interpret input");
  }
  return err("bool_type", "Input should be a valid boolean");
}

const FLOAT_STRING =
  /^[+-]?(?:(?:\d+(?:_\d+)*(?:\.(?:\d+(?:_\d+)*)?)?|\.\d+(?:_\d+)*)(?:[eE][+-]?\d+(?:_\d+)*)?|inf(?:inity)?|nan)$/i;

/** `float`: ints, floats, bools, Python float() strings (inf, nan, `_` between digits). */
export function laxFloat(input: PyValue): Lax<number> {
  if (input instanceof PyInt || input instanceof PyFloat) return ok(input.value);
  if (typeof input === "boolean") return ok(input ? 1 : 0);
  if (typeof input === "string") {
    const bad = notUnicode(input);
    if (bad) return bad;
    const text = input.trim();
    if (!FLOAT_STRING.test(text)) {
      return err("float_parsing", "Input should be a valid number, unable to parse string as a number");
    }
    const plain = text.replace(/_/g, "").toLowerCase();
    if (/^[+-]?inf(inity)?$/.test(plain)) return ok(plain.startsWith("-") ? -Infinity : Infinity);
    if (/^[+-]?nan$/.test(plain)) return ok(NaN);
    return ok(Number(plain));
  }
  return err("float_type", "Input should be a valid number");
}

export function laxDict(input: PyValue): Lax<Map<string, PyValue>> {
  return isDict(input) ? ok(input) : err("dict_type", "Input should be a valid dictionary");
}

export function laxList(input: PyValue): Lax<PyValue[]> {
  return Array.isArray(input) ? ok(input) : err("list_type", "Input should be a valid list");
}

/** A `str` Enum: exactly one of the values; the message lists them as pydantic does. */
export function laxEnum<T extends string>(values: readonly T[]): (input: PyValue) => Lax<T> {
  const quoted = values.map((v) => `'${v}'`);
  const expected = quoted.length > 1 ? `${quoted.slice(0, -1).join(", ")} or ${quoted.at(-1)}` : quoted[0];
  return (input) => {
    if (typeof input === "string" && (values as readonly string[]).includes(input)) return ok(input as T);
    return (typeof input === "string" ? notUnicode(input) : undefined) ??
      err("enum", `Input should be ${expected}`);
  };
}

/** `Optional[X]`: None, else X. */
export function optional<T>(inner: (input: PyValue) => Lax<T>): (input: PyValue) => Lax<T | null> {
  return (input) => (input === null ? ok(null) : inner(input));
}
