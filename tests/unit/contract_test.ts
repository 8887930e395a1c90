import assert from "node:assert/strict";
import { InvalidRequest } from "../../src/errors.ts";
import { parseScaleRequest } from "../../src/service/contract.ts";

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

Deno.test("missing required fields are named", () => {
  const message = invalid({ caller_namespace: "a" });
  assert.match(message, /graph_deployment_name: Field required/);
  assert.match(message, /k8s_namespace: Field required/);
  assert.match(message, /target_replicas: Field required/);
});

Deno.test("enums match exactly", () => {
  assert.match(
    invalid({ ...VALID, target_replicas: [{ sub_component_type: "Prefill", desired_replicas: 1 }] }),
    /target_replicas\.0\.sub_component_type: Input should be 'prefill' or 'decode'/,
  );
});

Deno.test("negative and fractional replica counts are refused before they reach Kubernetes", () => {
  assert.match(
    invalid({ ...VALID, target_replicas: [{ sub_component_type: "decode", desired_replicas: -1 }] }),
    /desired_replicas: Input should be greater than or equal to 0/,
  );
  assert.match(
    invalid({ ...VALID, target_replicas: [{ sub_component_type: "decode", desired_replicas: 1.5 }] }),
    /desired_replicas: Input should be a valid integer/,
  );
});

Deno.test("wrong types are refused: strings are not coerced from numbers", () => {
  assert.match(invalid({ ...VALID, caller_namespace: 5 }), /caller_namespace/);
  assert.match(invalid({ ...VALID, blocking: "maybe" }), /blocking: Input should be a valid boolean/);
});

Deno.test("non-object payloads and bad JSON text are refused with a reason", () => {
  assert.match(invalid("not json"), /invalid JSON/);
  assert.match(invalid("[1,2]"), /got a list/);
  assert.match(invalid(42), /got a number/);
  assert.match(invalid(null), /got null/);
  assert.match(invalid(JSON.stringify("nested string")), /got a string/);
});
