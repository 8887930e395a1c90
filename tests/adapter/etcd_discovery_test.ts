/** etcd discovery against a real etcd (Debian etcd-server) through its JSON gateway. */
import assert from "node:assert/strict";
import { createLogger } from "../../src/ops/log.ts";
import { EtcdDiscovery } from "../../src/runtime/discovery/etcd.ts";
import { startEtcd } from "../support/etcd.ts";
import { waitFor } from "../support/ports.ts";

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
  sanitizeOps: false,
  sanitizeResources: false,
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
  sanitizeOps: false,
  sanitizeResources: false,
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
  name: "etcd: keep-alive holds the records past the TTL; a revoked lease is reported as lost",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const etcd = await startEtcd();
    try {
      const discovery = await EtcdDiscovery.connect(settings(etcd.endpoint, 2), logger);
      await discovery.register([record(discovery.instanceId, "health")]);
      await new Promise((r) => setTimeout(r, 3500));
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
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const etcd = await startEtcd();
    try {
      const discovery = await EtcdDiscovery.connect({
        endpoints: ["http://127.0.0.1:1", etcd.endpoint],
        leaseTtlSeconds: 4,
      }, logger);
      await discovery.register([record(discovery.instanceId, "health")]);
      await waitFor(() => discovery.healthy, "healthy");
      await new Promise((r) => setTimeout(r, 5000));
      assert.equal((await etcd.list("v1/instances/")).length, 1);
      await discovery.close();
    } finally {
      await etcd.stop();
    }
  },
});
