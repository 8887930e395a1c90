/**
 * What the service loads at start (`deno info --json main.ts`, static code imports only): every
 * npm package in the graph costs resident memory, so those only some configurations use (YAML
 * for a `--config` file or a kubeconfig, MessagePack for a caller that sends it, the `call`
 * client, zod for a `--config` file's schema) are loaded by `import()` when needed, and `@kubernetes/client-node` is not in the
 * graph at all (not even for types), so it stays out of a compiled binary too.
 */
import assert from "node:assert/strict";
import { PROJECT_ROOT } from "../support/paths.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

interface Info {
  modules: {
    specifier: string;
    dependencies?: { code?: { specifier?: string }; isDynamic?: boolean; type?: { specifier?: string } }[];
  }[];
}

async function info(): Promise<Info> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** Our files (paths from the project root) reached from main.ts through static code imports. */
function staticLocal(graph: Info): string[] {
  const byUrl = new Map(graph.modules.map((m) => [m.specifier, m]));
  const root = new URL(`file://${PROJECT_ROOT}/main.ts`).href;
  const seen = new Set<string>([root]);
  const queue = [root];
  while (queue.length > 0) {
    for (const dependency of byUrl.get(queue.pop()!)?.dependencies ?? []) {
      const to = dependency.code?.specifier;
      if (!to || dependency.isDynamic || !to.startsWith("file:") || seen.has(to)) continue;
      seen.add(to);
      queue.push(to);
    }
  }
  const prefix = new URL(`file://${PROJECT_ROOT}/`).href;
  return [...seen].map((u) => u.slice(prefix.length)).sort();
}

/** npm packages (`name@version`) reached from main.ts through static code imports of our files. */
function staticNpm(graph: Info): string[] {
  const byUrl = new Map(graph.modules.map((m) => [m.specifier, m]));
  const root = new URL(`file://${PROJECT_ROOT}/main.ts`).href;
  const seen = new Set<string>([root]);
  const npm = new Set<string>();
  const queue = [root];
  while (queue.length > 0) {
    for (const dependency of byUrl.get(queue.pop()!)?.dependencies ?? []) {
      const to = dependency.code?.specifier;
      if (!to || dependency.isDynamic) continue;
      if (to.startsWith("npm:")) npm.add(to.slice(4));
      else if (to.startsWith("file:") && !seen.has(to)) {
        seen.add(to);
        queue.push(to);
      }
    }
  }
  return [...npm].sort();
}

const graph = await info();

Deno.test("the walk finds npm packages and skips dynamic imports (so the checks below can fail)", () => {
  const fake: Info = {
    modules: [
      {
        specifier: new URL(`file://${PROJECT_ROOT}/main.ts`).href,
        dependencies: [
          { code: { specifier: "npm:a@1" } },
          { code: { specifier: "npm:b@1" }, isDynamic: true },
          { code: { specifier: new URL(`file://${PROJECT_ROOT}/x.ts`).href } },
        ],
      },
      {
        specifier: new URL(`file://${PROJECT_ROOT}/x.ts`).href,
        dependencies: [{ code: { specifier: "npm:c@2" } }],
      },
    ],
  };
  assert.deepEqual(staticNpm(fake), ["a@1", "c@2"]);
});

Deno.test("at start the service loads no npm package (zod only with --config or the call client)", () => {
  assert.deepEqual(staticNpm(graph), []);
});

Deno.test("YAML, MessagePack, the NATS plane and the call client are loaded on demand", () => {
  const dynamic = graph.modules.flatMap((m) =>
    (m.dependencies ?? []).filter((d) => d.isDynamic).map((d) => d.code?.specifier ?? "")
  );
  for (
    const wanted of [
      /^npm:yaml@/,
      /\/src\/config\/config_file_schema\.ts$/,
      /\/src\/runtime\/codec\/msgpack_codec\.ts$/,
      /\/src\/runtime\/request_plane\/nats\.ts$/,
      /\/src\/cli\/call\.ts$/,
    ]
  ) {
    assert.ok(dynamic.some((s) => wanted.test(s)), `${wanted} is not imported dynamically: ${dynamic}`);
  }
});

Deno.test("the Kubernetes client, leader election and the budget planner load only when configured", () => {
  const local = staticLocal(graph);
  assert.ok(local.includes("src/app.ts") && local.includes("src/runtime/host.ts"), local.join(", "));
  assert.deepEqual(local.filter((p) => p.startsWith("src/kube/") || p.startsWith("src/service/budget")), []);
});

Deno.test("@kubernetes/client-node is not in the module graph, not even for types", () => {
  const all = graph.modules.flatMap((m) =>
    (m.dependencies ?? []).flatMap((d) => [d.code?.specifier ?? "", d.type?.specifier ?? ""])
  );
  assert.deepEqual(all.filter((s) => s.includes("@kubernetes/client-node")), []);
});
