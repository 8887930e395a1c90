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
