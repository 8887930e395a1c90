/**
 * The budget's Kubernetes port on a real API server: a participant that joined on its first
 * request is read again after the refresh interval and leaves the budget once deleted (unless a
 * watch holds it: then its watched copy counts, without reads); an adapter write's pending
 * override ends when someone else changes the DGD's replicas.
 */
import assert from "node:assert/strict";
import { KubeBudgetPort } from "../../src/kube/budget_port.ts";
import { DgdCache } from "../../src/kube/cache.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { discoverVersions } from "../../src/kube/resources.ts";
import { KubeScaler } from "../../src/kube/scaler.ts";
import { createLogger } from "../../src/ops/log.ts";
import { TouchedDgdCaches } from "../../src/kube/touched_cache.ts";
import { ScaleUseCase } from "../../src/service/scale_use_case.ts";
import { createDgd, DGD_PATH, v1alpha1Dgd } from "../support/dgd_fixtures.ts";
import { startKubeCluster } from "../support/kube_cluster.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const POOL = "port-pool";
const OTHER = "port-other";
const REFRESH_MS = 30_000;
const DECODE = [{ sub_component_type: "decode" as const, component_name: null, desired_replicas: 1 }];
const logger = createLogger({ level: "error", sink: () => {} });

Deno.test({
  name: "budget port: joined participants are refreshed and evicted; pending adapter values end",
  async fn(t) {
    const cluster = await startKubeCluster();
    const client = new KubeClient({
      server: cluster.url,
      caPem: cluster.caPem,
      source: "test",
      token: () => Promise.resolve(cluster.adminToken),
      refreshToken: () => Promise.resolve(false),
    }, logger);
    let now = 1_000_000;
    const versions = () => discoverVersions(client);
    const cache = new DgdCache({
      client,
      version: async () => (await versions()).dgd,
      namespace: POOL,
      filter: () => true,
      logger,
    });
    const scaler = new ScaleUseCase({
      port: new KubeScaler({
        client,
        logger,
        versions,
        cachedView: (ref) => port.viewOf(ref),
        onApplied: (ref, applied) => port.recordApplied(ref, applied),
      }),
      logger,
    });
    const port: KubeBudgetPort = new KubeBudgetPort({
      cache,
      scaler,
      client,
      version: async () => (await versions()).dgd,
      joinedRefreshMs: REFRESH_MS,
      clock: () => now,
    });
    const signal = new AbortController().signal;
    const pools = async (requester: string) =>
      Object.fromEntries(
        [...(await port.snapshot(requester, DECODE, signal)).pools].map(([key, p]) => [key, p.replicas]),
      );
    try {
      for (const ns of [POOL, OTHER]) await cluster.createNamespace(ns);
      await createDgd(
        cluster,
        v1alpha1Dgd("local", POOL, {
          P: { role: "prefill", replicas: 1, gpu: 1, adapter: true },
          D: { role: "decode", replicas: 1, gpu: 1 },
        }),
      );
      for (const name of ["x", "y"]) {
        await createDgd(cluster, v1alpha1Dgd(name, OTHER, { D: { role: "decode", replicas: 2, gpu: 1 } }));
      }
      await cache.start();

      await t.step("a deleted joined DGD leaves the budget at the refresh interval, not before", async () => {
        assert.ok(`${OTHER}/x/decode` in await pools(`${OTHER}/x`));
        assert.ok(`${OTHER}/x/decode` in await pools(`${OTHER}/y`));
        assert.equal(port.joined, 2);
        const r = await cluster.request("DELETE", DGD_PATH("v1alpha1", OTHER, "x"));
        assert.ok(r.ok, r.text);
        now += REFRESH_MS - 1;
        assert.ok(`${OTHER}/x/decode` in await pools(`${OTHER}/y`), "kept until the interval is over");
        now += 1;
        const after = await pools(`${OTHER}/y`);
        assert.equal(`${OTHER}/x/decode` in after, false, JSON.stringify(after));
        assert.equal(port.joined, 1);
      });

      await t.step("a joined DGD's replicas are read again at the refresh interval", async () => {
        const r = await cluster.request("PATCH", DGD_PATH("v1alpha1", OTHER, "y"), {
          spec: { services: { D: { replicas: 5 } } },
        });
        assert.ok(r.ok, r.text);
        assert.equal((await pools(`${POOL}/local`))[`${OTHER}/y/decode`], 2);
        now += REFRESH_MS;
        assert.equal((await pools(`${POOL}/local`))[`${OTHER}/y/decode`], 5);
      });

      await t.step("the adapter override ends when someone else changes the replicas", async () => {
        const applied = await port.apply(`${POOL}/local`, [{
          sub_component_type: "prefill",
          component_name: null,
          desired_replicas: 3,
        }], signal);
        assert.deepEqual([...applied.applied.viaAdapter], ["P"]);
        // The operator has not copied the adapter's value yet: the pool counts what we wrote.
        assert.equal((await pools(`${POOL}/local`))[`${POOL}/local/prefill`], 3);
        // Someone else sets the adapter to 2 and the operator copies that into the DGD.
        const r = await cluster.request("PATCH", DGD_PATH("v1alpha1", POOL, "local"), {
          spec: { services: { P: { replicas: 2 } } },
        });
        assert.ok(r.ok, r.text);
        await waitFor(
          () => cache.get(POOL, "local")?.components.find((c) => c.name === "P")?.replicas === 2,
          "the cache sees the external change",
        );
        assert.equal((await pools(`${POOL}/local`))[`${POOL}/local/prefill`], 2);
        // And a later external return to the value we once wrote is not mistaken for ours.
        await cluster.request("PATCH", DGD_PATH("v1alpha1", POOL, "local"), {
          spec: { services: { P: { replicas: 1 } } },
        });
        await waitFor(
          () => cache.get(POOL, "local")?.components.find((c) => c.name === "P")?.replicas === 1,
          "the cache sees the second change",
        );
        assert.equal((await pools(`${POOL}/local`))[`${POOL}/local/prefill`], 1);
      });

      await t.step("an unchanged fleet reuses the last snapshot; a change rebuilds it", async () => {
        const updates: [Record<string, number>, boolean][] = [];
        const counting = new KubeBudgetPort({
          cache,
          scaler,
          client,
          version: async () => (await versions()).dgd,
          clock: () => now,
          onPools: (gpus, replace) => updates.push([gpus, replace]),
        });
        const first = await counting.snapshot(`${POOL}/local`, DECODE, signal);
        const second = await counting.snapshot(`${POOL}/local`, DECODE, signal);
        assert.equal(second, first, "nothing moved: the same snapshot");
        assert.equal(updates.length, 1, "and no second metrics update");
        assert.equal(updates[0][1], true, "the first picture is whole");
        const r = await cluster.request("PATCH", DGD_PATH("v1alpha1", POOL, "local"), {
          spec: { services: { D: { replicas: 4 } } },
        });
        assert.ok(r.ok, r.text);
        await waitFor(
          () => cache.get(POOL, "local")?.components.find((c) => c.name === "D")?.replicas === 4,
          "the cache sees the change",
        );
        const third = await counting.snapshot(`${POOL}/local`, DECODE, signal);
        assert.notEqual(third, first);
        assert.equal(third.pools.get(`${POOL}/local/decode`)?.replicas, 4);
        assert.equal(third.totalGpus, first.totalGpus + 3);
        // Only the changed DGD was mapped again: the metrics get it alone.
        assert.deepEqual(updates.slice(1), [[{ [`${POOL}/local`]: 5 }, false]]);
        const fresh = new KubeBudgetPort({
          cache,
          scaler,
          client,
          version: async () => (await versions()).dgd,
        });
        assert.deepEqual([...third.pools], [
          ...(await fresh.snapshot(`${POOL}/local`, DECODE, signal)).pools,
        ]);
      });

      await t.step("a joined DGD a watch holds counts its watched copy, and is not read again", async () => {
        await createDgd(cluster, v1alpha1Dgd("z", OTHER, { D: { role: "decode", replicas: 2, gpu: 1 } }));
        const watched = new TouchedDgdCaches({
          client,
          version: async () => (await versions()).dgd,
          logger,
          clock: () => now,
        });
        const watching = new KubeBudgetPort({
          cache,
          scaler,
          client,
          version: async () => (await versions()).dgd,
          joinedRefreshMs: REFRESH_MS,
          clock: () => now,
          watched,
        });
        const counted = async (requester: string) =>
          Object.fromEntries(
            [...(await watching.snapshot(requester, DECODE, signal)).pools].map(([k, p]) => [k, p.replicas]),
          );
        try {
          assert.equal((await counted(`${OTHER}/z`))[`${OTHER}/z/decode`], 2); // joins: one read
          await waitFor(() => watched.watching({ namespace: OTHER, name: "z" }), "the watch to hold z");
          const r = await cluster.request("PATCH", DGD_PATH("v1alpha1", OTHER, "z"), {
            spec: { services: { D: { replicas: 6 } } },
          });
          assert.ok(r.ok, r.text);
          await waitFor(
            () => watched.peek({ namespace: OTHER, name: "z" })?.components[0].replicas === 6,
            "the watch to see the change",
          );
          // Before the refresh interval: the watched copy, not the one read at the join.
          assert.equal((await counted(`${POOL}/local`))[`${OTHER}/z/decode`], 6);
          now += REFRESH_MS;
          const before = client.calls;
          assert.equal((await counted(`${POOL}/local`))[`${OTHER}/z/decode`], 6);
          assert.equal(client.calls - before, 0, "no read at the refresh interval while watched");
        } finally {
          await watched.close();
        }
      });
    } finally {
      await cache.stop();
      client.close();
      await cluster.stop();
    }
  },
});
