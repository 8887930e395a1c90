/**
 * Every documented start path, each started as the README says (`deno task start` =
 * `deno run -P=service main.ts` with the task's V8 flags, tests/support/service.ts): file
 * discovery, etcd, inline JSON `--config`, `.yaml`/`.yml`/`.json` `--config` files,
 * `KUBECONFIG` and in-cluster credentials. A path that needs a variable or a file the
 * permission set does not grant fails here at start.
 */
import assert from "node:assert/strict";
import { startEtcd } from "../support/etcd.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { installRbac, SA_NAMESPACE } from "../support/rbac.ts";
import { serviceCommand, type ServiceProcess, startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "gp-start";
// npm:yaml prints every token it reads to stdout when these are set; the permission set
// ignores them, so they are set here to prove that nothing is printed (and nothing is denied).
const YAML_DEBUG = { LOG_TOKENS: "1", LOG_STREAM: "1" };

/** Starts, checks the ready line, stops with SIGTERM (exit 0) and returns what was logged. */
async function startAndStop(
  args: string[],
  env: Record<string, string>,
  check?: (service: ServiceProcess) => Promise<void>,
): Promise<Record<string, unknown>> {
  const service = await startService({ args, env: { DYN_NAMESPACE: NS, ...env } });
  try {
    await check?.(service);
  } finally {
    assert.equal(await service.stop("SIGTERM"), 0);
  }
  assert.equal(await service.stdout, "", "the service writes nothing to stdout (npm:yaml debug output?)");
  return service.ready;
}

async function withFileKv<T>(fn: (env: Record<string, string>) => Promise<T>): Promise<T> {
  const kv = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-start-kv-" });
  try {
    return await fn({ DYN_DISCOVERY_BACKEND: "file", DYN_FILE_KV: kv });
  } finally {
    await Deno.remove(kv, { recursive: true });
  }
}

Deno.test("start path: file discovery, --no-operation", async () => {
  await withFileKv(async (env) => {
    const ready = await startAndStop(["--no-operation"], env);
    assert.equal(ready.discovery, "file");
    assert.equal(ready.no_operation, true);
  });
});

Deno.test({
  name: "start path: etcd discovery (the default backend), --no-operation",
  async fn() {
    const etcd = await startEtcd();
    try {
      const ready = await startAndStop(["--no-operation"], { ETCD_ENDPOINTS: etcd.endpoint });
      assert.equal(ready.discovery, "etcd");
    } finally {
      await etcd.stop();
    }
  },
});

Deno.test("start path: inline JSON --config", async () => {
  await withFileKv(async (env) => {
    const ready = await startAndStop(
      ["--config", '{"no_operation": true, "managed_namespaces": ["a", "b"]}'],
      { ...env, ...YAML_DEBUG },
    );
    assert.equal(ready.no_operation, true);
    assert.deepEqual(ready.managed_namespaces, ["a", "b"]);
  });
});

Deno.test("a --config file outside the read list is named with the permission to add (exit 2)", async () => {
  // /var/tmp is not in the service's read list (/tmp is, and so may be the clone itself).
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "gp-start-unreadable-" });
  try {
    const path = `${dir}/planner.json`;
    await Deno.writeTextFile(path, '{"no_operation": true}');
    const out = await serviceCommand(["--config", path], { DYN_NAMESPACE: NS }).output();
    assert.equal(out.code, 2);
    assert.match(
      new TextDecoder().decode(out.stderr),
      new RegExp(
        `--config: no permission to read ${
          path.replaceAll(".", "\\.")
        } \\(see the read list in deno\\.json\\)`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (
  const [suffix, text] of [
    [".yaml", "no_operation: true\nmanaged_namespaces:\n  - from-yaml\n"],
    [".yml", "no_operation: true\nmanaged_namespaces: [from-yml]\n"],
    [".json", '{"no_operation": true, "managed_namespaces": ["from-json"]}'],
    // No known suffix: JSON first, then YAML.
    [".conf", "no_operation: true\nmanaged_namespaces: [from-conf]\n"],
  ] as const
) {
  Deno.test(`start path: --config file (${suffix}), with npm:yaml's debug variables set`, async () => {
    await withFileKv(async (env) => {
      const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-start-config-" });
      try {
        const path = `${dir}/planner${suffix}`;
        await Deno.writeTextFile(path, text);
        const ready = await startAndStop(["--config", path], { ...env, ...YAML_DEBUG });
        assert.equal(ready.no_operation, true);
        assert.deepEqual(ready.managed_namespaces, [`from-${suffix.slice(1)}`]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  });
}

Deno.test({
  name: "start path: Kubernetes credentials from KUBECONFIG and in-cluster, reaching the test API server",
  async fn(t) {
    let cluster: KubeCluster | undefined;
    const temp = await Deno.makeTempDir({ dir: "/tmp", prefix: "gp-start-kube-" });
    try {
      cluster = await startKubeCluster();
      const token = await installRbac(cluster);
      const reached = (source: RegExp) => async (service: ServiceProcess) => {
        const line = await service.waitForLog((l) => l.message === "Kubernetes connector ready");
        assert.equal(line.server, cluster!.url);
        assert.equal(line.reachable, true, JSON.stringify(line));
        assert.match(String(line.credentials), source);
      };

      await t.step("KUBECONFIG (deno task start's development path), YAML debug variables set", async () => {
        const kubeconfig = await cluster!.kubeconfig(`${temp}/kubeconfig`, token, SA_NAMESPACE);
        await withFileKv(async (env) => {
          const ready = await startAndStop(
            [],
            { ...env, KUBECONFIG: kubeconfig, ...YAML_DEBUG },
            reached(
              /kubeconfig/i,
            ),
          );
          assert.equal(ready.no_operation, false);
        });
      });

      await t.step("in-cluster: KUBERNETES_SERVICE_HOST/PORT + --service-account-dir", async () => {
        const sa = await cluster!.writeServiceAccountDir(`${temp}/serviceaccount`, SA_NAMESPACE, token);
        await withFileKv(async (env) => {
          const ready = await startAndStop(
            ["--service-account-dir", sa],
            { ...env, ...cluster!.inClusterEnv() },
            reached(/service account/),
          );
          assert.equal(ready.no_operation, false);
        });
      });
    } finally {
      await cluster?.stop();
      await Deno.remove(temp, { recursive: true });
    }
  },
});
