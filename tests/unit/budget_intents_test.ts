/** The intent cache: freshness and bounded memory. */
import assert from "node:assert/strict";
import { IntentCache, isFresh } from "../../src/service/budget/mod.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("freshness is inclusive of the TTL", () => {
  assert.equal(isFresh({ lastDesired: 1, lastSeenAt: 10 }, 40, 30), true);
  assert.equal(isFresh({ lastDesired: 1, lastSeenAt: 10 }, 40.001, 30), false);
  const cache = new IntentCache();
  cache.record("ns/a/decode", 3, 10);
  assert.deepEqual(cache.fresh("ns/a/decode", 40, 30), { lastDesired: 3, lastSeenAt: 10 });
  assert.equal(cache.fresh("ns/a/decode", 41, 30), undefined);
  // Recording replaces the entry and refreshes it.
  cache.record("ns/a/decode", 4, 41);
  assert.deepEqual(cache.fresh("ns/a/decode", 41, 30), { lastDesired: 4, lastSeenAt: 41 });
});

Deno.test("pruneExpired removes only expired entries", () => {
  const cache = new IntentCache();
  cache.record("ns/a/decode", 1, 0);
  cache.record("ns/b/decode", 1, 50);
  assert.equal(cache.pruneExpired(60, 30), 1);
  assert.equal(cache.size, 1);
  assert.equal(cache.get("ns/a/decode"), undefined);
});

Deno.test("pruneIfDue keeps memory bounded under a stream of distinct keys", () => {
  const cache = new IntentCache();
  // One new key per second, TTL 10 s: at most ~max(64, 2 × live) entries are ever held.
  let largest = 0;
  for (let t = 0; t < 10_000; t++) {
    cache.record(`ns/dgd-${t}/decode`, 1, t);
    cache.pruneIfDue(t, 10);
    largest = Math.max(largest, cache.size);
  }
  assert.ok(largest <= 75, `largest ${largest}`);
  // Sweeps are not run on every write.
  const small = new IntentCache();
  small.record("ns/a/decode", 1, 0);
  assert.equal(small.pruneIfDue(1000, 10), 0);
  assert.equal(small.size, 1);
});

Deno.test("fresh intents survive a failover: exportFresh → restore, at the TTL boundary, newer local wins", () => {
  const old = new IntentCache();
  old.record("a", 3, 100);
  old.record("b", 5, 39.999); // 60.001 s old at now = 100, ttl 60: expired
  old.record("c", 7, 40); // exactly ttl old: fresh (inclusive)
  const text = old.exportFresh(100, 60);
  assert.deepEqual(JSON.parse(text), [["a", 3, 100], ["c", 7, 40]]);
  const next = new IntentCache();
  next.record("c", 9, 41); // recorded by the new leader after the old one's last export
  assert.deepEqual(next.restore(text), { taken: 1, superseded: 0 });
  assert.deepEqual(next.get("a"), { lastDesired: 3, lastSeenAt: 100 });
  assert.deepEqual(next.get("c"), { lastDesired: 9, lastSeenAt: 41 });
  assert.equal(next.get("b"), undefined);
  assert.deepEqual(next.restore("not json"), { taken: 0, superseded: 0 });
  assert.deepEqual(
    next.restore(
      JSON.stringify([["d", "x", 1], ["e", 1], 5, ["f", 2, 3], ["g", 2, 3, "x"], ["h", 1, 2, 3, 4]]),
    ),
    { taken: 1, superseded: 0 },
  );
  assert.deepEqual(next.get("f"), { lastDesired: 2, lastSeenAt: 3 });
  assert.equal(next.get("g"), undefined, "a generation that is not a number: the row is refused");
});

Deno.test("an inherited intent whose DGD moved after the export is dropped, not applied over a newer scale", () => {
  const old = new IntentCache();
  old.record("ns/a/prefill", 3, 100);
  old.record("ns/b/decode", 5, 100);
  old.record("ns/c/decode", 2, 100);
  old.record("ns/d/decode", 4, 100);
  const seenByOld: Record<string, number> = { "ns/a/prefill": 7, "ns/b/decode": 4, "ns/c/decode": 9 };
  const text = old.exportFresh(100, 60, (key) => seenByOld[key]);
  assert.deepEqual(JSON.parse(text), [
    ["ns/a/prefill", 3, 100, 7],
    ["ns/b/decode", 5, 100, 4],
    ["ns/c/decode", 2, 100, 9],
    ["ns/d/decode", 4, 100], // no DGD seen: exported without a generation, taken as before
  ]);
  // The successor's fresh list: a unchanged; b's spec moved on (one generation is enough); c is gone.
  const seenByNew: Record<string, number> = { "ns/a/prefill": 7, "ns/b/decode": 5 };
  const next = new IntentCache();
  assert.deepEqual(next.restore(text, (key) => seenByNew[key]), { taken: 2, superseded: 2 });
  assert.deepEqual(next.get("ns/a/prefill"), { lastDesired: 3, lastSeenAt: 100 });
  assert.equal(next.get("ns/b/decode"), undefined);
  assert.equal(next.get("ns/c/decode"), undefined);
  assert.deepEqual(next.get("ns/d/decode"), { lastDesired: 4, lastSeenAt: 100 });
  // Without a view of the DGDs (no lookup) the rows are taken as exported.
  assert.deepEqual(new IntentCache().restore(text), { taken: 4, superseded: 0 });
});
