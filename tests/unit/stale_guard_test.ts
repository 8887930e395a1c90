import assert from "node:assert/strict";
import {
  DUPLICATE_WINDOW_SECONDS,
  formatLastRequest,
  judgeRequest,
  MAX_RECENT_ANSWERS,
  parseLastRequest,
  RecentAnswers,
  requestKey,
  staleMessage,
} from "../../src/service/stale_guard.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const last = { timestamp: 100.5, caller: "ns-a", targets: { prefill: 2 } };

Deno.test("older is stale, newer is fresh, same timestamp and targets is a retry", () => {
  assert.equal(judgeRequest(undefined, last).kind, "fresh");
  assert.equal(judgeRequest(last, { ...last, timestamp: 100.50001 }).kind, "fresh");
  assert.equal(judgeRequest(last, { ...last, timestamp: 100.49999 }).kind, "stale");
  assert.equal(judgeRequest(last, { ...last }).kind, "duplicate");
  assert.equal(judgeRequest(last, { ...last, targets: { prefill: 3 } }).kind, "stale");
  assert.equal(judgeRequest(last, { ...last, targets: { prefill: 2, decode: 1 } }).kind, "stale");
  assert.equal(
    staleMessage("ns/d", { ...last, timestamp: 99 }, last),
    "Stale scale request for DynamoGraphDeployment 'ns/d': its timestamp 99 is not newer than 100.5, " +
      "the last request applied (from caller 'ns-a'); nothing was changed",
  );
});

Deno.test("the annotation round-trips; anything else is ignored", () => {
  assert.deepEqual(parseLastRequest(formatLastRequest(last)), last);
  assert.equal(parseLastRequest(undefined), undefined);
  assert.equal(parseLastRequest("not json"), undefined);
  assert.equal(parseLastRequest('{"timestamp":"1","caller":"x","targets":{}}'), undefined);
});

Deno.test("recent answers: kept for the window (inclusive), bounded", () => {
  const recent = new RecentAnswers<string>();
  const key = requestKey("ns/d", last);
  recent.put(key, "first", 0);
  assert.equal(recent.get(key, DUPLICATE_WINDOW_SECONDS), "first");
  assert.equal(recent.get(key, DUPLICATE_WINDOW_SECONDS + 0.001), undefined);
  for (let i = 0; i < MAX_RECENT_ANSWERS + 10; i++) recent.put(`k${i}`, "x", 1);
  assert.equal(recent.size, MAX_RECENT_ANSWERS);
  assert.equal(recent.get("k0", 1), undefined, "oldest dropped first");
  assert.equal(recent.get(`k${MAX_RECENT_ANSWERS + 9}`, 1), "x");
});
