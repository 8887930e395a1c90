/** What a DGD cache holds (src/kube/dgd_store.ts): copies in any order, unreadable objects, listeners. */
import assert from "node:assert/strict";
import type { DgdView } from "../../src/kube/dgd.ts";
import { DgdStore } from "../../src/kube/dgd_store.ts";
import { createLogger } from "../../src/ops/log.ts";

Deno.test.sanitizer({ ops: true, resources: true });

function object(name: string, rv: string, replicas = 1) {
  return {
    apiVersion: "nvidia.com/v1alpha1",
    kind: "DynamoGraphDeployment",
    metadata: { name, namespace: "ns", resourceVersion: rv },
    spec: {
      services: { D: { subComponentType: "decode", replicas, resources: { limits: { gpu: "1" } } } },
    },
  };
}
const unreadable = (name: string, rv: string) => ({
  apiVersion: "nvidia.com/v1alpha1",
  kind: "DynamoGraphDeployment",
  metadata: { name, namespace: "ns", resourceVersion: rv },
  spec: { services: "not a map" },
});

function store() {
  const lines: { message: string; dgd?: string }[] = [];
  const logger = createLogger({ level: "debug", sink: (line) => lines.push(JSON.parse(line)) });
  const s = new DgdStore("ns", (name) => name !== "skipped", logger);
  const changes: (string | undefined)[] = [];
  s.onChange((name) => changes.push(name));
  return { s, lines, changes };
}

const replicasOf = (view: DgdView | undefined) => view?.components.map((c) => c.replicas);

Deno.test("a list replaces the contents, except a copy fed back after it was taken; it names no one DGD", () => {
  const { s, changes } = store();
  const first = s.listing();
  first.add(object("a", "5"));
  first.add(object("b", "5"));
  first.add(object("skipped", "5"));
  assert.deepEqual(first.commit(), { dgds: 2, unreadable: 0 });
  assert.deepEqual(changes, [undefined]);
  const listing = s.listing(); // taken at 6
  s.apply({ type: "MODIFIED", object: object("a", "9", 3) }); // fed back while it was being taken
  listing.add(object("a", "6", 2));
  listing.add(unreadable("c", "6"));
  assert.deepEqual(listing.commit(), { dgds: 1, unreadable: 1 });
  assert.deepEqual(replicasOf(s.get("a")), [3], "the newer copy stays");
  assert.equal(s.get("b"), undefined, "gone from the list: gone");
  assert.equal(s.size, 1);
  assert.deepEqual(s.unreadable().map((u) => u.dgd), ["ns/c"]);
  assert.deepEqual(changes, [undefined, "a", undefined]);
});

Deno.test("watch events and written copies: an older copy never replaces a newer one; unreadable ones are kept out and named", () => {
  const { s, lines, changes } = store();
  s.apply({ type: "ADDED", object: object("a", "10") });
  s.apply({ type: "MODIFIED", object: object("a", "9", 5) }); // older: ignored
  assert.deepEqual(replicasOf(s.get("a")), [1]);
  s.upsert(s.get("a")!); // same resourceVersion: taken (nothing older)
  s.apply({ type: "MODIFIED", object: object("a", "11", 2) });
  assert.deepEqual(replicasOf(s.get("a")), [2]);
  s.apply({ type: "MODIFIED", object: unreadable("a", "12") });
  assert.equal(s.get("a"), undefined);
  assert.equal(s.unreadableCount, 1);
  assert.match(s.unreadable()[0].reason, /./);
  s.apply({ type: "ADDED", object: object("skipped", "13") });
  assert.equal(s.get("skipped"), undefined);
  s.apply({ type: "DELETED", object: object("a", "14") });
  assert.equal(s.unreadableCount, 0);
  assert.deepEqual(changes, ["a", "a", "a", "a", "skipped", "a"]);
  const members = lines.filter((l) => l.message.startsWith("DGD cache: DynamoGraphDeployment")).map((l) =>
    `${l.message} ${l.dgd}`
  );
  assert.deepEqual(members, [
    "DGD cache: DynamoGraphDeployment added ns/a",
    "DGD cache: DynamoGraphDeployment removed ns/a",
  ]);
  assert.ok(lines.some((l) => l.message === "DGD cache: skipping a DynamoGraphDeployment it cannot read"));
});

Deno.test("followers get the view at once and every newer one, then undefined when deleted or let go", () => {
  const { s } = store();
  s.apply({ type: "ADDED", object: object("a", "1") });
  const seen: (number[] | undefined)[] = [];
  const unfollow = s.follow("a", (view) => seen.push(replicasOf(view)));
  s.apply({ type: "MODIFIED", object: object("a", "2", 4) });
  s.apply({ type: "DELETED", object: object("a", "3") });
  assert.deepEqual(seen, [[1], [4], undefined]);
  unfollow(); // after the delete: harmless

  const other: (number[] | undefined)[] = [];
  s.follow("b", (view) => other.push(replicasOf(view))); // not there yet: nothing at once
  s.apply({ type: "ADDED", object: object("b", "4", 2) });
  s.unfollowAll();
  s.apply({ type: "MODIFIED", object: object("b", "5", 3) });
  assert.deepEqual(other, [[2], undefined], "let go: no more views");
});
