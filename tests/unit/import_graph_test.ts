/**
 * The module graph of the service (`deno info --json main.ts`, type-only imports included): no
 * import cycle between files, none between the folders of src/ (each top-level file of src/ is
 * its own node), and src/config/ depends on nothing of ours but the two leaf modules every layer
 * shares (src/errors.ts, src/timing.ts), so adapters may import config types without config
 * owning (or importing) any adapter's constants.
 */
import assert from "node:assert/strict";
import { PROJECT_ROOT } from "../support/paths.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

type Graph = Map<string, Set<string>>;

/** Every elementary cycle found by a depth-first walk, each as [a, b, ..., a]. */
function findCycles(graph: Graph): string[][] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (node: string) => {
    state.set(node, "open");
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "open") cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, "done");
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

function addEdge(graph: Graph, from: string, to: string): void {
  if (!graph.has(from)) graph.set(from, new Set());
  if (!graph.has(to)) graph.set(to, new Set());
  graph.get(from)!.add(to);
}

/** Project files reachable from main.ts, relative to the project root, and their imports. */
async function moduleGraph(): Promise<Graph> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: {
      specifier: string;
      dependencies?: { code?: { specifier?: string }; type?: { specifier?: string } }[];
    }[];
  };
  const root = new URL(`file://${PROJECT_ROOT}/`).href;
  const local = (specifier?: string) =>
    specifier?.startsWith(root) && !specifier.slice(root.length).startsWith(".cache/")
      ? specifier.slice(root.length)
      : undefined;
  const graph: Graph = new Map();
  for (const module of info.modules) {
    const from = local(module.specifier);
    if (!from) continue;
    graph.set(from, graph.get(from) ?? new Set());
    for (const dependency of module.dependencies ?? []) {
      for (const to of [local(dependency.code?.specifier), local(dependency.type?.specifier)]) {
        if (to) addEdge(graph, from, to);
      }
    }
  }
  return graph;
}

/** `src/kube/client.ts` → `src/kube`; `src/errors.ts` → itself; `main.ts` → itself. */
function folderOf(path: string): string {
  const parts = path.split("/");
  return parts[0] === "src" && parts.length > 2 ? `src/${parts[1]}` : path;
}

const graph = await moduleGraph();

Deno.test("the cycle finder finds file and folder cycles (so the checks below can fail)", () => {
  const g: Graph = new Map();
  addEdge(g, "a", "b");
  addEdge(g, "b", "c");
  addEdge(g, "c", "a");
  addEdge(g, "c", "d");
  assert.deepEqual(findCycles(g), [["a", "b", "c", "a"]]);
  addEdge(g, "c", "b");
  assert.equal(findCycles(g).length, 2);
  const acyclic: Graph = new Map();
  addEdge(acyclic, "a", "b");
  addEdge(acyclic, "a", "c");
  addEdge(acyclic, "b", "c");
  assert.deepEqual(findCycles(acyclic), []);
  assert.equal(folderOf("src/config/env.ts"), "src/config");
  assert.equal(folderOf("src/errors.ts"), "src/errors.ts");
});

Deno.test("the service's module graph is what this test walks (main.ts, src/, deno info)", () => {
  for (const file of ["main.ts", "src/app.ts", "src/config/env.ts", "src/ops/status_server.ts"]) {
    assert.ok(graph.has(file), `${file} missing from the graph: ${[...graph.keys()].join(", ")}`);
  }
  assert.ok(graph.get("src/ops/status_server.ts")!.has("src/config/status.ts"), "type imports count");
});

Deno.test("no import cycle between files", () => {
  assert.deepEqual(findCycles(graph), []);
});

Deno.test("no import cycle between the folders of src/", () => {
  const folders: Graph = new Map();
  for (const [from, tos] of graph) {
    for (const to of tos) if (folderOf(from) !== folderOf(to)) addEdge(folders, folderOf(from), folderOf(to));
  }
  assert.deepEqual(findCycles(folders), []);
});

/** Leaf modules of no layer: the one error type and the one timing module. */
const SHARED_LEAVES = new Set(["src/errors.ts", "src/timing.ts"]);

Deno.test("src/config/ imports nothing of ours but itself and the shared leaves", () => {
  for (const leaf of SHARED_LEAVES) {
    const deps = [...(graph.get(leaf) ?? [])].filter((to) => to.startsWith("src/"));
    assert.deepEqual(deps, [], `${leaf} must stay a leaf`);
  }
  const outside = [...graph].flatMap(([from, tos]) =>
    from.startsWith("src/config/")
      ? [...tos].filter((to) => !to.startsWith("src/config/") && !SHARED_LEAVES.has(to)).map((to) =>
        `${from} → ${to}`
      )
      : []
  );
  assert.deepEqual(outside, []);
});
