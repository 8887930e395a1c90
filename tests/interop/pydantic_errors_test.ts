/**
 * Our request validation against upstream's own: every payload goes through upstream's
 * `@dynamo_endpoint(ScaleRequest, ScaleResponse)` (ai-dynamo 1.6.1 with the venv's pydantic, via
 * tests/interop/py/pydantic_errors.py) and through `parseScaleRequest`; the `ValueError` texts
 * must be identical, and so must the accepted requests. Hand-picked cases cover each error kind
 * a planner can produce; a seeded fuzz (FUZZ_SEED, FUZZ_CASES) mutates valid requests.
 */
import assert from "node:assert/strict";
import { parseScaleRequest } from "../../src/service/contract.ts";
import { runDriver } from "../support/python.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

type Case = { text: string } | { value: unknown };

const BASE = {
  caller_namespace: "ns-a",
  graph_deployment_name: "llama",
  k8s_namespace: "prod",
  target_replicas: [
    { sub_component_type: "prefill", desired_replicas: 2 },
    { sub_component_type: "decode", component_name: "VllmDecodeWorker", desired_replicas: 3 },
  ],
  blocking: false,
  timestamp: 1730000000.5,
  predicted_load: { num_requests: 10.5, isl: null, osl: 128 },
};
const withTarget = (target: Record<string, unknown>) => ({ ...BASE, target_replicas: [target] });

const HAND_PICKED: Case[] = [
  // missing fields (top level, nested), the whole dict as input_value (truncated when long)
  { value: {} },
  { value: { caller_namespace: "a" } },
  { value: { caller_namespace: "x".repeat(100) } },
  { value: { caller_namespace: ["☃".repeat(30)] } },
  // long inputs: the repr is streamed and cut (quotes, escapes and surrogate pairs at the cuts)
  { value: { caller_namespace: ["'" + "😀".repeat(100) + "é".repeat(100) + "\n"] } },
  { value: { ...BASE, caller_namespace: "a\"'".repeat(100) } },
  { value: { ...BASE, caller_namespace: "it's ".repeat(60) } },
  { value: { ...BASE, k8s_namespace: Array.from({ length: 500 }, (_, i) => (i % 3 ? i : `s${i}`)) } },
  {
    value: {
      ...BASE,
      target_replicas: Array.from({ length: 40 }, () => ({ desired_replicas: "z".repeat(200) })),
    },
  },
  { value: withTarget({ sub_component_type: "decode" }) },
  { value: withTarget({}) },
  // wrong types
  { value: { ...BASE, caller_namespace: 5 } },
  { value: { ...BASE, caller_namespace: 1.5 } },
  { value: { ...BASE, caller_namespace: null } },
  {
    value: {
      ...BASE,
      caller_namespace: ["it's", 'say "hi"', "both ' and \"", "tab\t\n\u0007\u007f\u200b é"],
    },
  },
  { value: { ...BASE, target_replicas: { a: 1 } } },
  { value: { ...BASE, target_replicas: "prefill" } },
  { value: { ...BASE, target_replicas: [5, null, "x", [1]] } },
  { value: { ...BASE, predicted_load: [1] } },
  { value: { ...BASE, blocking: "maybe" } },
  { value: { ...BASE, blocking: 2 } },
  { value: { ...BASE, blocking: 1.5 } },
  { value: { ...BASE, blocking: "YES" } },
  { value: { ...BASE, blocking: " yes " } },
  { value: { ...BASE, timestamp: "soon" } },
  { value: { ...BASE, timestamp: "1_0.5e1" } },
  { value: { ...BASE, timestamp: [] } },
  { value: withTarget({ sub_component_type: "decode", desired_replicas: 2, component_name: 5 }) },
  // enums
  { value: withTarget({ sub_component_type: "middle", desired_replicas: 1 }) },
  { value: withTarget({ sub_component_type: "PREFILL", desired_replicas: 1 }) },
  { value: withTarget({ sub_component_type: 1, desired_replicas: 1 }) },
  // int parsing
  ...["x", "1.5", "1e2", "", " 2 ", "+3", "1_000", "1.00", "0x10", "-1.0", "١"].map((v) => ({
    value: withTarget({ sub_component_type: "decode", desired_replicas: v }),
  })),
  ...[1.5, -0.25, null, true, [], {}, 2 ** 70].map((v) => ({
    value: withTarget({ sub_component_type: "decode", desired_replicas: v }),
  })),
  {
    text: JSON.stringify(withTarget({ sub_component_type: "decode" })).replace(
      '"}',
      '", "desired_replicas": 1e20}',
    ),
  },
  {
    text: JSON.stringify(withTarget({ sub_component_type: "decode" })).replace(
      '"}',
      '", "desired_replicas": 2.0}',
    ),
  },
  {
    text: JSON.stringify(withTarget({ sub_component_type: "decode" })).replace(
      '"}',
      '", "desired_replicas": NaN}',
    ),
  },
  {
    text: JSON.stringify({ ...BASE, caller_namespace: 1.0 }).replace(
      '"caller_namespace":1',
      '"caller_namespace":1.0',
    ),
  },
  // several errors at once, nested order
  {
    value: { caller_namespace: 1, target_replicas: [{ sub_component_type: "x", desired_replicas: "y" }, 7] },
  },
  // JSON decode (the planner's text payload)
  ...[
    "not json at all",
    "",
    "   ",
    '{"a": }',
    '{"a": 1,}',
    '{"a" 1}',
    '{"a": 1 "b": 2}',
    "[1 2]",
    "[1,]",
    '"abc',
    '"a\\qb"',
    '"a\\u12"',
    '"a\\u12zz"',
    '"a\u0001b"',
    "\ufeff{}",
    "-",
    "1.",
    "01",
    "{",
    "[",
    '{"a":1',
    "nul",
    "  \n  x",
    '{"a":\n\n  }',
    "[1,\n2,\n}",
    '"☃" x',
    '"😀" x',
    "1e+",
    "9".repeat(5000),
  ].map((text) => ({ text })),
  // valid JSON that is not an object
  ...["[1, 2, 3]", '"text"', "5", "null", "true", "1.5", "NaN", "-Infinity", '"\\ud800"'].map((text) => ({
    text,
  })),
  // payloads that are neither a string nor a dict
  ...[[1, 2], 5, 1.5, null, true, ["a", { b: null }]].map((value) => ({ value })),
  // accepted, with lax coercions
  { value: BASE },
  { text: JSON.stringify(BASE) },
  { value: { ...BASE, blocking: "on", timestamp: "inf", extra: 1 } },
  { value: withTarget({ sub_component_type: "prefill", desired_replicas: "07", ignored: true }) },
  { value: withTarget({ sub_component_type: "prefill", desired_replicas: -3 }) },
];

/** mulberry32: small, seeded, reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function fuzzCases(seed: number, count: number): Case[] {
  const random = rng(seed);
  const pick = <T>(items: readonly T[]): T => structuredClone(items[Math.floor(random() * items.length)]);
  const scalars: unknown[] = [
    null,
    true,
    false,
    0,
    1,
    -1,
    2,
    1.5,
    -0.5,
    1e20,
    2 ** 63,
    "",
    "0",
    "1",
    "yes",
    "off",
    "prefill",
    "decode",
    "x'y",
    'q"',
    "é☃😀",
    "\u0000\u001f\u007f\u0085\u00a0",
    "z".repeat(80),
    "1_0",
    " 4 ",
    "3.0",
    "nan",
    [],
    {},
    [1, "a"],
    { k: [null] },
  ];
  const fields = [
    "caller_namespace",
    "graph_deployment_name",
    "k8s_namespace",
    "target_replicas",
    "blocking",
    "timestamp",
    "predicted_load",
  ];
  const targetFields = ["sub_component_type", "component_name", "desired_replicas"];
  const cases: Case[] = [];
  for (let i = 0; i < count; i++) {
    const request: Record<string, unknown> = structuredClone(BASE);
    const targets = () => request.target_replicas as Record<string, unknown>[];
    for (let m = 1 + Math.floor(random() * 3); m > 0; m--) {
      const roll = random();
      if (roll < 0.2) delete request[pick(fields)];
      else if (roll < 0.5) request[pick(fields)] = pick(scalars);
      else if (roll < 0.9 && Array.isArray(targets())) {
        const target = targets()[Math.floor(random() * targets().length)];
        if (target === null || typeof target !== "object" || Array.isArray(target)) continue;
        if (roll < 0.65) delete target[pick(targetFields)];
        else target[pick(targetFields)] = pick(scalars);
      } else if (Array.isArray(targets())) targets().push(pick(scalars) as Record<string, unknown>);
    }
    if (random() < 0.5) {
      cases.push({ value: request });
      continue;
    }
    let text = JSON.stringify(request);
    if (random() < 0.3) {
      // Break the text at a random place: drop, duplicate or insert a character.
      const at = Math.floor(random() * text.length);
      const edit = random();
      const char = pick(['"', "{", "}", "[", "]", ",", ":", "\\", " ", "\n", "x", "0", "-", "e", "."]);
      text = edit < 0.33
        ? text.slice(0, at) + text.slice(at + 1)
        : edit < 0.66
        ? text.slice(0, at) + char + text.slice(at)
        : text.slice(0, at) + char + text.slice(at + 1);
    }
    cases.push({ text });
  }
  return cases;
}

async function upstreamAnswers(cases: Case[]): Promise<Record<string, unknown>[]> {
  const dir = await Deno.makeTempDir({ prefix: "gp-pydantic-" });
  try {
    const file = `${dir}/cases.json`;
    await Deno.writeTextFile(file, JSON.stringify(cases));
    const result = await runDriver("pydantic_errors.py", [file], {}, 120_000);
    assert.equal(result.code, 0, result.stderr.slice(-2000));
    assert.equal(result.lines.length, cases.length, result.stderr.slice(-2000));
    return result.lines;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function ours(payload: Case): Record<string, unknown> {
  try {
    // The accepted request in pydantic's JSON dump shape (NaN/inf dump as null).
    return {
      ok: JSON.parse(JSON.stringify(parseScaleRequest("text" in payload ? payload.text : payload.value))),
    };
  } catch (error) {
    if (error instanceof Error && error.name === "InvalidRequest") return { error: error.message };
    throw error;
  }
}

async function compare(cases: Case[]): Promise<void> {
  const upstream = await upstreamAnswers(cases);
  const differences: string[] = [];
  cases.forEach((payload, i) => {
    const mine = ours(payload);
    try {
      assert.deepEqual(mine, upstream[i]);
    } catch {
      differences.push(
        `case ${i} ${JSON.stringify(payload).slice(0, 300)}\n  upstream: ${
          JSON.stringify(upstream[i])
        }\n  ours:     ${JSON.stringify(mine)}`,
      );
    }
  });
  assert.deepEqual(
    differences,
    [],
    `${differences.length} of ${cases.length} differ:\n${differences.join("\n")}`,
  );
}

Deno.test("validation errors are pydantic's, character for character: each error kind", async () => {
  await compare(HAND_PICKED);
});

Deno.test("validation errors are pydantic's, character for character: seeded fuzz", async () => {
  const seed = Number(Deno.env.get("FUZZ_SEED") ?? "20261202");
  const count = Number(Deno.env.get("FUZZ_CASES") ?? "600");
  await compare(fuzzCases(seed, count));
});
