/** File discovery on a real directory, as 1.6.1's file backend reads it. */
import assert from "node:assert/strict";
import { createLogger } from "../../src/ops/log.ts";
import { FileDiscovery } from "../../src/runtime/discovery/file.ts";
import { waitFor } from "../support/ports.ts";

const logger = createLogger({ level: "error", sink: () => {} });

Deno.test({
  name: "file: one %-encoded file per record, mtime refreshed, rewritten when deleted, removed on deregister",
  sanitizeOps: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gp-kv-" });
    try {
      const discovery = new FileDiscovery({ root, ttlSeconds: 3 }, logger, 0x1f2en);
      assert.equal(discovery.directory, `${root}/v1/instances`);
      const base = {
        namespace: "default-gp",
        component: "GlobalPlanner",
        instanceId: 0x1f2en,
        transport: { tcp: "x" },
      };
      await discovery.register([{ ...base, endpoint: "scale_request" }, { ...base, endpoint: "health" }]);
      const names = [...Deno.readDirSync(discovery.directory)].map((e) => e.name).sort();
      assert.deepEqual(names, [
        "default%2Dgp%2FGlobalPlanner%2Fhealth%2F1f2e",
        "default%2Dgp%2FGlobalPlanner%2Fscale%5Frequest%2F1f2e",
      ]);
      const path = `${discovery.directory}/${names[1]}`;
      assert.equal(
        await Deno.readTextFile(path),
        `{"type":"Endpoint","component":"GlobalPlanner","endpoint":"scale_request","namespace":"default-gp","instance_id":7982,"transport":{"tcp":"x"}}`,
      );
      const before = (await Deno.stat(path)).mtime!.getTime();
      await waitFor(async () => (await Deno.stat(path)).mtime!.getTime() > before, "mtime refresh", 4000);
      await Deno.remove(path);
      await waitFor(
        async () => (await Deno.stat(path).catch(() => null)) !== null,
        "rewrite after delete",
        4000,
      );
      await discovery.deregister();
      assert.deepEqual([...Deno.readDirSync(discovery.directory)], []);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("file: an unwritable root fails registration with the directory named", async () => {
  const discovery = new FileDiscovery({ root: "/proc/gp-cannot-write", ttlSeconds: 10 }, logger);
  await assert.rejects(
    discovery.register([{ namespace: "n", component: "c", endpoint: "e", instanceId: 1n, transport: {} }]),
    /cannot register in \/proc\/gp-cannot-write\/v1\/instances/,
  );
});
