/**
 * Kubernetes discovery without a server: the instance-id hash against the spec's reference
 * values and ids a real 1.6.1 process derived (recorded in docs/runtime-1.6.1.md; the adapter
 * test re-derives them live), the pod identity from env and /etc/podinfo, and the retry and
 * self-healing policy on a scripted port (statuses a live API server cannot be made to answer
 * on demand, e.g. 409 and 500).
 */
import assert from "node:assert/strict";
import { readEnv } from "../../src/config/env.ts";
import { ConfigError, DiscoveryError, KubeError } from "../../src/errors.ts";
import { createLogger } from "../../src/ops/log.ts";
import { kubeInstanceId, sipHash13 } from "../../src/runtime/discovery/instance_id.ts";
import { KubernetesDiscovery } from "../../src/runtime/discovery/kubernetes.ts";
import type {
  WatchedChange,
  WorkerMetadataApi,
  WorkerMetadataObject,
} from "../../src/runtime/discovery/worker_metadata.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("instance id: the spec's reference values (Rust DefaultHasher, 53 bits)", () => {
  const table: [string, bigint][] = [
    ["my-pod", 1946204189446897n],
    ["gp-ctrl-0-globalplanner-abc12", 7761050322000122n],
    ["dynamo-global-planner-7d9f8c6b5-x2k4q", 1181393337982735n],
    ["a", 7688582637611507n],
  ];
  for (const [name, id] of table) assert.equal(kubeInstanceId(name), id, name);
  assert.equal(kubeInstanceId("gp-ctrl-0-globalplanner-abc12").toString(16), "1b92a25786d8fa");
});

Deno.test("instance id: values a real 1.6.1 process derived for names we chose", () => {
  // echo_server.py in kubernetes mode printed these (docs/runtime-1.6.1.md, "Kubernetes discovery").
  const table: [string, bigint][] = [
    ["global-planner-0", 6490889963070779n],
    ["z9.example", 2871840016431037n],
    ["p1-sidecar", 4759960063665272n],
    ["p2", 4286142529435651n],
  ];
  for (const [name, id] of table) assert.equal(kubeInstanceId(name), id, name);
});

Deno.test("SipHash-1-3: every tail length and the block boundary", () => {
  // 7, 8 and 9 bytes straddle the 8-byte block; all must differ and stay below 2^64.
  const ids = [7, 8, 9, 15, 16, 17].map((n) => sipHash13(new Uint8Array(n).fill(0x61)));
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.ok(id >= 0n && id < 1n << 64n);
  for (const name of ["a", "my-pod", "x".repeat(253)]) assert.ok(kubeInstanceId(name) < 1n << 53n);
});

const base = { DYN_NAMESPACE: "gp", DYN_DISCOVERY_BACKEND: "kubernetes" };
const env = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("identity: env vars; POD_NAMESPACE defaults to default; controller only for the pod's own name", () => {
  const pod = readEnv(env({ ...base, POD_NAME: "gp-0", POD_UID: "u-1" })).runtime.kube;
  assert.deepEqual(pod, {
    podName: "gp-0",
    podUid: "u-1",
    podNamespace: "default",
    mode: "pod",
    containerName: undefined,
    crName: "gp-0",
    controller: true,
  });
  const side = readEnv(env({
    ...base,
    POD_NAME: "gp-0",
    POD_UID: "u-1",
    DYN_KUBE_DISCOVERY_MODE: "container",
    CONTAINER_NAME: "side",
  })).runtime.kube;
  assert.equal(side?.crName, "gp-0-side");
  assert.equal(side?.controller, false);
  const main = readEnv(env({
    ...base,
    POD_NAME: "gp-0",
    POD_UID: "u-1",
    DYN_KUBE_DISCOVERY_MODE: "container",
    CONTAINER_NAME: "main",
  })).runtime.kube;
  assert.equal(main?.crName, "gp-0");
  assert.equal(main?.controller, true);
  // Other backends read no identity.
  assert.equal(readEnv(env({ DYN_NAMESPACE: "gp", DYN_DISCOVERY_BACKEND: "file" })).runtime.kube, undefined);
});

Deno.test("identity: /etc/podinfo files win over the env vars, pod_namespace included", () => {
  const files: Record<string, string> = {
    "/etc/podinfo/pod_name": "file-pod\n",
    "/etc/podinfo/pod_uid": "file-uid\n",
    "/etc/podinfo/pod_namespace": "file-ns\n",
  };
  const settings = readEnv(
    env({ ...base, POD_NAME: "env-pod", POD_UID: "env-uid", POD_NAMESPACE: "env-ns" }),
    (path) => files[path],
  );
  assert.equal(settings.runtime.kube?.podName, "file-pod");
  assert.equal(settings.runtime.kube?.podUid, "file-uid");
  assert.equal(settings.podNamespace, "file-ns");
});

Deno.test("identity: what is missing or invalid is named (exit 2 at start)", () => {
  const fails = (vars: Record<string, string>, pattern: RegExp) =>
    assert.throws(
      () => readEnv(env({ ...base, ...vars })),
      (e: Error) => e instanceof ConfigError && pattern.test(e.message),
    );
  fails({}, /POD_NAME and POD_UID are not set/);
  fails({ POD_NAME: "p" }, /: POD_UID is not set \(nor \/etc\/podinfo\/pod_uid\)/);
  fails({ POD_UID: "u" }, /: POD_NAME is not set/);
  fails({ POD_NAME: "p", POD_UID: "u", DYN_KUBE_DISCOVERY_MODE: "container" }, /needs CONTAINER_NAME/);
  fails({ POD_NAME: "p", POD_UID: "u", DYN_KUBE_DISCOVERY_MODE: "node" }, /must be "pod" or "container"/);
  fails(
    { POD_NAME: "Gp_0", POD_UID: "u" },
    /DynamoWorkerMetadata name "Gp_0" \(from POD_NAME\) is not a valid/,
  );
  fails({ POD_NAME: "gp-", POD_UID: "u" }, /not a valid Kubernetes object name/);
  // The longest valid name passes; one more character does not (also via container mode).
  assert.equal(
    readEnv(env({ ...base, POD_NAME: "a".repeat(253), POD_UID: "u" })).runtime.kube?.crName.length,
    253,
  );
  fails({ POD_NAME: "a".repeat(254), POD_UID: "u" }, /at most 253 characters/);
  fails(
    { POD_NAME: "a".repeat(249), POD_UID: "u", DYN_KUBE_DISCOVERY_MODE: "container", CONTAINER_NAME: "side" },
    /\(from POD_NAME-CONTAINER_NAME\)/,
  );
});

// ------------------------------------------------------------------ retry and self-healing policy

const IDENTITY = {
  podName: "gp-0",
  podUid: "u-1",
  podNamespace: "ns",
  mode: "pod" as const,
  crName: "gp-0",
  controller: true,
};
const RECORDS = [{
  namespace: "gp",
  component: "GlobalPlanner",
  endpoint: "health",
  instanceId: kubeInstanceId("gp-0"),
  transport: { tcp: "10.0.0.1:1/x/gp/GlobalPlanner/health" },
}];

const httpError = (status: number) =>
  new KubeError(`HTTP ${status}`, { verb: "patch", resource: "dynamoworkermetadatas", status });

/** A port whose apply answers follow a script and whose watch replays events the test pushes. */
class ScriptedApi implements WorkerMetadataApi {
  applied: WorkerMetadataObject[] = [];
  answers: (number | "ok")[] = [];
  #rv = 0;
  #events: WatchedChange[] = [];
  #wake?: () => void;

  apply(object: WorkerMetadataObject): Promise<WorkerMetadataObject> {
    this.applied.push(object);
    const answer = this.answers.shift() ?? "ok";
    if (answer !== "ok") return Promise.reject(httpError(answer));
    return Promise.resolve(
      structuredClone({ ...object, metadata: { ...object.metadata, resourceVersion: String(++this.#rv) } }),
    );
  }

  cleared: string[] = [];
  /** Names that have a CR to empty; `clearEndpoints` answers whether the name is here. */
  existing = new Set<string>();
  clearFailure?: number;
  clearEndpoints(_ns: string, name: string): Promise<boolean> {
    this.cleared.push(name);
    if (this.clearFailure) return Promise.reject(httpError(this.clearFailure));
    return Promise.resolve(this.existing.has(name));
  }

  push(event: WatchedChange) {
    this.#events.push(event);
    this.#wake?.();
  }

  async *watch(_ns: string, _name: string, _rv: string, signal: AbortSignal): AsyncGenerator<WatchedChange> {
    while (!signal.aborted) {
      const next = this.#events.shift();
      if (next) {
        yield next;
        continue;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
  }
}

function setup(api: ScriptedApi, startTimeoutMs = 60_000) {
  let now = 0;
  const sleeps: number[] = [];
  const logs: Record<string, unknown>[] = [];
  const waiters: [string, () => void][] = [];
  const discovery = new KubernetesDiscovery({
    identity: IDENTITY,
    api,
    logger: createLogger({
      level: "debug",
      sink: (line) => {
        const l = JSON.parse(line);
        logs.push(l);
        for (const w of [...waiters]) if (w[0] === l.message) waiters.splice(waiters.indexOf(w), 1), w[1]();
      },
    }),
    startTimeoutMs,
    clock: () => now,
    // Fake time: a sleep advances the clock at once.
    sleep: (ms) => {
      sleeps.push(ms);
      now += ms;
      return Promise.resolve();
    },
    random: () => 1,
  });
  const logged = (message: string) => new Promise<void>((resolve) => waiters.push([message, resolve]));
  return { discovery, sleeps, logs, logged };
}

Deno.test("start: 409, 500, 429 and 408 are retried with doubling backoff; then published", async () => {
  const api = new ScriptedApi();
  api.answers = [409, 500, 503, 429, 408];
  const { discovery, sleeps, logs } = setup(api);
  await discovery.register(RECORDS);
  assert.equal(discovery.healthy, true);
  assert.equal(api.applied.length, 6);
  assert.deepEqual(sleeps, [250, 500, 1000, 2000, 4000]);
  const retries = logs.filter((l) => l.message === "cannot publish DynamoWorkerMetadata; retrying");
  assert.deepEqual(retries.map((l) => l.status), [409, 500, 503, 429, 408]);
  assert.deepEqual(retries.map((l) => l.attempt), [1, 2, 3, 4, 5]);
  await discovery.close();
});

Deno.test("start: the backoff is capped and jittered into [50 %, 100 %] of its step", async () => {
  const api = new ScriptedApi();
  api.answers = Array(9).fill(500);
  let now = 0;
  const sleeps: number[] = [];
  const discovery = new KubernetesDiscovery({
    identity: IDENTITY,
    api,
    logger: createLogger({ level: "error" }),
    clock: () => now,
    sleep: (ms) => (sleeps.push(ms), now += ms, Promise.resolve()),
    random: () => 0,
  });
  await discovery.register(RECORDS);
  assert.deepEqual(sleeps, [125, 250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
  await discovery.close();
});

Deno.test("start: 403, 404 and 422 fail at once, naming the object", async () => {
  for (const status of [403, 404, 422]) {
    const api = new ScriptedApi();
    api.answers = [status];
    const { discovery, sleeps } = setup(api);
    await assert.rejects(
      discovery.register(RECORDS),
      (e: Error) =>
        e instanceof DiscoveryError &&
        e.message === `cannot publish DynamoWorkerMetadata 'gp-0' in namespace 'ns': HTTP ${status}`,
    );
    assert.deepEqual(sleeps, []);
    assert.equal(discovery.healthy, false);
    await discovery.close();
    assert.equal(api.applied.length, 1, "nothing withdrawn: nothing was published");
  }
});

Deno.test("start: transient errors beyond the start timeout fail the start", async () => {
  const api = new ScriptedApi();
  api.answers = Array(10).fill(503);
  // 250 + 500 fit in 1000 ms; the next 1000 ms step would not.
  const { discovery, sleeps } = setup(api, 1000);
  await assert.rejects(
    discovery.register(RECORDS),
    /cannot publish DynamoWorkerMetadata 'gp-0' in namespace 'ns' within 1000 ms \(3 attempts\): HTTP 503/,
  );
  assert.deepEqual(sleeps, [250, 500]);
});

Deno.test("watch: deleted or altered → unhealthy, re-applied; our own version → nothing", async () => {
  const api = new ScriptedApi();
  const { discovery, logged } = setup(api);
  await discovery.register(RECORDS);
  const stored = await api.apply(discovery.desired()); // what the server holds (rv 2)
  api.applied.length = 1;

  api.push({ type: "MODIFIED", object: stored }); // same data: nothing to do
  let healed = logged("DynamoWorkerMetadata re-applied");
  api.push({ type: "DELETED", object: stored });
  await healed;
  assert.equal(api.applied.length, 2, "one re-apply after the deletion, none for our own version");
  assert.equal(discovery.healthy, true);

  healed = logged("DynamoWorkerMetadata re-applied");
  const altered = structuredClone(stored);
  (altered.spec!.data!.endpoints as Record<string, unknown>)["x/y/z/1"] = { foreign: true };
  api.push({ type: "MODIFIED", object: altered });
  await healed;
  assert.equal(api.applied.length, 3);

  healed = logged("DynamoWorkerMetadata re-applied");
  const orphaned = structuredClone(stored);
  orphaned.metadata.ownerReferences = [];
  api.push({ type: "MODIFIED", object: orphaned });
  await healed;
  assert.equal(api.applied.length, 4);

  await discovery.close();
  const last = api.applied.at(-1)!;
  assert.deepEqual(last.spec?.data?.endpoints, {}, "shutdown applies the object with no endpoints");
  assert.equal(discovery.healthy, false);
});

Deno.test("watch: a failing watch backs off and re-applies before watching again", async () => {
  const api = new ScriptedApi();
  let failures = 2;
  const original = api.watch.bind(api);
  let watching!: () => void;
  const watched = new Promise<void>((r) => (watching = r));
  api.watch = (ns, name, rv, signal) => {
    if (failures-- > 0) {
      // deno-lint-ignore require-yield -- a watch that fails before its first event
      return (async function* () {
        throw httpError(500);
      })();
    }
    watching();
    return original(ns, name, rv, signal);
  };
  const { discovery, sleeps, logs } = setup(api);
  await discovery.register(RECORDS);
  // Wait for the third watch (the first that works), reached through two failures.
  await watched;
  assert.deepEqual(sleeps, [250, 500]);
  assert.equal(api.applied.length, 3, "each failure is followed by an apply");
  assert.equal(
    logs.filter((l) => l.message === "DynamoWorkerMetadata watch failed; re-applying after a pause").length,
    2,
  );
  assert.equal(discovery.healthy, true);
  await discovery.close();
});

Deno.test("readiness: unhealthy from a detected deletion until the re-apply succeeds", async () => {
  const api = new ScriptedApi();
  let release!: () => void;
  let pausedResolve!: () => void;
  const paused = new Promise<void>((r) => (pausedResolve = r));
  const logs: string[] = [];
  let reapply!: () => void;
  const reapplied = new Promise<void>((r) => (reapply = r));
  const discovery = new KubernetesDiscovery({
    identity: IDENTITY,
    api,
    logger: createLogger({
      level: "debug",
      sink: (line) => {
        const message = JSON.parse(line).message;
        logs.push(message);
        if (message === "DynamoWorkerMetadata re-applied") reapply();
      },
    }),
    // The re-apply's backoff blocks until the test releases it.
    sleep: () => {
      pausedResolve();
      return new Promise<void>((r) => (release = r));
    },
  });
  await discovery.register(RECORDS);
  assert.equal(discovery.healthy, true);
  const stored = await api.apply(discovery.desired());
  api.answers = [503];
  api.push({ type: "DELETED", object: stored });
  await paused;
  assert.equal(discovery.healthy, false, "not ready while the CR is gone");
  assert.ok(logs.includes("DynamoWorkerMetadata deleted by someone else; re-applying"));
  release();
  await reapplied;
  assert.equal(discovery.healthy, true);
  await discovery.close();
});

Deno.test("standby: endpoints a previous process of the pod left are emptied; a failure only warns", async () => {
  const api = new ScriptedApi();
  const { discovery, logs } = setup(api);
  await discovery.withdrawPredecessor();
  assert.deepEqual(api.cleared, [IDENTITY.crName]);
  assert.deepEqual(api.applied, [], "nothing applied: a standby never creates its CR");
  assert.equal(logs.filter((l) => l.level !== "debug").length, 0, "no CR: nothing to say");

  api.existing.add(IDENTITY.crName);
  await discovery.withdrawPredecessor();
  assert.ok(logs.some((l) => l.message === "endpoints left by a previous process of this pod withdrawn"));

  api.clearFailure = 403;
  await discovery.withdrawPredecessor();
  const warned = logs.find((l) => l.level === "warn");
  assert.match(String(warned?.message), /cannot withdraw endpoints a previous process of this pod left/);
  assert.equal(discovery.healthy, false);
  await discovery.close();
});
