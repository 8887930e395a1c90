/** File discovery on a real directory, as 1.6.1's file backend reads it. */
import assert from "node:assert/strict";
import { createLogger } from "../../src/ops/log.ts";
import { FileDiscovery } from "../../src/runtime/discovery/file.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const logger = createLogger({ level: "error", sink: () => {} });

Deno.test({
  name: "file: one %-encoded file per record, mtime refreshed, rewritten when deleted, removed on deregister",
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

const record = (endpoint: string) => ({
  namespace: "heal",
  component: "GlobalPlanner",
  endpoint,
  instanceId: 0xabcn,
  transport: { tcp: "127.0.0.1:1/abc/heal/GlobalPlanner/" + endpoint },
});

async function withRoot(fn: (root: string) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "gp-kv-" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("file: a deleted or altered record is written again; health tells whether it could be", async () => {
  await withRoot(async (root) => {
    const discovery = new FileDiscovery({ root, ttlSeconds: 3600 }, logger, 0xabcn);
    await discovery.register([record("health")]);
    const [name] = [...Deno.readDirSync(discovery.directory)].map((e) => e.name);
    const path = `${discovery.directory}/${name}`;
    const ours = await Deno.readTextFile(path);
    await Deno.writeTextFile(path, ours.replace("127.0.0.1:1", "10.0.0.9:9"));
    await discovery.refresh();
    assert.equal(await Deno.readTextFile(path), ours);
    await Deno.remove(path);
    await discovery.refresh();
    assert.equal(await Deno.readTextFile(path), ours);
    assert.equal(discovery.healthy, true);
    // A name taken by something we cannot replace: health reports it, and heals after.
    await Deno.remove(path);
    await Deno.mkdir(path);
    await Deno.writeTextFile(`${path}/blocker`, "");
    await discovery.refresh();
    assert.equal(discovery.healthy, false);
    await Deno.remove(path, { recursive: true });
    await discovery.refresh();
    assert.equal(discovery.healthy, true);
    assert.equal(await Deno.readTextFile(path), ours);
    assert.deepEqual([...Deno.readDirSync(discovery.directory)].map((e) => e.name), [name], "no .tmp_ left");
    await discovery.deregister();
  });
});

Deno.test("file: a refresh in flight when deregistering does not re-create the file", async () => {
  await withRoot(async (root) => {
    const discovery = new FileDiscovery({ root, ttlSeconds: 3600 }, logger, 0xabcn);
    await discovery.register([record("health"), record("scale_request")]);
    for (const entry of Deno.readDirSync(discovery.directory)) {
      await Deno.remove(`${discovery.directory}/${entry.name}`);
    }
    const pass = discovery.refresh();
    await discovery.deregister();
    await pass;
    assert.deepEqual([...Deno.readDirSync(discovery.directory)], []);
    assert.equal(discovery.healthy, false);
  });
});

Deno.test("file: when publishing fails, no .tmp_ file is left behind", async () => {
  await withRoot(async (root) => {
    const discovery = new FileDiscovery({ root, ttlSeconds: 3600 }, logger, 0xabcn);
    // The record's name is a non-empty directory: the link exists, and rename onto it fails.
    const dir = discovery.directory;
    await Deno.mkdir(dir, { recursive: true });
    const blocked = `${dir}/heal%2FGlobalPlanner%2Fhealth%2Fabc`;
    await Deno.mkdir(blocked);
    await Deno.writeTextFile(`${blocked}/blocker`, "");
    await assert.rejects(discovery.register([record("health")]), /cannot register in/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["heal%2FGlobalPlanner%2Fhealth%2Fabc"]);
  });
});
