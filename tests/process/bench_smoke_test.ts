/**
 * The side-by-side benchmark still works (smoke mode: tiny counts, figures meaningless). It
 * asserts only that every target answered every request, never timings.
 */
import assert from "node:assert/strict";
import { PROJECT_ROOT } from "../support/paths.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

interface Phase {
  n: number;
  ok: number;
  failed: number;
  lost: number;
}

Deno.test({
  name: "deno task bench --smoke: ours, the Python Global Planner and the echo limit answer every request",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gp-bench-smoke-" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-P=test", "bench/side_by_side.ts", "--smoke", "--json", `${dir}/result.json`],
        cwd: PROJECT_ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, `${stdout}\n${new TextDecoder().decode(out.stderr).slice(-3000)}`);
      assert.match(stdout, /\| metric \| ours \| Python GP \| echo limit \|/);
      assert.match(stdout, /## Kubernetes: non-blocking scale that writes one DGD/);
      assert.match(stdout, /## Kubernetes discovery: found through the API server/);
      assert.match(stdout, /## Kubernetes: blocking scale/);
      assert.match(stdout, /## NATS request plane: Global Planner side-by-side benchmark/);
      const { results } = JSON.parse(await Deno.readTextFile(`${dir}/result.json`));
      for (const target of ["ours", "peer", "echo"]) {
        const phases = results[target].phases as Phase[];
        assert.ok(phases.length >= 3, `${target}: ${phases.length} phases`);
        for (const phase of phases) {
          assert.deepEqual(
            [phase.ok, phase.failed, phase.lost],
            [phase.n, 0, 0],
            `${target}: ${JSON.stringify(phase)}`,
          );
        }
      }
      // The NATS phase: the same three targets, every request answered.
      const onNats = JSON.parse(await Deno.readTextFile(`${dir}/result.nats.json`)).results;
      for (const target of ["ours", "peer", "echo"]) {
        const phases = onNats[target].phases as Phase[];
        assert.ok(phases.length >= 3, `nats ${target}: ${phases.length} phases`);
        for (const phase of phases) {
          assert.deepEqual([phase.ok, phase.failed, phase.lost], [phase.n, 0, 0], `nats ${target}`);
        }
      }
      // Blocking phase: every blocking request answered success.
      const blocking = JSON.parse(await Deno.readTextFile(`${dir}/result.blocking.json`));
      for (const a of [...blocking.single, ...blocking.batches.flat()] as { status: string }[]) {
        assert.equal(a.status, "success", JSON.stringify(a));
      }
      // Kubernetes discovery: every target, ours included, is found through the API server and
      // answers every request.
      const { discovery } = JSON.parse(await Deno.readTextFile(`${dir}/result.kube.json`));
      for (const target of ["ours", "peer", "echo"]) {
        const r = discovery.results[target] as { startupMs: number[]; phase?: Phase; unavailable?: string };
        assert.equal(r.unavailable, undefined, `${target}: ${r.unavailable}`);
        assert.equal(r.startupMs.length, discovery.plan.starts, `${target}: ${JSON.stringify(r)}`);
        assert.deepEqual(
          [r.phase?.ok, r.phase?.failed, r.phase?.lost],
          [discovery.plan.n, 0, 0],
          `${target}: ${JSON.stringify(r.phase)}`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
