import assert from "node:assert/strict";
import { InvalidRequest } from "../../src/errors.ts";
import { parseScaleRequest } from "../../src/service/contract.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const VALID = {
  caller_namespace: "ns-a",
  graph_deployment_name: "llama",
  k8s_namespace: "prod",
  target_replicas: [{ sub_component_type: "prefill", desired_replicas: 2 }],
};

function invalid(input: unknown): string {
  try {
    parseScaleRequest(input);
  } catch (error) {
    assert.ok(error instanceof InvalidRequest, `expected InvalidRequest, got ${error}`);
    assert.match(error.message, /^Invalid request: /);
    return error.message;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

Deno.test("a request as an object gets upstream's defaults", () => {
  assert.deepEqual(parseScaleRequest(VALID), {
    ...VALID,
    target_replicas: [{ sub_component_type: "prefill", component_name: null, desired_replicas: 2 }],
    blocking: false,
    timestamp: null,
    predicted_load: null,
  });
});

Deno.test("a request as JSON text (model_dump_json) parses like the object", () => {
  assert.deepEqual(parseScaleRequest(JSON.stringify(VALID)), parseScaleRequest(VALID));
});

Deno.test("unknown fields are ignored at every level", () => {
  const parsed = parseScaleRequest({
    ...VALID,
    priority: 3,
    target_replicas: [{ ...VALID.target_replicas[0], gpu_type: "h100" }],
  });
  assert.equal("priority" in parsed, false);
  assert.equal("gpu_type" in parsed.target_replicas[0], false);
});

Deno.test("lax coercion as pydantic: integer strings, integral floats, boolean words", () => {
  const parsed = parseScaleRequest({
    ...VALID,
    blocking: "true",
    timestamp: "1730000000.25",
    target_replicas: [
      { sub_component_type: "prefill", desired_replicas: "3" },
      { sub_component_type: "decode", desired_replicas: 4.0, component_name: "Dec" },
    ],
  });
  assert.equal(parsed.blocking, true);
  assert.equal(parsed.timestamp, 1730000000.25);
  assert.deepEqual(parsed.target_replicas.map((t) => t.desired_replicas), [3, 4]);
  assert.equal(parseScaleRequest({ ...VALID, blocking: 0 }).blocking, false);
});

Deno.test("the full planner payload (timestamp, predicted_load with nulls) is accepted", () => {
  const parsed = parseScaleRequest({
    ...VALID,
    blocking: false,
    timestamp: 1730000000.5,
    predicted_load: { num_requests: 10.5, isl: null, osl: 128 },
  });
  assert.deepEqual(parsed.predicted_load, { num_requests: 10.5, isl: null, osl: 128 });
});

Deno.test("empty target_replicas is valid at schema level", () => {
  assert.deepEqual(parseScaleRequest({ ...VALID, target_replicas: [] }).target_replicas, []);
});

const URL = "https://errors.pydantic.dev/2.13/v";

Deno.test("missing required fields: pydantic's text, the input dict repr'd and truncated", () => {
  const input = `{'caller_namespace': '${"x".repeat(100)}'}`;
  const shown = `${input.slice(0, 25)}...${input.slice(-24)}`;
  assert.equal(
    invalid({ caller_namespace: "x".repeat(100) }),
    "Invalid request: 3 validation errors for ScaleRequest\n" +
      ["graph_deployment_name", "k8s_namespace", "target_replicas"].map((field) =>
        `${field}\n  Field required [type=missing, input_value=${shown}, input_type=dict]\n` +
        `    For further information visit ${URL}/missing`
      ).join("\n"),
  );
});

Deno.test("enums match exactly", () => {
  assert.equal(
    invalid({ ...VALID, target_replicas: [{ sub_component_type: "Prefill", desired_replicas: 1 }] }),
    "Invalid request: 1 validation error for ScaleRequest\ntarget_replicas.0.sub_component_type\n" +
      "  Input should be 'prefill' or 'decode' [type=enum, input_value='Prefill', input_type=str]\n" +
      `    For further information visit ${URL}/enum`,
  );
});

Deno.test("negative counts pass validation (pydantic has no bound: the handler refuses them)", () => {
  const parsed = parseScaleRequest({
    ...VALID,
    target_replicas: [{ sub_component_type: "decode", desired_replicas: -1 }],
  });
  assert.equal(parsed.target_replicas[0].desired_replicas, -1);
});

Deno.test("fractional, unparsable and oversized replica counts: pydantic's int errors", () => {
  const one = (value: unknown, line: string, type: string) =>
    assert.equal(
      invalid({ ...VALID, target_replicas: [{ sub_component_type: "decode", desired_replicas: value }] }),
      `Invalid request: 1 validation error for ScaleRequest\ntarget_replicas.0.desired_replicas\n  ${line}\n` +
        `    For further information visit ${URL}/${type}`,
    );
  one(
    1.5,
    "Input should be a valid integer, got a number with a fractional part [type=int_from_float, input_value=1.5, input_type=float]",
    "int_from_float",
  );
  one(
    "x",
    "Input should be a valid integer, unable to parse string as an integer [type=int_parsing, input_value='x', input_type=str]",
    "int_parsing",
  );
  // From JSON text (the planner's model_dump_json()): 1e20 is a float there, too big for an int.
  // An object payload was decoded by JSON.parse, where 1e20 is integral (see README).
  assert.equal(
    invalid(
      JSON.stringify({ ...VALID, target_replicas: [{ sub_component_type: "decode" }] }).replace(
        '"decode"',
        '"decode", "desired_replicas": 1e20',
      ),
    ),
    "Invalid request: 1 validation error for ScaleRequest\ntarget_replicas.0.desired_replicas\n" +
      "  Unable to parse input string as an integer, exceeded maximum size [type=int_parsing_size, " +
      "input_value=1e+20, input_type=float]\n" +
      `    For further information visit ${URL}/int_parsing_size`,
  );
  one(
    null,
    "Input should be a valid integer [type=int_type, input_value=None, input_type=NoneType]",
    "int_type",
  );
});

Deno.test("wrong types are refused: strings are not coerced from numbers", () => {
  assert.equal(
    invalid({ ...VALID, caller_namespace: 5 }),
    "Invalid request: 1 validation error for ScaleRequest\ncaller_namespace\n" +
      "  Input should be a valid string [type=string_type, input_value=5, input_type=int]\n" +
      `    For further information visit ${URL}/string_type`,
  );
  assert.match(
    invalid({ ...VALID, blocking: "maybe" }),
    /\nblocking\n {2}Input should be a valid boolean, unable/,
  );
});

Deno.test("non-object payloads: Python's str() of the value; bad JSON text: json.loads' message", () => {
  assert.equal(
    invalid("not json"),
    "Invalid request: 1 validation error for ScaleRequest\n__root__\n" +
      "  Expecting value: line 1 column 1 (char 0) [type=value_error.jsondecode, input_value='not json', input_type=str]",
  );
  assert.equal(
    invalid("[1,2]"),
    "Invalid request: 1 validation error for ScaleRequest\n" +
      "  Input should be a valid dictionary or instance of ScaleRequest [type=model_type, input_value=[1, 2], input_type=list]\n" +
      `    For further information visit ${URL}/model_type`,
  );
  assert.equal(invalid(42), "Invalid request: 42");
  assert.equal(invalid(null), "Invalid request: None");
  assert.equal(invalid([1, "a", true, { b: null }]), "Invalid request: [1, 'a', True, {'b': None}]");
});

Deno.test("bounded where upstream is not: nesting depth, listed errors, echoed payloads (README)", () => {
  assert.match(invalid("[".repeat(100_000)), /\n {2}JSON nested deeper than 900 levels \[type=value_error, /);
  const many = invalid({ ...VALID, target_replicas: Array.from({ length: 1500 }, () => 7) });
  assert.match(many, /^Invalid request: 1500 validation errors for ScaleRequest\n/);
  assert.equal(many.split("\ntarget_replicas.").length - 1, 1000);
  assert.match(many, /\n\(500 more errors not shown\)$/);
  const echoed = invalid(Array.from({ length: 20_000 }, () => 12345));
  assert.match(echoed, /^Invalid request: \[12345, 12345, .*\.\.\. \(140000 characters\)$/);
  assert.equal(echoed.length, "Invalid request: ".length + 65_536 + "... (140000 characters)".length);
});
