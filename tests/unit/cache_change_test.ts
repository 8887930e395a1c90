/** The DGD cache says which DGD changed, so the budget redoes only that one (src/kube/budget_port.ts). */
import assert from "node:assert/strict";
import { DgdCache } from "../../src/kube/cache.ts";
import type { KubeClient } from "../../src/kube/client.ts";
import { viewDgd } from "../../src/kube/dgd.ts";
import { createLogger } from "../../src/ops/log.ts";

Deno.test.sanitizer({ ops: true, resources: true });

function view(name: string, rv: string, namespace = "ns") {
  return viewDgd({
    apiVersion: "nvidia.com/v1alpha1",
    kind: "DynamoGraphDeployment",
    metadata: { name, namespace, resourceVersion: rv },
    spec: {
      services: { D: { subComponentType: "decode", replicas: 1, resources: { limits: { gpu: "1" } } } },
    },
  });
}

Deno.test("DGD cache: onChange names each DGD a copy taken in changes, until stopped", () => {
  const cache = new DgdCache({
    client: {} as KubeClient, // never started: no API call
    version: () => Promise.resolve("v1alpha1"),
    namespace: "ns",
    filter: (name) => name !== "skipped",
    logger: createLogger({ level: "error", sink: () => {} }),
  });
  const seen: (string | undefined)[] = [];
  const stop = cache.onChange((name) => seen.push(name));
  const revision = cache.revision;
  cache.upsert(view("a", "5"));
  cache.upsert(view("a", "4")); // older: not taken
  cache.upsert(view("skipped", "6")); // filtered out
  cache.upsert(view("b", "7", "other")); // another namespace
  assert.deepEqual(seen, ["a"]);
  assert.equal(cache.revision, revision + 1, "every change the revision shows is named");
  stop();
  cache.upsert(view("a", "8"));
  assert.deepEqual(seen, ["a"]);
});
