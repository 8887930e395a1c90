/** The hand-written setting checks that replaced zod at start: boundaries and the exact texts. */
import assert from "node:assert/strict";
import { choice, httpUrls, intIn, Issues } from "../../src/config/setting_checks.ts";
import { parseControlHeader } from "../../src/runtime/control_header.ts";
import { ConfigError, ProtocolError } from "../../src/errors.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

function thrown(issues: Issues): string {
  try {
    issues.throwIfAny();
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message;
  }
  return "";
}

Deno.test("intIn: digits only, both bounds inclusive, white space trimmed, unset stays unset", () => {
  const issues = new Issues();
  assert.equal(intIn(issues, "P", undefined, 0, 9), undefined);
  assert.equal(intIn(issues, "P", "0", 0, 9), 0);
  assert.equal(intIn(issues, "P", " 9 ", 0, 9), 9);
  assert.equal(intIn(issues, "P", "007", 0, 9), 7);
  assert.equal(thrown(issues), "");
  for (const bad of ["10", "-1", "1e1", "0x1", "1.0", "", " "]) intIn(issues, "P", bad, 0, 9);
  assert.equal(thrown(issues), Array(7).fill("P: P must be an integer between 0 and 9").join("; "));
});

Deno.test("choice: trimmed and lower-cased; the refusal sees that value; unset is the fallback", () => {
  const issues = new Issues();
  const refuse = (v: string) => `got "${v}"`;
  assert.equal(choice(issues, "M", undefined, "a", ["a", "b"], refuse), "a");
  assert.equal(choice(issues, "M", " B ", "a", ["a", "b"], refuse), "b");
  choice(issues, "M", " Zz ", "a", ["a", "b"], refuse);
  assert.equal(thrown(issues), 'M: got "zz"');
});

Deno.test("httpUrls: scheme:// required, empty entries dropped, one message per bad entry", () => {
  const issues = new Issues();
  assert.deepEqual(httpUrls(issues, "E", " http://a:1 ,, HTTPS://b ", "bad"), ["http://a:1", "HTTPS://b"]);
  assert.deepEqual(httpUrls(issues, "E", "http://a\tb:1", "bad"), ["http://ab:1"]);
  assert.equal(thrown(issues), "");
  httpUrls(issues, "E", "http:x, localhost:2379, ftp://x", "bad");
  assert.equal(thrown(issues), "E: bad; E: bad; E: bad");
  const empty = new Issues();
  httpUrls(empty, "E", " , ", "bad");
  assert.equal(thrown(empty), "E: E must name at least one endpoint");
});

Deno.test("control header: known fields kept, the rest dropped, the first problem named", () => {
  const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  const info = { transport: "tcp_server", info: "{}" };
  assert.deepEqual(parseControlHeader(bytes({ id: "1", connection_info: { ...info, x: 1 }, extra: 2 })), {
    id: "1",
    connection_info: info,
  });
  assert.deepEqual(
    parseControlHeader(bytes({ id: "1", connection_info: info, payload_codec: "json", request_type: "r" })),
    { id: "1", request_type: "r", connection_info: info, payload_codec: "json" },
  );
  const problem = (v: unknown) => {
    try {
      parseControlHeader(bytes(v));
    } catch (error) {
      assert.ok(error instanceof ProtocolError);
      return error.message;
    }
    return "";
  };
  assert.equal(problem([]), "control header is invalid: Invalid input: expected object, received array");
  assert.equal(
    problem({ id: 1, connection_info: info }),
    "control header is invalid: Invalid input: expected string, received number at id",
  );
  assert.equal(
    problem({ id: "1", connection_info: null }),
    "control header is invalid: Invalid input: expected object, received null at connection_info",
  );
  assert.equal(
    problem({ id: "1", connection_info: { transport: "t" } }),
    "control header is invalid: Invalid input: expected string, received undefined at connection_info.info",
  );
  assert.throws(() => parseControlHeader(undefined), /request has no control header/);
});
