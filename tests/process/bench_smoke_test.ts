/**
 * `deno task bench --smoke` still works (tiny counts, figures meaningless): every target answers
 * every request with none failed or lost in every discovery × request-plane cell, and the one
 * table at the end has a row for every cell. Nothing here looks at a timing.
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

interface Row {
  phase: string;
  metric: string;
  ours: number | null;
  upstream?: number | null;
  limit?: number | null;
  note?: string;
}

const DISCOVERIES = ["file", "etcd", "kubernetes"];
const PLANES = ["tcp", "nats"];
const CELLS = [
  ...DISCOVERIES.flatMap((d) => PLANES.map((p) => `no-op · ${d}/${p}`)),
  "kube scale · file/tcp",
];

/** The `phase` column of the table printed after the one-table heading (not the per-phase tables). */
function tablePhases(stdout: string): Set<string> {
  const at = stdout.indexOf("# Global Planner benchmark: one table");
  assert.ok(at >= 0, stdout.slice(-3000));
  const lines = stdout.slice(at).split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| phase |"));
  return new Set(lines.map((l) => l.split("|")[1].trim()));
}

Deno.test({
  name:
    "deno task bench --smoke: every target answers every request in every cell, one table lists every cell",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gp-bench-smoke-" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-P=test", "bench/main.ts", "--smoke", "--json", `${dir}/bench.json`],
        cwd: PROJECT_ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      assert.equal(
        out.code,
        0,
        `${stdout.slice(-6000)}\n${new TextDecoder().decode(out.stderr).slice(-3000)}`,
      );

      const printed = tablePhases(stdout);
      for (const cell of CELLS) assert.ok(printed.has(cell), `no row for ${cell} in the table`);
      assert.ok([...printed].some((p) => p.startsWith("blocking")), `no blocking row: ${[...printed]}`);
      assert.ok([...printed].some((p) => p.startsWith("1k DGDs")), `no 1k-DGD row: ${[...printed]}`);

      const { rows } = JSON.parse(await Deno.readTextFile(`${dir}/bench.json`)) as { rows: Row[] };
      for (const row of rows) {
        assert.doesNotMatch(row.note ?? "", /not available|failed/, JSON.stringify(row));
      }
      // The 1k-DGD phase (smoke: a few DGDs): no answer lost (the phase also exits 1 then).
      const lost = rows.filter((r) => r.phase.startsWith("1k DGDs") && r.metric === "lost answers");
      assert.deepEqual(lost.map((r) => r.ours), [0], JSON.stringify(lost));
      for (const cell of CELLS.filter((c) => c.startsWith("no-op"))) {
        const failed = rows.filter((r) => r.phase === cell && r.metric === "failed + lost (all phases)");
        assert.equal(failed.length, 1, cell);
        assert.deepEqual([failed[0].ours, failed[0].upstream, failed[0].limit], [0, 0, 0], cell);
      }

      // Per cell and target, every phase's requests answered: ours, upstream, the echo limit.
      for (const discovery of DISCOVERIES) {
        const { cells } = JSON.parse(await Deno.readTextFile(`${dir}/bench.noop-${discovery}.json`));
        for (const plane of PLANES) {
          for (const target of ["ours", "peer", "echo"]) {
            const r = cells[plane].results[target] as { phases: Phase[]; unavailable?: string };
            const where = `${discovery}/${plane} ${target}`;
            assert.equal(r.unavailable, undefined, `${where}: ${r.unavailable}`);
            assert.equal(r.phases.length, cells[plane].full ? 4 : 2, where);
            for (const p of r.phases) assert.deepEqual([p.ok, p.failed, p.lost], [p.n, 0, 0], where);
          }
        }
      }

      const kube = JSON.parse(await Deno.readTextFile(`${dir}/bench.kube-scale.json`));
      for (const target of [kube.ours, kube.peer]) {
        assert.deepEqual(target.statuses, { success: kube.plan.n }, JSON.stringify(target.errors));
      }
      const blocking = JSON.parse(await Deno.readTextFile(`${dir}/bench.blocking.json`));
      for (const a of [...blocking.single, ...blocking.batches.flat()] as { status: string }[]) {
        assert.equal(a.status, "success", JSON.stringify(a));
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
