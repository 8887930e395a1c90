/**
 * Leader election on the real kube-apiserver: two electors on one Lease, each on its own
 * client with the write fence the service installs. A graceful stop hands over within a retry
 * period; a leader cut off from the API server (a proxy that stops forwarding) stops writing
 * within its renew deadline, and none of its writes lands after the new leader's first write
 * (compared by the API server's resourceVersions, which etcd orders globally). Timings are
 * printed, not asserted.
 */
import assert from "node:assert/strict";
import { KubeClient } from "../../src/kube/client.ts";
import { KubeLeaseApi, LeaderElector, leaderWriteFence } from "../../src/kube/leader/mod.ts";
import { NotLeader } from "../../src/errors.ts";
import { createLogger } from "../../src/ops/log.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { startKubeFaultProxy } from "../support/kube_fault_proxy.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "election";
const TIMING = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 250 };
const quiet = createLogger({ level: "error", sink: () => {} });

function client(server: string, cluster: KubeCluster): KubeClient {
  return new KubeClient(
    {
      server,
      caPem: server.startsWith("https:") ? cluster.caPem : undefined,
      source: "test",
      token: () => Promise.resolve(cluster.adminToken),
      refreshToken: () => Promise.resolve(false),
    },
    quiet,
    { requestTimeoutMs: 10_000 },
  );
}

interface Candidate {
  name: string;
  client: KubeClient;
  elector: LeaderElector;
  startedAt: number[];
  stoppedAt: number[];
  inherited: Record<string, string>[];
}

function candidate(
  name: string,
  kube: KubeClient,
  lease: string,
  state?: () => Record<string, string>,
): Candidate {
  const c = { name, client: kube, startedAt: [], stoppedAt: [], inherited: [] } as unknown as Candidate;
  c.elector = new LeaderElector({
    ...TIMING,
    api: new KubeLeaseApi(kube, NS, lease),
    identity: name,
    logger: quiet,
    state,
    onStartedLeading: (
      _term,
      inherited,
    ) => (c.startedAt.push(performance.now()), c.inherited.push(inherited)),
    onStoppedLeading: () => c.stoppedAt.push(performance.now()),
  });
  kube.setWriteFence(leaderWriteFence(c.elector));
  return c;
}

/** Creates ConfigMaps named `<who>-<n>` as fast as the fence allows; records what landed. */
function writer(c: Candidate) {
  const landed: { name: string; rv: bigint }[] = [];
  let refused = 0;
  let failed = 0;
  let n = 0;
  const stop = new AbortController();
  const done = (async () => {
    while (!stop.signal.aborted) {
      const name = `${c.name}-${n++}`;
      try {
        const created = await c.client.json<{ metadata: { resourceVersion: string } }>({
          method: "POST",
          verb: "create",
          group: "",
          resource: "configmaps",
          namespace: NS,
          path: `/api/v1/namespaces/${NS}/configmaps`,
          body: { apiVersion: "v1", kind: "ConfigMap", metadata: { name }, data: { by: c.name } },
          signal: stop.signal,
        });
        landed.push({ name, rv: BigInt(created.metadata.resourceVersion) });
      } catch (error) {
        if (error instanceof NotLeader) refused++;
        else failed++;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    landed,
    refused: () => refused,
    failed: () => failed,
    async stop() {
      stop.abort();
      await done;
    },
  };
}

Deno.test({
  name: "leader election on the real API server: handover on release, fencing under partition",
  async fn(t) {
    const cluster = await startKubeCluster({ dgdCrd: "none", dgdsaCrd: false });
    const proxy = startKubeFaultProxy(cluster.url, cluster.caPem);
    const clients: KubeClient[] = [];
    try {
      await cluster.createNamespace(NS);

      await t.step(
        "a graceful stop releases the Lease; the standby leads within a retry period",
        async () => {
          const a = candidate(
            "a",
            client(cluster.url, cluster),
            "release",
            () => ({ "example.com/state": "kept" }),
          );
          const b = candidate("b", client(cluster.url, cluster), "release");
          clients.push(a.client, b.client);
          a.elector.start();
          await waitFor(() => a.elector.leading, "a leads");
          b.elector.start();
          await waitFor(() => b.elector.leader === "a", "b observes a");
          assert.equal(b.elector.leading, false);
          assert.throws(() => b.elector.writeSignal(), NotLeader);
          const stopping = performance.now();
          await a.elector.stop();
          await waitFor(() => b.elector.leading, "b leads after a's release", 5_000, 5);
          const lease = await cluster.request(
            "GET",
            `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/release`,
          );
          assert.equal(lease.json.spec.holderIdentity, "b");
          assert.equal(lease.json.spec.leaseTransitions, 1);
          assert.equal(lease.json.spec.leaseDurationSeconds, 3);
          // The state a leader keeps on the Lease reaches its successor through the API server.
          assert.deepEqual(b.inherited, [{ "example.com/state": "kept" }]);
          assert.equal(lease.json.metadata.annotations["example.com/state"], "kept");
          console.log(
            `release → standby leads: ${
              (b.startedAt[0] - stopping).toFixed(0)
            } ms (retry period ${TIMING.retryPeriodMs} ms)`,
          );
          await b.elector.stop();
        },
      );

      await t.step(
        "a leader cut off from the API server stops writing within its renew deadline; none of its writes lands after the new leader's first",
        async () => {
          const a = candidate("a", client(proxy.url, cluster), "partition");
          const b = candidate("b", client(cluster.url, cluster), "partition");
          clients.push(a.client, b.client);
          a.elector.start();
          await waitFor(() => a.elector.leading, "a leads");
          b.elector.start();
          await waitFor(() => b.elector.leader === "a", "b observes a");
          const wa = writer(a);
          const wb = writer(b);
          await waitFor(() => wa.landed.length >= 5, "a writes");
          assert.equal(wb.landed.length, 0, "a standby writes nothing");
          assert.ok(wb.refused() > 0, "the standby's writes were refused by its fence");

          const partitioned = performance.now();
          proxy.mode = "hang";
          await waitFor(() => a.stoppedAt.length === 1, "a stops leading", 10_000, 5);
          // Everything a sends from now on must be refused before it reaches the proxy.
          const seenByProxy = proxy.requests.length;
          await waitFor(() => b.elector.leading, "b leads", 10_000, 5);
          await waitFor(() => wb.landed.length >= 5, "b writes");
          proxy.mode = "pass";
          const refusedBefore = wa.refused();
          await waitFor(() => wa.refused() >= refusedBefore + 5, "a keeps trying and is refused");
          await wa.stop();
          await wb.stop();

          const fromA = proxy.requests.slice(seenByProxy).filter((r) => r.startsWith("POST /api/v1/"));
          assert.deepEqual(fromA, [], "no write of a reached the proxy after its term ended");
          assert.equal(a.elector.leading, false);
          await waitFor(() => a.elector.leader === "b", "a sees b once the proxy forwards again");
          assert.equal(a.elector.leading, false, "and stays standby");
          const list = await cluster.request("GET", `/api/v1/namespaces/${NS}/configmaps`);
          const stored = (list.json.items as { metadata: { name: string; resourceVersion: string } }[])
            .filter((cm) => /^[ab]-\d+$/.test(cm.metadata.name));
          const rvs = (who: string) =>
            stored.filter((cm) => cm.metadata.name.startsWith(`${who}-`)).map((cm) =>
              BigInt(cm.metadata.resourceVersion)
            );
          const lastOfA = rvs("a").reduce((x, y) => (y > x ? y : x), 0n);
          const firstOfB = rvs("b").reduce((x, y) => (y < x ? y : x), BigInt(Number.MAX_SAFE_INTEGER));
          assert.ok(rvs("a").length >= 5 && rvs("b").length >= 5);
          assert.ok(lastOfA < firstOfB, `a's last write (rv ${lastOfA}) before b's first (rv ${firstOfB})`);
          // Writes the fence cut in flight are either in the list (landed before b) or nowhere.
          for (const w of wa.landed) assert.ok(w.rv <= lastOfA);
          console.log(
            `partition → old leader stops: ${(a.stoppedAt[0] - partitioned).toFixed(0)} ms ` +
              `(renew deadline ${TIMING.renewDeadlineMs} ms); partition → new leader: ` +
              `${(b.startedAt[0] - partitioned).toFixed(0)} ms (lease ${TIMING.leaseDurationMs} ms); ` +
              `a: ${rvs("a").length} landed, ${wa.refused()} refused, ${wa.failed()} failed in flight`,
          );
          await a.elector.stop(500);
          await b.elector.stop();
        },
      );
    } finally {
      for (const c of clients) c.close();
      await proxy.close();
      await cluster.stop();
    }
  },
});
