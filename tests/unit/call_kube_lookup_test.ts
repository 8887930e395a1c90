/** The kubernetes lookup of `call`: which slice entries count as ready, and the join by pod uid. */
import assert from "node:assert/strict";
import { joinRecords, readyPodUids } from "../../src/client/kube_lookup.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const pod = (uid: string) => ({ kind: "Pod", uid });

Deno.test("ready pod uids: only `ready: true` entries that point at a Pod", () => {
  const uids = readyPodUids([
    {
      endpoints: [
        { conditions: { ready: true }, targetRef: pod("a") },
        { conditions: { ready: false }, targetRef: pod("b") },
        { conditions: {}, targetRef: pod("c") },
        { targetRef: pod("d") },
        { conditions: { ready: true }, targetRef: { kind: "Node", uid: "e" } },
        { conditions: { ready: true } },
      ],
    },
    { endpoints: null },
    { endpoints: [{ conditions: { ready: true }, targetRef: pod("f") }] },
  ]);
  assert.deepEqual([...uids].sort(), ["a", "f"]);
});

Deno.test("join: the records under the prefix of every CR whose Pod owner is ready", () => {
  const record = (ns: string, endpoint: string, id: number) => ({
    type: "Endpoint",
    namespace: ns,
    component: "GlobalPlanner",
    endpoint,
    instance_id: id,
    transport: { tcp: `127.0.0.1:9/${id.toString(16)}/${ns}/GlobalPlanner/${endpoint}` },
  });
  const cr = (name: string, owner: string, endpoints: Record<string, unknown> | null) => ({
    metadata: { name, ownerReferences: [{ kind: "Pod", uid: owner }] },
    spec: { data: { endpoints } },
  });
  const records = joinRecords(
    [
      cr("gp-0", "u0", {
        "gp/GlobalPlanner/health/1": record("gp", "health", 1),
        "gp/GlobalPlanner/scale_request/1": record("gp", "scale_request", 1),
      }),
      cr("gp-1", "u1", { "gp/GlobalPlanner/health/2": record("gp", "health", 2) }),
      cr("gp-2", "u2", null),
      cr("other", "u0", { "gp2/GlobalPlanner/health/3": record("gp2", "health", 3) }),
      { metadata: { name: "orphan" }, spec: { data: { endpoints: { "gp/GlobalPlanner/health/4": {} } } } },
    ],
    new Set(["u0", "u2"]),
    "gp/GlobalPlanner/health/",
    "ns",
  );
  assert.deepEqual(records.map((r) => [r.instanceId, r.endpoint]), [[1n, "health"]]);
  // The largest id the runtime writes into a CR (53 bits) stays exact.
  const big = 2 ** 53 - 1;
  const [exact] = joinRecords(
    [cr("gp-9", "u9", { [`gp/GlobalPlanner/health/${big.toString(16)}`]: record("gp", "health", big) })],
    new Set(["u9"]),
    "gp/GlobalPlanner/health/",
    "ns",
  );
  assert.equal(exact.instanceId, BigInt(big));
});
