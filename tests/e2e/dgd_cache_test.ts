/**
 * The budget's DGD cache on a real API server: initial list (both API versions), watch events
 * reflected within a second, explicit-mode filtering, resuming after the server ends a watch,
 * re-listing on 410, a 403 failing `start()`, and `degraded` health when the API is unreachable.
 * The cache authenticates as a ServiceAccount holding exactly get/list/watch on DGDs.
 */
import assert from "node:assert/strict";
import { DgdCache, type DgdCacheOptions } from "../../src/kube/cache.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { viewDgd } from "../../src/kube/dgd.ts";
import { managedDgdNames, snapshotPools } from "../../src/kube/participants.ts";
import { discoverVersions } from "../../src/kube/resources.ts";
import { createLogger } from "../../src/ops/log.ts";
import { participantId } from "../../src/service/budget/pool.ts";
import { applyManifest, createDgd, DGD_PATH, v1alpha1Dgd, v1beta1Dgd } from "../support/dgd_fixtures.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { freePort, waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "cache-pod-ns";
const SA_NS = "dynamo-system";
/** Watch events must show up in the cache within this long. */
const REFLECT_MS = 1_000;

type LogLine = { level: string; message: string; [field: string]: unknown };

function capture() {
  const lines: LogLine[] = [];
  const logger = createLogger({ level: "debug", sink: (line) => lines.push(JSON.parse(line)) });
  const count = (message: string) => lines.filter((line) => line.message === message).length;
  return { lines, logger, count };
}

function clientAs(server: string, caPem: string | undefined, token: string): KubeClient {
  return new KubeClient(
    {
      server,
      caPem,
      source: "test",
      token: () => Promise.resolve(token),
      refreshToken: () => Promise.resolve(false),
    },
    createLogger({ level: "error", sink: () => {} }),
  );
}

/** A cache (started by the caller) plus the means to tear it down. */
function cacheFor(
  cluster: KubeCluster,
  token: string,
  options: Partial<DgdCacheOptions> = {},
) {
  const client = options.client ?? clientAs(cluster.url, cluster.caPem, token);
  const logs = capture();
  const cache = new DgdCache({
    client,
    version: () => discoverVersions(client).then((v) => v.dgd),
    namespace: NS,
    filter: () => true,
    logger: logs.logger,
    ...options,
  });
  const close = async () => {
    await cache.stop();
    client.close();
  };
  return { cache, logs, close };
}

async function patchReplicas(cluster: KubeCluster, name: string, service: string, replicas: number) {
  const r = await cluster.request("PATCH", DGD_PATH("v1alpha1", NS, name), {
    spec: { services: { [service]: { replicas } } },
  });
  assert.ok(r.ok, `patch ${name}: ${r.status} ${r.text}`);
  return r.json;
}

async function remove(cluster: KubeCluster, name: string) {
  const r = await cluster.request("DELETE", DGD_PATH("v1alpha1", NS, name));
  assert.ok(r.ok, `delete ${name}: ${r.status} ${r.text}`);
}

const twoRoles = {
  P: { role: "prefill" as const, replicas: 1 },
  D: { role: "decode" as const, replicas: 2 },
};

Deno.test({
  name: "DGD cache on a real API server",
  async fn(t) {
    const cluster = await startKubeCluster();
    try {
      await cluster.createNamespace(NS);
      await cluster.createNamespace(SA_NS);
      await applyManifest(cluster, [
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "Role",
          metadata: { name: "dgd-reader", namespace: NS },
          rules: [{
            apiGroups: ["nvidia.com"],
            resources: ["dynamographdeployments"],
            verbs: ["get", "list", "watch"],
          }],
        },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "RoleBinding",
          metadata: { name: "dgd-reader", namespace: NS },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "dgd-reader" },
          subjects: [{ kind: "ServiceAccount", name: "cache-reader", namespace: SA_NS }],
        },
      ]);
      const token = await cluster.createServiceAccountToken(SA_NS, "cache-reader");
      await createDgd(cluster, v1alpha1Dgd("a", NS, twoRoles));
      await createDgd(
        cluster,
        v1beta1Dgd("b", NS, {
          P: { role: "prefill", replicas: 3, gpu: 2 },
          D: { role: "decode", replicas: 1 },
        }),
      );
      // Passes the CRD (spec keeps unknown fields) but no DGD reader can make sense of it.
      const bad = await cluster.request("POST", DGD_PATH("v1alpha1", NS), {
        ...v1alpha1Dgd("bad", NS, twoRoles),
        spec: { backendFramework: "vllm", components: "not-a-list" },
      });
      assert.ok(bad.ok, bad.text);

      await t.step(
        "the first list holds the DGDs of both API versions; unreadable ones stay out",
        async () => {
          // One object per page: the list follows `continue` tokens.
          const { cache, logs, close } = cacheFor(cluster, token, { pageSize: 1 });
          try {
            await cache.start();
            const state = cache.state();
            assert.equal(state.synced, true);
            assert.equal(state.dgds, 2);
            assert.equal(state.unreadable, 1);
            assert.equal(state.degraded, false);
            assert.equal(cache.get(NS, "a")?.shape, "services");
            assert.equal(cache.get(NS, "b")?.shape, "components");
            assert.equal(cache.get(NS, "bad"), undefined);
            assert.equal(cache.get("elsewhere", "a"), undefined);
            assert.deepEqual(cache.unreadable().map((u) => u.dgd), [`${NS}/bad`]);
            assert.ok(logs.lines.some((l) => l.level === "warn" && l.dgd === `${NS}/bad`));
            await waitFor(() => cache.state().watching, "the watch to open", REFLECT_MS);

            const { pools, unknown } = snapshotPools(
              cache.views(),
              (v) => participantId(v.namespace, v.name),
            );
            assert.deepEqual(unknown, []);
            const byKey = Object.fromEntries(pools.map((p) => [`${p.participant}/${p.role}`, p]));
            assert.deepEqual(byKey[`${NS}/a/prefill`], {
              participant: `${NS}/a`,
              role: "prefill",
              replicas: 1,
              gpuPerReplica: 1,
            });
            assert.equal(byKey[`${NS}/b/prefill`].gpuPerReplica, 2);
            assert.equal(byKey[`${NS}/b/prefill`].replicas, 3);
            assert.equal(pools.length, 4);
          } finally {
            await close();
          }
        },
      );

      await t.step(
        "ADDED, MODIFIED and DELETED are reflected within a second; upsert is immediate",
        async () => {
          const { cache, close } = cacheFor(cluster, token);
          try {
            await cache.start();
            await waitFor(() => cache.state().watching, "the watch to open", REFLECT_MS);
            await createDgd(cluster, v1alpha1Dgd("c", NS, twoRoles));
            await waitFor(() => cache.get(NS, "c") !== undefined, "ADDED c", REFLECT_MS);
            await patchReplicas(cluster, "c", "P", 5);
            await waitFor(
              () => cache.get(NS, "c")?.components.find((x) => x.name === "P")?.replicas === 5,
              "MODIFIED c",
              REFLECT_MS,
            );

            // The object a write returns is visible at once; an older copy never replaces it.
            const older = cache.get(NS, "c")!;
            const written = viewDgd(await patchReplicas(cluster, "c", "P", 6));
            cache.upsert(written);
            assert.equal(cache.get(NS, "c")?.components.find((x) => x.name === "P")?.replicas, 6);
            cache.upsert(older);
            assert.equal(cache.get(NS, "c")?.resourceVersion, written.resourceVersion);

            await remove(cluster, "c");
            await waitFor(() => cache.get(NS, "c") === undefined, "DELETED c", REFLECT_MS);
            assert.equal(cache.state().dgds, 2);
          } finally {
            await close();
          }
        },
      );

      await t.step(
        "relist() (a fresh leader) lists from scratch; not synced until that list is in",
        async () => {
          const { cache, logs, close } = cacheFor(cluster, token);
          try {
            await cache.start();
            await waitFor(() => cache.state().watching, "the watch to open", REFLECT_MS);
            assert.equal(logs.count("DGD cache listed"), 1);
            const relisted = cache.relist();
            assert.equal(cache.state().synced, false, "budget decisions fail closed meanwhile");
            await relisted;
            assert.equal(cache.state().synced, true);
            assert.equal(logs.count("DGD cache listed"), 2, "one more list, not a resumed watch");
            assert.equal(cache.get(NS, "a")?.shape, "services");
            await waitFor(() => cache.state().watching, "the watch to reopen", REFLECT_MS);
          } finally {
            await close();
          }
        },
      );

      await t.step("explicit mode keeps only DGDs named by '{POD_NAMESPACE}-{dgd}' entries", async () => {
        const filterLogs = capture();
        const filter = managedDgdNames([`${NS}-a`, "team-x", `${NS}-d`, "team-x"], NS, filterLogs.logger);
        const warnings = filterLogs.lines.filter((l) => l.level === "warn");
        assert.equal(warnings.length, 2, "one warning per entry without the prefix");
        assert.match(warnings[0].message, /'team-x' does not start with 'cache-pod-ns-'/);
        assert.equal(managedDgdNames(null, NS, filterLogs.logger)("anything"), true);
        assert.equal(managedDgdNames([], NS, filterLogs.logger)("anything"), true);

        const { cache, close } = cacheFor(cluster, token, { filter });
        try {
          await cache.start();
          assert.deepEqual([...cache.views()].map((v) => v.name), ["a"]);
          assert.equal(cache.state().unreadable, 0, "unmanaged unreadable DGDs are not reported");
          await createDgd(cluster, v1alpha1Dgd("d", NS, twoRoles));
          await createDgd(cluster, v1alpha1Dgd("e", NS, twoRoles));
          await waitFor(() => cache.get(NS, "d") !== undefined, "ADDED d", REFLECT_MS);
          await patchReplicas(cluster, "e", "P", 4); // an event after e's, so e has been seen
          await patchReplicas(cluster, "d", "P", 4);
          await waitFor(
            () => cache.get(NS, "d")?.components.find((x) => x.name === "P")?.replicas === 4,
            "MODIFIED d",
            REFLECT_MS,
          );
          assert.equal(cache.get(NS, "e"), undefined);
          cache.upsert(viewDgd(await patchReplicas(cluster, "e", "P", 5)));
          assert.equal(cache.get(NS, "e"), undefined, "upsert honours the filter");
        } finally {
          await close();
          await remove(cluster, "d");
          await remove(cluster, "e");
        }
      });

      await t.step(
        "a watch the server ends is resumed from the last resourceVersion, without a re-list",
        async () => {
          const { cache, logs, close } = cacheFor(cluster, token, { watchTimeoutSeconds: 1 });
          try {
            await cache.start();
            await waitFor(() => logs.count("DGD watch opened") >= 3, "two watch restarts", 5_000);
            await patchReplicas(cluster, "a", "D", 7);
            await waitFor(
              () => cache.get(NS, "a")?.components.find((x) => x.name === "D")?.replicas === 7,
              "MODIFIED a after restarts",
              REFLECT_MS + 1_000, // the event may land between two watches
            );
            assert.equal(logs.count("DGD cache listed"), 1);
            const listed = Number(logs.lines.find((l) => l.message === "DGD cache listed")!.resourceVersion);
            const resumed = logs.lines.filter((l) => l.message === "DGD watch opened").map((l) =>
              Number(l.resourceVersion)
            );
            assert.equal(resumed[0], listed);
            for (let i = 1; i < resumed.length; i++) assert.ok(resumed[i] >= resumed[i - 1], `${resumed}`);
            assert.equal(cache.state().lastError, undefined);
          } finally {
            await close();
          }
        },
      );

      await t.step("an expired resourceVersion (410) re-lists and the watch carries on", async () => {
        const { cache, logs, close } = cacheFor(cluster, token);
        try {
          await cache.start();
          await waitFor(() => cache.state().watching, "the watch to open", REFLECT_MS);
          for (let n = 1; n <= 3; n++) await patchReplicas(cluster, "a", "P", n);
          cache.resumeFrom("1"); // older than anything the API server still keeps
          await waitFor(() => logs.count("DGD cache listed") === 2, "a re-list", 5_000);
          assert.equal(logs.count("DGD watch resourceVersion expired; re-listing"), 1);
          await waitFor(() => cache.state().watching, "the watch to reopen", REFLECT_MS);
          await patchReplicas(cluster, "a", "P", 8);
          await waitFor(
            () => cache.get(NS, "a")?.components.find((x) => x.name === "P")?.replicas === 8,
            "MODIFIED a",
            REFLECT_MS,
          );
          assert.equal(cache.state().dgds, 2);
        } finally {
          await close();
        }
      });

      await t.step("start() rejects when RBAC denies the list, naming the verb", async () => {
        const powerless = await cluster.createServiceAccountToken(SA_NS, "powerless");
        const { cache, close } = cacheFor(cluster, powerless);
        try {
          await assert.rejects(cache.start(), /HTTP 403\).*RBAC verb "list" on "dynamographdeployments"/);
          const state = cache.state();
          assert.equal(state.synced, false);
          assert.match(state.lastError ?? "", /HTTP 403/);
        } finally {
          await close();
        }
      });

      await t.step(
        "health turns degraded once the API has been unreachable longer than the bound",
        async () => {
          const unreachable = clientAs(`https://127.0.0.1:${freePort()}`, cluster.caPem, token);
          const { cache, close } = cacheFor(cluster, token, {
            client: unreachable,
            version: () => Promise.resolve("v1beta1"),
            downBoundMs: 300,
          });
          const started = cache.start();
          started.catch(() => {}); // stays pending (network errors are retried) until stop()
          try {
            assert.equal(cache.state().degraded, false);
            await waitFor(() => cache.state().degraded, "degraded", 3_000);
            const state = cache.state();
            assert.equal(state.synced, false);
            assert.equal(state.watching, false);
            assert.match(
              state.message ?? "",
              /^DGD watch down for \d+ s: cannot reach the Kubernetes API .*; GPU budget cache may be stale$/,
            );
          } finally {
            await close();
          }
          await assert.rejects(started, /stopped before the first list/);
        },
      );
    } finally {
      await cluster.stop();
    }
  },
});
