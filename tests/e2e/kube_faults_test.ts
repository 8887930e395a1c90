/**
 * Kubernetes faults on a real kube-apiserver behind a proxy that misbehaves on demand: every
 * request has a deadline (a hanging server fails a GET, API discovery and the /version probe),
 * a watch that stalls half-open is noticed by its idle deadline, 5xx answers and a connection
 * that goes away mid-watch are retried with a growing jittered backoff and healed without a
 * re-list, and the blocking wait backs off instead of reconnecting in a hot loop.
 */
import assert from "node:assert/strict";
import { DgdCache } from "../../src/kube/cache.ts";
import { KubeClient, type KubeClientOptions } from "../../src/kube/client.ts";
import { viewDgd } from "../../src/kube/dgd.ts";
import { dgdRequest, discoverVersions } from "../../src/kube/resources.ts";
import { waitReady } from "../../src/kube/wait_ready.ts";
import { KubeError } from "../../src/errors.ts";
import { createLogger } from "../../src/ops/log.ts";
import { createDgd, v1alpha1Dgd } from "../support/dgd_fixtures.ts";
import { markReady } from "../support/fake_operator.ts";
import { type KubeFaultProxy, startKubeFaultProxy } from "../support/kube_fault_proxy.ts";
import { startKubeCluster } from "../support/kube_cluster.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "faults";
type LogLine = { level: string; message: string; [field: string]: unknown };

function capture() {
  const lines: LogLine[] = [];
  const logger = createLogger({ level: "debug", sink: (line) => lines.push(JSON.parse(line)) });
  const named = (message: string) => lines.filter((line) => line.message === message);
  return { lines, logger, named };
}

function clientVia(proxy: KubeFaultProxy, token: string, options: KubeClientOptions): KubeClient {
  return new KubeClient(
    {
      server: proxy.url,
      source: "test",
      token: () => Promise.resolve(token),
      refreshToken: () => Promise.resolve(false),
    },
    createLogger({ level: "error", sink: () => {} }),
    options,
  );
}

/** Fails instead of hanging when a deadline is missing (what this file guards against). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const guard = new AbortController();
  const timer = new Promise<never>((_, reject) => {
    const id = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
    guard.signal.addEventListener("abort", () => clearTimeout(id));
  });
  try {
    return await Promise.race([promise, timer]);
  } finally {
    guard.abort();
  }
}

const roles = { P: { role: "prefill" as const, replicas: 1 }, D: { role: "decode" as const, replicas: 1 } };

Deno.test({
  name: "Kubernetes faults: deadlines, stalled watches, 5xx, cut streams, no hot loop",
  async fn(t) {
    const cluster = await startKubeCluster();
    const proxy = startKubeFaultProxy(cluster.url, cluster.caPem);
    try {
      await cluster.createNamespace(NS);
      await createDgd(cluster, v1alpha1Dgd("first", NS, roles));
      const token = cluster.adminToken;

      await t.step(
        "a hanging API server fails a GET, API discovery and the probe at the deadline",
        async () => {
          const client = clientVia(proxy, token, { requestTimeoutMs: 500 });
          try {
            assert.equal(await client.probe(), true);
            proxy.mode = "hang";
            const get = client.json({
              method: "GET",
              verb: "get",
              ...dgdRequest("v1alpha1", { namespace: NS, name: "first" }),
            });
            await assert.rejects(within(get, 10_000, "GET on a hanging server"), (error: unknown) => {
              assert.ok(error instanceof KubeError, String(error));
              assert.equal(
                error.message,
                `Kubernetes get on dynamographdeployments.nvidia.com 'first' in namespace '${NS}' at ${proxy.url}: ` +
                  "no answer within 0.5 s",
              );
              return true;
            });
            await assert.rejects(
              within(discoverVersions(client), 10_000, "API discovery on a hanging server"),
              /get on \(discovery v1beta1\)\.nvidia\.com at http:\/\/127\.0\.0\.1:\d+: no answer within 0\.5 s/,
            );
            assert.equal(await within(client.probe(), 10_000, "probe on a hanging server"), false);
            assert.equal(client.reachable, false);
            assert.equal(
              client.lastFailure,
              `Kubernetes get on version at ${proxy.url}: no answer within 0.5 s`,
            );
            proxy.mode = "pass";
            assert.equal(await client.probe(), true);
          } finally {
            proxy.mode = "pass";
            client.close();
          }
        },
      );

      const logs = capture();
      const client = clientVia(proxy, token, { requestTimeoutMs: 1_000, watchIdleMs: 2_000 });
      const cache = new DgdCache({
        client,
        version: () => Promise.resolve("v1alpha1"),
        namespace: NS,
        filter: () => true,
        logger: logs.logger,
      });
      const failures = () => logs.named("DGD cache: list/watch failed; retrying");
      const reEstablished = () => logs.named("DGD watch re-established").length;
      const heals = async (name: string, what: string) => {
        const before = reEstablished();
        proxy.mode = "pass";
        await waitFor(() => reEstablished() > before, `${what}: watch re-established`, 40_000);
        await createDgd(cluster, v1alpha1Dgd(name, NS, roles));
        await waitFor(() => cache.get(NS, name) !== undefined, `${what}: ${name} in the cache`);
        assert.equal(logs.named("DGD cache listed").length, 1, "resumed without a re-list");
      };
      try {
        await cache.start();
        assert.ok(cache.get(NS, "first"));

        await t.step("a watch that stalls half-open is cut by its idle deadline and resumed", async () => {
          await waitFor(() => cache.state().watching, "watch open");
          proxy.mode = "hang";
          await waitFor(
            () =>
              logs.named("DGD watch stalled; resuming").some((l) =>
                /watch stalled: no event or bookmark for 2 s/.test(String(l.error))
              ),
            "the stalled watch is noticed",
            15_000,
          );
          assert.equal(cache.state().watching, false);
          await heals("after-stall", "stall");
        });

        await t.step(
          "5xx answers: retried with a growing jittered backoff, one request per attempt",
          async () => {
            await waitFor(() => cache.state().watching, "watch open");
            proxy.mode = "5xx";
            const requestsBefore = proxy.requests.length;
            const before = failures().length;
            proxy.cut();
            await waitFor(() => failures().length - before >= 5, "five failed attempts", 30_000);
            const attempts = failures().slice(before);
            // Equal jitter: attempt n waits at least half of 250 ms · 2^(n-1).
            attempts.slice(0, 5).forEach((line, i) => {
              assert.ok(Number(line.retryInMs) >= 125 * 2 ** i, `attempt ${i + 1}: ${line.retryInMs} ms`);
              assert.ok(Number(line.retryInMs) <= 250 * 2 ** i, `attempt ${i + 1}: ${line.retryInMs} ms`);
            });
            assert.match(String(attempts[1].error), /HTTP 503/);
            // The cut watch ended the stream; each retry after it is exactly one request.
            assert.ok(
              proxy.requests.length - requestsBefore <= failures().length - before,
              `requests ${proxy.requests.length - requestsBefore} for ${failures().length - before} failures`,
            );
            await heals("after-5xx", "5xx");
          },
        );

        await t.step(
          "a connection that goes away mid-watch is resumed from the last resourceVersion",
          async () => {
            await waitFor(() => cache.state().watching, "watch open");
            const before = reEstablished();
            proxy.cut();
            await waitFor(() => reEstablished() > before, "re-established after the cut", 15_000);
            await heals("after-cut", "cut");
          },
        );
      } finally {
        await cache.stop();
        client.close();
      }

      await createDgd(cluster, v1alpha1Dgd("waited", NS, roles), { ready: false });
      const latest = viewDgd(
        (await cluster.request(
          "GET",
          `/apis/nvidia.com/v1alpha1/namespaces/${NS}/dynamographdeployments/waited`,
        ))
          .json,
      );
      /** A blocking wait on "waited" through the proxy, with its own logs and abort. */
      const blockingWait = () => {
        const logs = capture();
        const client = clientVia(proxy, token, { requestTimeoutMs: 1_000 });
        const abort = new AbortController();
        const waiting = waitReady({
          client,
          version: "v1alpha1",
          ref: { namespace: NS, name: "waited" },
          written: new Map([["P", 1]]),
          latest,
          timeoutMs: 120_000,
          signal: abort.signal,
          logger: logs.logger,
        });
        const end = async () => {
          abort.abort();
          await waiting.catch(() => {});
          client.close();
        };
        return { logs, waiting, end };
      };

      await t.step("the blocking wait backs off on watch ERROR events instead of a hot loop", async () => {
        proxy.mode = "watch-error";
        const watchesBefore = proxy.watches();
        const wait = blockingWait();
        try {
          const failed = () => wait.logs.named("DGD watch failed; re-reading after a backoff");
          await waitFor(() => failed().length >= 5, "five failed watches", 30_000);
          assert.deepEqual(failed().slice(0, 5).map((l) => l.failures), [1, 2, 3, 4, 5]);
          assert.match(String(failed()[0].error), /DGD watch ERROR event 500: injected/);
          // One watch per failure, plus the one that may be open while we count.
          const watches = proxy.watches() - watchesBefore;
          assert.ok(watches <= failed().length + 1, `${watches} watches for ${failed().length} failures`);
        } finally {
          proxy.mode = "pass";
          await wait.end();
        }
      });

      await t.step(
        "watches the server ends at once without an event back off too; Ready ends the wait",
        async () => {
          proxy.mode = "watch-empty";
          const watchesBefore = proxy.watches();
          const wait = blockingWait();
          try {
            const ended = () =>
              wait.logs.named("DGD watch ended at once without events; resuming after a backoff");
            await waitFor(() => ended().length >= 5, "five empty watches", 30_000);
            assert.deepEqual(ended().slice(0, 5).map((l) => l.failures), [1, 2, 3, 4, 5]);
            const watches = proxy.watches() - watchesBefore;
            assert.ok(watches <= ended().length + 1, `${watches} watches for ${ended().length} empty ones`);
            proxy.mode = "pass";
            await markReady(cluster, NS, "waited", true);
            assert.equal((await wait.waiting).ready, true);
          } finally {
            proxy.mode = "pass";
            await wait.end();
          }
        },
      );
    } finally {
      await proxy.close();
      await cluster.stop();
    }
  },
});
