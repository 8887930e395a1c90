/**
 * The blocking phase's report (bench/phases/_blocking_report.ts): the ≤ 50 ms target is on the
 * instant our answer leaves, its yardstick is the raw watch of a process of its own in the same
 * rounds, and the caller's receipt is a row of its own (upstream is compared there).
 */
import assert from "node:assert/strict";
import { type Answer, blockingReport, type Measured } from "../../bench/phases/_blocking_report.ts";
import type { PatchLimit } from "../../bench/phases/_blocking_limit.ts";

Deno.test.sanitizer({ ops: true, resources: true });

const answer = (left: number, caller: number, raw: number): Answer => ({
  dgd: "d",
  ms: 220,
  afterReadyMs: caller,
  rawAfterReadyMs: raw,
  leftAfterReadyMs: left,
  watchAfterReadyMs: left - 1,
  answerAfterWatchMs: 1,
  callerAfterAnswerMs: caller - left,
  sentToSeenMs: 10,
  status: "success",
});

Deno.test("blocking report: the target row is the answer leaving, against the same rounds' raw watch", () => {
  const plan = { warmup: false, single: 1, batches: 0, width: 1 };
  const ours: Measured = { plan, single: [answer(7, 30, 5)], batches: [] };
  const upstream: Measured = {
    plan,
    single: [{ ...answer(NaN, 9000, 6), leftAfterReadyMs: undefined }],
    batches: [],
  };
  const limit: PatchLimit = {
    single: [10],
    batches: [],
    blockSingle: [220],
    blockBatches: [],
    seenAfterReady: [1],
  };
  const { rows } = blockingReport(ours, upstream, limit, { smoke: true, dgds: 1, delayMs: 200, wallMs: 1 });
  const targeted = rows.filter((r) => r.target?.max === 50);
  assert.equal(targeted.length, 1);
  assert.equal(targeted[0].metric, "answer leaves after Ready, p99");
  assert.equal(targeted[0].ours, 7);
  assert.equal(targeted[0].limit, 5, "the raw watch of its own process, not the operator's in-process one");
  const caller = rows.find((r) => r.metric === "the caller has the answer after Ready, p99");
  assert.equal(caller?.ours, 30);
  assert.equal(caller?.upstream, 9000);
});
