/**
 * One arbitration decision over N DGDs (2 pools each, some intents).
 *
 *   npx -y deno@2.9.6 bench -P=test bench/arbitration_bench.ts
 *
 * Fleet: DGD i has prefill 2 × 2 GPUs and decode 2 × 4 GPUs (12 GPUs); the ceiling is the
 * current total, and DGD 0 asks decode 2→6 (+16), so it needs partners. Intents: every third
 * DGD wants decode 1 (−4, a partner), every fifth a stale prefill 1, every seventh prefill 3
 * (same sign as the request: not a partner). "all partners" gives every DGD a fresh decode
 * intent, the worst case for the candidate sort.
 */
import { type DgdView, viewDgd } from "../src/kube/dgd.ts";
import { snapshotPools } from "../src/kube/participants.ts";
import { arbitrate, IntentCache, makeSnapshot, type Pool, poolKey } from "../src/service/budget/mod.ts";

/** The same fleet as DGD objects (half v1alpha1, half v1beta1) as the watch cache holds them. */
function cachedViews(dgds: number): DgdView[] {
  const views: DgdView[] = [];
  for (let i = 0; i < dgds; i++) {
    const metadata = { name: `dgd-${i}`, namespace: "ns", resourceVersion: String(i + 1) };
    const status = { conditions: [{ type: "Ready", status: "True" }] };
    views.push(viewDgd(
      i % 2 === 0
        ? {
          apiVersion: "nvidia.com/v1alpha1",
          kind: "DynamoGraphDeployment",
          metadata,
          status,
          spec: {
            services: {
              P: { subComponentType: "prefill", replicas: 2, resources: { limits: { gpu: "2" } } },
              D: { subComponentType: "decode", replicas: 2, resources: { limits: { gpu: "4" } } },
            },
          },
        }
        : {
          apiVersion: "nvidia.com/v1beta1",
          kind: "DynamoGraphDeployment",
          metadata,
          status,
          spec: {
            components: [
              { name: "p", type: "prefill", replicas: 2, podTemplate: _gpus(2) },
              { name: "d", type: "decode", replicas: 2, podTemplate: _gpus(4) },
            ],
          },
        },
    ));
  }
  return views;
}

function _gpus(n: number) {
  return { spec: { containers: [{ name: "main", resources: { limits: { "nvidia.com/gpu": n } } }] } };
}

const NOW = 1_000;
const TTL = 60;

function fleet(dgds: number): Pool[] {
  const pools: Pool[] = [];
  for (let i = 0; i < dgds; i++) {
    pools.push({ participant: `ns/dgd-${i}`, role: "prefill", replicas: 2, gpuPerReplica: 2 });
    pools.push({ participant: `ns/dgd-${i}`, role: "decode", replicas: 2, gpuPerReplica: 4 });
  }
  return pools;
}

function someIntents(dgds: number): IntentCache {
  const intents = new IntentCache();
  for (let i = 1; i < dgds; i++) {
    if (i % 3 === 1) intents.record(poolKey(`ns/dgd-${i}`, "decode"), 1, NOW - 5);
    if (i % 5 === 2) intents.record(poolKey(`ns/dgd-${i}`, "prefill"), 1, NOW - 2 * TTL);
    if (i % 7 === 3) intents.record(poolKey(`ns/dgd-${i}`, "prefill"), 3, NOW - 5);
  }
  return intents;
}

function everyoneAPartner(dgds: number): IntentCache {
  const intents = new IntentCache();
  for (let i = 1; i < dgds; i++) intents.record(poolKey(`ns/dgd-${i}`, "decode"), i % 2, NOW - 5);
  return intents;
}

const request = { participant: "ns/dgd-0", targets: [{ role: "decode" as const, desired: 6 }] };

for (const dgds of [10, 100, 1_000]) {
  const pools = fleet(dgds);
  const snapshot = makeSnapshot(pools);
  const bounds = { max: snapshot.totalGpus, min: 0 };
  const intents = someIntents(dgds);
  const worst = everyoneAPartner(dgds);

  Deno.bench({ name: `arbitrate, ${dgds} DGDs`, group: `${dgds} DGDs`, baseline: true }, () => {
    arbitrate({ snapshot, request, intents, bounds, ttl: TTL, now: NOW });
  });
  Deno.bench({ name: `snapshot + arbitrate, ${dgds} DGDs`, group: `${dgds} DGDs` }, () => {
    arbitrate({ snapshot: makeSnapshot(pools), request, intents, bounds, ttl: TTL, now: NOW });
  });
  const views = cachedViews(dgds);
  // The whole decision path of a budgeted request: cached views → pools → snapshot → decision.
  Deno.bench({
    name: `from the DGD cache: pools + snapshot + arbitrate, ${dgds} DGDs`,
    group: `${dgds} DGDs`,
  }, () => {
    const { pools } = snapshotPools(views, (v) => `${v.namespace}/${v.name}`);
    arbitrate({ snapshot: makeSnapshot(pools), request, intents, bounds, ttl: TTL, now: NOW });
  });
  Deno.bench({ name: `arbitrate, ${dgds} DGDs, all partners`, group: `${dgds} DGDs` }, () => {
    arbitrate({ snapshot, request, intents: worst, bounds, ttl: TTL, now: NOW });
  });
}
