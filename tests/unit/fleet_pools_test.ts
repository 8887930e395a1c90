/** The budget's pools kept across decisions: reused, patched where a view changed, rebuilt otherwise. */
import assert from "node:assert/strict";
import { type DgdView, viewDgd } from "../../src/kube/dgd.ts";
import { FleetPools } from "../../src/kube/fleet_pools.ts";
import { makeSnapshot } from "../../src/service/budget/mod.ts";

Deno.test.sanitizer({ ops: true, resources: true });

function dgd(name: string, prefill: number, decode: number, rv: string, gpus = 1): DgdView {
  return viewDgd({
    apiVersion: "nvidia.com/v1alpha1",
    kind: "DynamoGraphDeployment",
    metadata: { name, namespace: "ns", resourceVersion: rv },
    status: { conditions: [{ type: "Ready", status: "True" }] },
    spec: {
      services: {
        P: { subComponentType: "prefill", replicas: prefill, resources: { limits: { gpu: String(gpus) } } },
        D: { subComponentType: "decode", replicas: decode, resources: { limits: { gpu: String(gpus) } } },
      },
    },
  });
}

/** What a full build from scratch gives: the reference every kept snapshot must equal. */
function scratch(views: DgdView[]) {
  return makeSnapshot(new FleetPools().derive(views).pools);
}

function same(a: ReturnType<typeof makeSnapshot>, b: ReturnType<typeof makeSnapshot>) {
  assert.equal(a.totalGpus, b.totalGpus);
  assert.deepEqual([...a.pools], [...b.pools], "same pools in the same order");
}

Deno.test("fleet pools: the last snapshot while no view changed; patched in place when one did", () => {
  const fleet = new FleetPools();
  const views = [dgd("a", 1, 2, "1"), dgd("b", 2, 2, "2"), dgd("c", 1, 1, "3", 2)];
  const first = fleet.derive(views).snapshot([]);
  same(first, scratch(views));
  assert.equal(fleet.derive([...views]).snapshot([]), first, "nothing changed: the same object");
  const moved = [views[0], dgd("b", 2, 5, "4"), views[2]];
  const second = fleet.derive(moved).snapshot([]);
  assert.notEqual(second, first);
  same(second, scratch(moved));
  assert.equal(second.totalGpus, first.totalGpus + 3);
  assert.equal(first.pools.get("ns/b/decode")?.replicas, 2, "the last snapshot is never modified");
});

Deno.test("fleet pools: another DGD in a place, more DGDs, or a request's fallback pools rebuild", () => {
  const fleet = new FleetPools();
  const views = [dgd("a", 1, 2, "1"), dgd("b", 2, 2, "2")];
  fleet.derive(views).snapshot([]);
  const swapped = [views[0], dgd("z", 3, 3, "5")];
  same(fleet.derive(swapped).snapshot([]), scratch(swapped));
  const grown = [...swapped, dgd("c", 1, 1, "6")];
  same(fleet.derive(grown).snapshot([]), scratch(grown));
  const extra = { participant: "ns/x", role: "decode" as const, replicas: 2, gpuPerReplica: 3 };
  const withExtra = fleet.derive(grown).snapshot([extra]);
  assert.equal(withExtra.totalGpus, scratch(grown).totalGpus + 6);
  // The fallback pools were this request's only: the next plain decision does not count them.
  same(fleet.derive(grown).snapshot([]), scratch(grown));
});

Deno.test("fleet pools: an update with the changed participants gives what a full build would", () => {
  const fleet = new FleetPools();
  const views = [dgd("a", 1, 2, "1"), dgd("b", 2, 2, "2"), dgd("c", 1, 1, "3", 2)];
  const first = fleet.derive(views).snapshot([]);
  assert.deepEqual(fleet.update(new Map([["ns/b", views[1]]])), { snapshot: first, gpusByDgd: {} });
  const b = dgd("b", 2, 5, "4");
  const c = dgd("c", 3, 1, "5", 2);
  const second = fleet.update(new Map([["ns/b", b], ["ns/c", c]]))!;
  same(second.snapshot, scratch([views[0], b, c]));
  assert.deepEqual(second.gpusByDgd, { "ns/b": 7, "ns/c": 8 });
  assert.equal(first.pools.get("ns/b/decode")?.replicas, 2, "the last snapshot is never modified");
  // Kept: the next update starts from the updated views, and a full derive agrees with it.
  const a = dgd("a", 0, 2, "6");
  same(fleet.update(new Map([["ns/a", a]]))!.snapshot, scratch([a, b, c]));
  assert.equal(fleet.derive([a, b, c]).snapshot([]).totalGpus, scratch([a, b, c]).totalGpus);
});

Deno.test("fleet pools: an update cannot tell a new, gone or reshaped participant, nor follow a fallback", () => {
  const fleet = new FleetPools();
  const views = [dgd("a", 1, 2, "1"), dgd("b", 2, 2, "2")];
  assert.equal(fleet.update(new Map([["ns/a", views[0]]])), undefined, "no snapshot yet");
  fleet.derive(views).snapshot([]);
  assert.equal(fleet.update(new Map([["ns/z", dgd("z", 1, 1, "3")]])), undefined, "new");
  assert.equal(fleet.update(new Map([["ns/a", undefined]])), undefined, "gone");
  const reshaped = viewDgd({
    apiVersion: "nvidia.com/v1alpha1",
    kind: "DynamoGraphDeployment",
    metadata: { name: "a", namespace: "ns", resourceVersion: "4" },
    spec: {
      services: { D: { subComponentType: "decode", replicas: 1, resources: { limits: { gpu: "1" } } } },
    },
  });
  assert.equal(fleet.update(new Map([["ns/a", reshaped]])), undefined, "other roles");
  const extra = { participant: "ns/x", role: "decode" as const, replicas: 2, gpuPerReplica: 3 };
  fleet.derive(views).snapshot([extra]);
  assert.equal(fleet.update(new Map([["ns/a", views[0]]])), undefined, "after a fallback snapshot");
});
