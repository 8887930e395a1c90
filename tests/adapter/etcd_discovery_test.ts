/** etcd discovery against a real etcd (Debian etcd-server) through its JSON gateway. */
import assert from "node:assert/strict";
import { createLogger } from "../../src/ops/log.ts";
import { EtcdDiscovery } from "../../src/runtime/discovery/etcd.ts";
import { startEtcd } from "../support/etcd.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const logger = createLogger({ level: "error", sink: () => {} });
const settings = (endpoint: string, leaseTtlSeconds = 10) => ({ endpoints: [endpoint], leaseTtlSeconds });
const record = (instanceId: bigint, endpoint: string) => ({
  namespace: "ns",
  component: "GlobalPlanner",
  endpoint,
  instanceId,
  transport: { tcp: `127.0.0.1:1/${instanceId.toString(16)}/ns/GlobalPlanner/${endpoint}` },
});

Deno.test({
  name: "etcd: lease-bound records under v1/instances with the exact 64-bit id; revoke removes them",
  async fn() {
    const etcd = await startEtcd();
    try {
      const discovery = await EtcdDiscovery.connect(settings(etcd.endpoint), logger);
      const hex = discovery.instanceId.toString(16);
      await discovery.register([
        record(discovery.instanceId, "scale_request"),
        record(discovery.instanceId, "health"),
      ]);
      const kvs = await etcd.list("v1/instances/ns/GlobalPlanner/");
      assert.deepEqual(kvs.map((kv) => kv.key).sort(), [
        `v1/instances/ns/GlobalPlanner/health/${hex}`,
        `v1/instances/ns/GlobalPlanner/scale_request/${hex}`,
      ]);
      for (const kv of kvs) {
        assert.equal(kv.lease, discovery.instanceId.toString());
        assert.ok(kv.value.includes(`"instance_id":${discovery.instanceId.toString()},`), kv.value);
      }
      const ttl = await etcd.call<{ TTL: string; grantedTTL: string }>("/v3/lease/timetolive", {
        ID: discovery.instanceId.toString(),
      });
      assert.equal(ttl.grantedTTL, "10");
      await discovery.close();
      assert.deepEqual(await etcd.list("v1/instances/"), []);
    } finally {
      await etcd.stop();
    }
  },
});

Deno.test({
  name: "etcd: registration is create-if-absent (an existing key is success and is not overwritten)",
  async fn() {
    const etcd = await startEtcd();
    try {
      const discovery = await EtcdDiscovery.connect(settings(etcd.endpoint), logger);
      const r = record(discovery.instanceId, "health");
      await discovery.register([r]);
      await discovery.register([{ ...r, transport: { tcp: "changed" } }]);
      const [kv] = await etcd.list("v1/instances/");
      assert.ok(!kv.value.includes("changed"));
      await discovery.close();
    } finally {
      await etcd.stop();
    }
  },
});

Deno.test({
  name:
    "etcd: keep-alive holds the records past the TTL; with exit-on-loss a revoked lease is reported as lost",
  async fn() {
    const etcd = await startEtcd();
    try {
      const discovery = await EtcdDiscovery.connect(
        { ...settings(etcd.endpoint, 2), exitOnLeaseLoss: true },
        logger,
      );
      await discovery.register([record(discovery.instanceId, "health")]);
      // Past the TTL, waiting on etcd's own clock: the lease's remaining TTL is renewed.
      const ttl = () =>
        etcd.call<{ TTL: string }>("/v3/lease/timetolive", { ID: discovery.instanceId.toString() })
          .then((r) => Number(r.TTL));
      const started = Date.now();
      await waitFor(
        async () => Date.now() - started > 3000 && (await ttl()) > 0,
        "lease renewed past its TTL",
        8000,
      );
      assert.equal((await etcd.list("v1/instances/")).length, 1, "records expired despite keep-alive");
      assert.equal(discovery.healthy, true);
      await etcd.call("/v3/lease/revoke", { ID: discovery.instanceId.toString() });
      await assert.rejects(discovery.lost, /expired/);
      assert.equal(discovery.healthy, false);
      await discovery.close();
    } finally {
      await etcd.stop();
    }
  },
});

Deno.test({
  name: "etcd: an unreachable endpoint fails start-up with a clear error",
  async fn() {
    await assert.rejects(
      EtcdDiscovery.connect(settings("http://127.0.0.1:1"), logger),
      /cannot grant an etcd lease at http:\/\/127\.0\.0\.1:1/,
    );
  },
});

Deno.test({
  name: "etcd: keep-alive survives a short etcd outage within the TTL",
  async fn() {
    const etcd = await startEtcd();
    try {
      const discovery = await EtcdDiscovery.connect({
        endpoints: ["http://127.0.0.1:1", etcd.endpoint],
        leaseTtlSeconds: 4,
      }, logger);
      await discovery.register([record(discovery.instanceId, "health")]);
      await waitFor(() => discovery.healthy, "healthy");
      // Renewed through the second endpoint past the first TTL, on etcd's own clock.
      const started = Date.now();
      await waitFor(
        async () =>
          Date.now() - started > 4500 &&
          Number(
              (await etcd.call<{ TTL: string }>("/v3/lease/timetolive", {
                ID: discovery.instanceId.toString(),
              }))
                .TTL,
            ) > 0,
        "lease renewed past its TTL",
        10_000,
      );
      assert.equal((await etcd.list("v1/instances/")).length, 1);
      await discovery.close();
    } finally {
      await etcd.stop();
    }
  },
});

type Line = { level: string; message: string; [field: string]: unknown };
function capture() {
  const lines: Line[] = [];
  return { lines, logger: createLogger({ level: "debug", sink: (l) => lines.push(JSON.parse(l)) }) };
}

Deno.test({
  name: "etcd: a deleted or altered registration key is written again; health follows",
  async fn() {
    const etcd = await startEtcd();
    const logs = capture();
    try {
      const discovery = await EtcdDiscovery.connect(
        { ...settings(etcd.endpoint), checkIntervalMs: 100 },
        logs.logger,
      );
      const hex = discovery.instanceId.toString(16);
      await discovery.register((id) => [record(id, "scale_request"), record(id, "health")]);
      const key = `v1/instances/ns/GlobalPlanner/health/${hex}`;
      const [ours] = await etcd.list(key);
      await etcd.call("/v3/kv/deleterange", { key: btoa(key) });
      await waitFor(async () => (await etcd.list(key)).length === 1, "deleted key re-created", 5000);
      const [back] = await etcd.list(key);
      assert.deepEqual(back, ours);
      await etcd.call("/v3/kv/put", { key: btoa(key), value: btoa('{"type":"Endpoint","altered":true}') });
      await waitFor(
        async () => (await etcd.list(key))[0]?.value === ours.value,
        "altered key restored",
        5000,
      );
      assert.equal((await etcd.list(key))[0].lease, discovery.instanceId.toString());
      assert.equal(discovery.healthy, true);
      assert.equal(
        logs.lines.filter((l) => l.message === "etcd registration key was deleted; written again").length,
        1,
      );
      assert.equal(
        logs.lines.filter((l) => l.message === "etcd registration key was altered; written again").length,
        1,
      );
      await discovery.close();
      assert.deepEqual(await etcd.list("v1/instances/"), []);
    } finally {
      await etcd.stop();
    }
  },
});

Deno.test({
  name: "etcd: an outage longer than the lease ends in a new lease and the records re-created under it",
  async fn() {
    const etcd = await startEtcd();
    const logs = capture();
    try {
      const discovery = await EtcdDiscovery.connect(
        { ...settings(etcd.endpoint, 2), checkIntervalMs: 100 },
        logs.logger,
      );
      const first = discovery.instanceId;
      // The source of the new lease's records is held open: nothing may be written under the
      // new id before it resolves (the request plane makes the id reachable in there).
      const release = Promise.withResolvers<void>();
      let asked: bigint | undefined;
      await discovery.register(async (id) => {
        if (id !== first) {
          asked = id;
          await release.promise;
        }
        return [record(id, "health")];
      });
      await etcd.kill();
      await waitFor(() => !discovery.healthy, "outage noticed", 10_000);
      await waitFor(
        () => logs.lines.some((l) => l.message.startsWith("etcd lease lost;")),
        "lease deadline passed",
        15_000,
      );
      await etcd.restart();
      await waitFor(() => asked !== undefined, "records asked for under the new lease", 20_000);
      const early = await etcd.list("v1/instances/");
      assert.ok(
        early.every((kv) => !kv.key.endsWith(`/${asked!.toString(16)}`)),
        `written before its source resolved: ${JSON.stringify(early)}`,
      );
      assert.equal(discovery.healthy, false);
      release.resolve();
      await waitFor(() => discovery.healthy, "registered again", 20_000);
      assert.equal(discovery.instanceId, asked);
      assert.notEqual(discovery.instanceId, first);
      const kvs = await etcd.list("v1/instances/");
      assert.deepEqual(kvs.map((kv) => kv.key), [
        `v1/instances/ns/GlobalPlanner/health/${discovery.instanceId.toString(16)}`,
      ]);
      assert.equal(kvs[0].lease, discovery.instanceId.toString());
      assert.ok(kvs[0].value.includes(`"instance_id":${discovery.instanceId.toString()},`));
      assert.deepEqual(discovery.records.map((r) => r.instanceId), [discovery.instanceId]);
      // Logged once per state change, however long the outage.
      const changes = logs.lines.filter((l) => l.level !== "debug").map((l) => l.message);
      assert.deepEqual(changes, [
        "etcd unreachable; keep-alive retried until the lease deadline",
        "etcd lease lost; re-registering under a new lease once etcd answers",
        "etcd registration re-created under a new lease",
      ]);
      await discovery.close();
      assert.deepEqual(await etcd.list("v1/instances/"), []);
    } finally {
      await etcd.stop();
    }
  },
});
