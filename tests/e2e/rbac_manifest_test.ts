/**
 * deploy/rbac.yaml is exactly enough: on a real kube-apiserver (RBAC on), the ServiceAccount it
 * creates serves a plain request (get + patch of the DGD), an adapter request (get + patch of
 * `dynamographdeploymentscalingadapters/scale`) and a blocking request (watch of the DGD, with the
 * stand-in operator); and for every (resource, verb) pair of its ClusterRole, the same rules minus
 * that one verb make the scenario needing it fail, with a message naming the missing permission.
 * The same holds for the namespaced Role of kubernetes discovery (apply + watch of the pod's
 * DynamoWorkerMetadata in the ServiceAccount's namespace), and for the namespaced Role of leader
 * election (get, create, update of its Lease): each verb removed makes the elector's attempt fail
 * with a message naming it.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { connectKubernetes, type KubeConnector, KubeWorkerMetadataApi } from "../../src/kube/mod.ts";
import { kubeInstanceId } from "../../src/runtime/discovery/instance_id.ts";
import { KubernetesDiscovery } from "../../src/runtime/discovery/kubernetes.ts";
import { KubeLeaseApi, LeaderElector } from "../../src/kube/leader/mod.ts";
import { createLogger } from "../../src/ops/log.ts";
import type { ScaleResponse } from "../../src/service/contract.ts";
import { BudgetPlanner } from "../../src/service/budget_planner.ts";
import { createScaleRequestHandler } from "../../src/service/handlers.ts";
import { applyManifest, createDgd, readDgd, replicasOf, v1alpha1Dgd } from "../support/dgd_fixtures.ts";
import { startFakeOperator, waitSettled } from "../support/fake_operator.ts";
import { type KubeCluster, startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { PROJECT_ROOT } from "../support/paths.ts";
import { waitFor } from "../support/ports.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

/** Watched by the stand-in operator: blocking requests. */
const NS = "rbac-models";
/** Not watched by the stand-in operator, so its DGDs stay Ready: plain and adapter requests. */
const QUIET = "rbac-quiet";
const SA_NS = "dynamo-system";
const GROUP = "nvidia.com";
const DGD = "dynamographdeployments";
const SCALE = "dynamographdeploymentscalingadapters/scale";
const DWM = "dynamoworkermetadatas";
const EVENTS = "events";
const EVENTS_GROUP = "events.k8s.io";
const LEASES = "leases";
const COORDINATION = "coordination.k8s.io";
/** Short blocking timeout: a denied watch must not leave a request hanging for 30 minutes. */
const BLOCKING_TIMEOUT_S = 4;

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
type Scenario = "plain" | "adapter" | "blocking" | "budget" | "discovery" | "events" | "leader";

/** Which scenario exercises each permission of the manifest (a new rule needs a new entry). */
const NEEDED_BY: Record<string, Scenario> = {
  [`${DGD} get`]: "plain",
  [`${DGD} list`]: "budget",
  [`${DGD} patch`]: "plain",
  [`${DGD} watch`]: "blocking",
  [`${SCALE} get`]: "adapter",
  [`${SCALE} patch`]: "adapter",
  [`${DWM} create`]: "discovery",
  [`${DWM} patch`]: "discovery",
  [`${DWM} watch`]: "discovery",
  [`${EVENTS} create`]: "events",
  [`${EVENTS} patch`]: "events",
  [`${LEASES} get`]: "leader",
  [`${LEASES} create`]: "leader",
  [`${LEASES} update`]: "leader",
};

/** The API group of each resource the manifest names. */
const GROUP_OF: Record<string, string> = { [EVENTS]: EVENTS_GROUP, [LEASES]: COORDINATION };
const groupOf = (resource: string) => GROUP_OF[resource] ?? GROUP;

/** Service-account dirs written by `connectAs`, removed at the end. */
const tempDirs: string[] = [];

interface Connected {
  kube: KubeConnector;
  /** Log lines (parsed JSON) the connector wrote at warn level or above. */
  logs: Record<string, unknown>[];
}

async function connectAs(
  cluster: KubeCluster,
  serviceAccount: string,
  budget = false,
  events = false,
): Promise<Connected> {
  const token = await cluster.createServiceAccountToken(SA_NS, serviceAccount);
  const dir = await Deno.makeTempDir({ prefix: "gp-rbac-sa-" });
  tempDirs.push(dir);
  await cluster.writeServiceAccountDir(dir, SA_NS, token);
  const env = cluster.inClusterEnv();
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger({ level: "warn", sink: (line) => logs.push(JSON.parse(line)) });
  const kube = await connectKubernetes(
    { serviceAccountDir: dir, blockingTimeoutSeconds: BLOCKING_TIMEOUT_S },
    (n) => env[n],
    logger,
    // The budget's DGD cache lists and watches POD_NAMESPACE.
    budget
      ? {
        podNamespace: QUIET,
        managedNamespaces: null,
      }
      : undefined,
    undefined,
    { rejectStale: false, dryRun: false, eventsInstance: events ? "rbac" : undefined },
  );
  return { kube, logs };
}

async function scale(
  kube: KubeConnector,
  ns: string,
  request: Record<string, unknown>,
): Promise<ScaleResponse> {
  const logger = createLogger({ level: "error", sink: () => {} });
  const handler = createScaleRequestHandler({
    managedNamespaces: null,
    noOperation: false,
    // As the wiring composes it: the core's budget planner over the budget port, if any.
    scaler: kube.budgetPort
      ? new BudgetPlanner({
        port: kube.budgetPort,
        bounds: { max: 1000, min: -1 },
        intentTtlSeconds: 360,
        logger,
      })
      : kube.kubeScaler,
    logger,
  });
  const context = { id: "rbac", headers: {}, signal: new AbortController().signal };
  for await (const item of handler({ caller_namespace: "c", k8s_namespace: ns, ...request }, context)) {
    return item as ScaleResponse;
  }
  throw new Error("no response");
}

let counter = 0;

/**
 * Kubernetes discovery as the service runs it, on the connector's one client: publish the CR
 * (server-side apply), then watch it. Returns whether the start succeeded, its error, and the
 * log lines of the watch.
 */
async function runDiscovery(kube: KubeConnector) {
  const name = `gp-pod-${++counter}`;
  const logs: Record<string, unknown>[] = [];
  const { promise: watchFailed, resolve } = Promise.withResolvers<void>();
  const logger = createLogger({
    level: "info",
    sink: (line) => {
      const parsed = JSON.parse(line);
      logs.push(parsed);
      if (parsed.message === "DynamoWorkerMetadata watch failed; re-applying after a pause") resolve();
    },
  });
  const discovery = new KubernetesDiscovery({
    identity: {
      podName: name,
      podUid: `uid-${name}`,
      podNamespace: SA_NS,
      mode: "pod",
      crName: name,
      controller: true,
    },
    api: new KubeWorkerMetadataApi(kube.client),
    logger,
    startTimeoutMs: 2_000,
  });
  const id = kubeInstanceId(name);
  let error: Error | undefined;
  try {
    await discovery.register([{
      namespace: "gp",
      component: "GlobalPlanner",
      endpoint: "health",
      instanceId: id,
      transport: { tcp: `127.0.0.1:1/${id.toString(16)}/gp/GlobalPlanner/health` },
    }]);
  } catch (e) {
    error = e as Error;
  }
  return { name, error, logs, watchFailed, discovery };
}

/**
 * Leader election as the service runs it, on the connector's one client: an elector campaigns
 * for a Lease in the ServiceAccount's namespace, which does not exist yet (`fresh`: the elector
 * creates it) or exists unheld (it is read and replaced). Resolves once it leads, or with the
 * first error naming an HTTP 403.
 */
async function runLeader(cluster: KubeCluster, kube: KubeConnector, fresh: boolean) {
  const name = `gp-lease-${++counter}`;
  if (!fresh) {
    const created = await cluster.request("POST", `/apis/${COORDINATION}/v1/namespaces/${SA_NS}/${LEASES}`, {
      apiVersion: `${COORDINATION}/v1`,
      kind: "Lease",
      metadata: { name, namespace: SA_NS },
      spec: { holderIdentity: "", leaseDurationSeconds: 3 },
    });
    assert.equal(created.status, 201, created.text);
  }
  const { promise: settled, resolve } = Promise.withResolvers<string | undefined>();
  const logger = createLogger({
    level: "debug",
    sink: (line) => {
      const parsed = JSON.parse(line);
      if (parsed.message === "became leader") resolve(undefined);
      if (/HTTP 403/.test(String(parsed.error ?? ""))) resolve(String(parsed.error));
    },
  });
  const elector = new LeaderElector({
    api: new KubeLeaseApi(kube.client, SA_NS, name),
    identity: `rbac-${name}`,
    logger,
    leaseDurationMs: 3_000,
    renewDeadlineMs: 2_000,
    retryPeriodMs: 200,
  });
  elector.start();
  const timeout = new AbortController();
  const error = await Promise.race([
    settled,
    new Promise<never>((_, reject) => {
      const id = setTimeout(
        () => reject(new Error(`elector on ${name}: neither leading nor denied in 10 s`)),
        10_000,
      );
      timeout.signal.addEventListener("abort", () => clearTimeout(id));
    }),
  ]).finally(() => timeout.abort());
  const leading = elector.leading;
  await elector.stop(2_000);
  const stored = await cluster.request(
    "GET",
    `/apis/${COORDINATION}/v1/namespaces/${SA_NS}/${LEASES}/${name}`,
  );
  return { name, error, leading, stored };
}

/**
 * Creates a fresh Ready DGD for the scenario (so a write is always needed) and sends the request.
 * Returns the answer and the names involved.
 */
async function runScenario(cluster: KubeCluster, kube: KubeConnector, scenario: Scenario) {
  const dgd = `${scenario}-${++counter}`;
  const ns = scenario === "blocking" ? NS : QUIET;
  const object = v1alpha1Dgd(dgd, ns, {
    Pre: { role: "prefill", replicas: 1, adapter: scenario === "adapter" },
    Dec: { role: "decode", replicas: 1 },
  });
  if (scenario === "blocking") {
    // The stand-in operator owns this DGD's status: let it alone report the first generation Ready
    // (marking it Ready here too would race with the operator's own Ready=False).
    await createDgd(cluster, object, { ready: false });
    await waitSettled(cluster, ns, dgd);
  } else {
    await createDgd(cluster, object);
  }
  if (scenario === "events") {
    // A paused DGD: the same refusal twice is one Event (create), then its series (patch).
    const r = await cluster.request("PATCH", `/apis/${GROUP}/v1alpha1/namespaces/${ns}/${DGD}/${dgd}`, {
      metadata: { annotations: { "globalplanner.dynamo.example/paused": "true" } },
    });
    assert.ok(r.ok, r.text);
    const request = {
      graph_deployment_name: dgd,
      target_replicas: [{ sub_component_type: "prefill", desired_replicas: 3 }],
    };
    await scale(kube, ns, request);
    const response = await scale(kube, ns, request);
    await kube.events!.flush();
    return { dgd, ns, adapter: `${dgd}-pre`, response };
  }
  const response = await scale(kube, ns, {
    graph_deployment_name: dgd,
    blocking: scenario === "blocking",
    target_replicas: [{ sub_component_type: "prefill", desired_replicas: 3 }],
  });
  return { dgd, ns, adapter: `${dgd}-pre`, response };
}

/** Waits until the API server's authorizer applies `rules` to the ServiceAccount (RBAC is cached). */
async function waitForRbac(
  cluster: KubeCluster,
  serviceAccount: string,
  allowed: Rule[],
  denied?: string,
  namespace = NS,
) {
  const checks: { resource: string; verb: string; expect: boolean }[] = [];
  for (const rule of allowed) {
    for (const resource of rule.resources) {
      for (const verb of rule.verbs) checks.push({ resource, verb, expect: true });
    }
  }
  if (denied) {
    const [resource, verb] = denied.split(" ");
    checks.push({ resource, verb, expect: false });
  }
  let pending = "";
  await waitFor(async () => {
    pending = "";
    for (const c of checks) {
      const [resource, subresource] = c.resource.split("/");
      const review = await cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: `system:serviceaccount:${SA_NS}:${serviceAccount}`,
          groups: ["system:serviceaccounts", `system:serviceaccounts:${SA_NS}`, "system:authenticated"],
          resourceAttributes: { namespace, group: groupOf(resource), resource, subresource, verb: c.verb },
        },
      });
      assert.ok(review.ok, `SubjectAccessReview: ${review.status} ${review.text}`);
      if (Boolean(review.json.status?.allowed) !== c.expect) pending = `${c.verb} ${c.resource}`;
    }
    return pending === "";
  }, `RBAC for ${serviceAccount} in effect (pending: ${pending || "?"})`).catch((error) => {
    throw new Error(`RBAC for ${serviceAccount} not in effect: ${pending}`, { cause: error });
  });
}

/** `rules` without `verb` on `resource`, one resource per rule (rules left with no verb dropped). */
function withoutVerb(rules: Rule[], resource: string, verb: string): Rule[] {
  return rules.flatMap((r) =>
    r.resources.map((res) => ({
      apiGroups: r.apiGroups,
      resources: [res],
      verbs: res === resource ? r.verbs.filter((v) => v !== verb) : r.verbs,
    }))
  ).filter((r) => r.verbs.length > 0);
}

/**
 * A ServiceAccount `name` bound to `rules` (a Role in SA_NS, or a ClusterRole), once the
 * authorizer applies them and denies `denied` ("resource verb").
 */
async function grant(
  cluster: KubeCluster,
  name: string,
  rules: Rule[],
  denied: string,
  scope: "namespace" | "cluster",
): Promise<void> {
  const rbac = "rbac.authorization.k8s.io";
  const role = scope === "cluster" ? "ClusterRole" : "Role";
  const metadata = scope === "cluster" ? { name } : { name, namespace: SA_NS };
  await cluster.createServiceAccount(SA_NS, name);
  await applyManifest(cluster, [
    { apiVersion: `${rbac}/v1`, kind: role, metadata, rules },
    {
      apiVersion: `${rbac}/v1`,
      kind: `${role}Binding`,
      metadata,
      roleRef: { apiGroup: rbac, kind: role, name },
      subjects: [{ kind: "ServiceAccount", name, namespace: SA_NS }],
    },
  ]);
  await waitForRbac(cluster, name, rules, denied, scope === "cluster" ? NS : SA_NS);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

Deno.test({
  name: "deploy/rbac.yaml grants exactly the verbs the Kubernetes connector needs",
  async fn(t) {
    const cluster = await startKubeCluster({ extraCrdFiles: [upstreamDwmCrd()] });
    const operator = startFakeOperator(cluster, NS, { readyDelayMs: 500 });
    const opened: KubeConnector[] = [];
    try {
      await cluster.createNamespace(NS);
      await cluster.createNamespace(QUIET);
      await cluster.createNamespace(SA_NS);
      const manifests = parseAllDocuments(await Deno.readTextFile(`${PROJECT_ROOT}/deploy/rbac.yaml`))
        .map((d) => d.toJSON());
      await applyManifest(cluster, manifests);
      const role = manifests.find((m) => m.kind === "ClusterRole");
      assert.ok(role, "deploy/rbac.yaml has a ClusterRole");
      const rules = role.rules as Rule[];
      const binding = manifests.find((m) => m.kind === "ClusterRoleBinding");
      assert.equal(binding?.roleRef.name, role.metadata.name);
      assert.deepEqual(binding?.subjects, [{
        kind: "ServiceAccount",
        name: "global-planner",
        namespace: SA_NS,
      }]);

      // Discovery's Role: namespaced, in the ServiceAccount's (the pod's) namespace, bound to it.
      const namespacedRole = (name: string) => {
        const role = manifests.find((m) => m.kind === "Role" && m.metadata.name === name);
        assert.equal(role?.metadata.namespace, SA_NS, `Role ${name} in the pod's namespace`);
        const roleBinding = manifests.find((m) => m.kind === "RoleBinding" && m.roleRef?.name === name);
        assert.equal(roleBinding?.metadata.namespace, SA_NS);
        assert.equal(roleBinding?.roleRef.kind, "Role");
        assert.deepEqual(roleBinding?.subjects, binding?.subjects);
        return role.rules as Rule[];
      };
      const discoveryRules = namespacedRole("global-planner-discovery");
      const leaderRules = namespacedRole("global-planner-leader-election");
      assert.equal(manifests.filter((m) => m.kind === "Role").length, 2, "no other Role");

      const pairs = [...rules, ...discoveryRules, ...leaderRules].flatMap((r) => {
        assert.deepEqual(r.apiGroups, r.resources.map(groupOf), "nvidia.com resources, Events and the Lease");
        return r.resources.flatMap((res) => r.verbs.map((verb) => `${res} ${verb}`));
      });
      assert.deepEqual(
        [...pairs].sort(),
        Object.keys(NEEDED_BY).sort(),
        "every permission of the manifest has a scenario here (and nothing else is granted)",
      );

      await waitForRbac(cluster, "global-planner", rules);
      await waitForRbac(cluster, "global-planner", discoveryRules, undefined, SA_NS);
      await waitForRbac(cluster, "global-planner", leaderRules, undefined, SA_NS);
      const full = await connectAs(cluster, "global-planner");
      opened.push(full.kube);

      await t.step("the manifest's ServiceAccount: plain request (get + patch DGD)", async () => {
        const { dgd, ns, response } = await runScenario(cluster, full.kube, "plain");
        assert.deepEqual(response, {
          status: "success",
          message: `Scaled ${dgd} successfully`,
          current_replicas: { prefill: 3, decode: 1 },
        });
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", ns, dgd)).Pre, 3);
      });

      await t.step(
        "the manifest's ServiceAccount: request under a GPU budget (list + watch cache)",
        async () => {
          const budgeted = await connectAs(cluster, "global-planner", true);
          opened.push(budgeted.kube);
          const { dgd, response } = await runScenario(cluster, budgeted.kube, "budget");
          assert.deepEqual(response, {
            status: "success",
            message: `Scaled ${dgd} successfully`,
            current_replicas: { prefill: 3, decode: 1 },
          });
          assert.equal(budgeted.kube.cacheState()?.synced, true);
        },
      );

      await t.step("the manifest's ServiceAccount: adapter request (get + patch /scale)", async () => {
        const { dgd, ns, adapter, response } = await runScenario(cluster, full.kube, "adapter");
        assert.deepEqual(response, {
          status: "success",
          message: `Scaled ${dgd} successfully`,
          current_replicas: { prefill: 3, decode: 1 },
        });
        const scaled = await cluster.request(
          "GET",
          `/apis/nvidia.com/v1beta1/namespaces/${ns}/dynamographdeploymentscalingadapters/${adapter}`,
        );
        assert.equal(scaled.json.spec.replicas, 3);
      });

      await t.step("the manifest's ServiceAccount: blocking request (watch DGD until Ready)", async () => {
        const { dgd, response } = await runScenario(cluster, full.kube, "blocking");
        const answeredAt = Date.now();
        assert.equal(response.status, "success", response.message);
        const now = await readDgd(cluster, "v1alpha1", NS, dgd);
        assert.equal(now.status.observedGeneration, now.metadata.generation);
        // The answer waited for the operator: it came after the Ready write of the new generation.
        const readySent = operator.readySentAt(dgd, now.metadata.generation);
        assert.ok(
          readySent !== undefined && readySent <= answeredAt,
          `Ready sent ${readySent}, answered ${answeredAt}`,
        );
        assert.equal(now.status.conditions[0].status, "True");
        assert.deepEqual(full.logs, [], "no warnings with the full manifest");
      });

      await t.step("the manifest's ServiceAccount: Events (create, then patch the series)", async () => {
        const recording = await connectAs(cluster, "global-planner", false, true);
        opened.push(recording.kube);
        const { dgd, ns, response } = await runScenario(cluster, recording.kube, "events");
        assert.equal(response.status, "rejected");
        assert.deepEqual(recording.logs, [], "no warnings with the full manifest");
        const list = await cluster.request("GET", `/apis/${EVENTS_GROUP}/v1/namespaces/${ns}/${EVENTS}`);
        // deno-lint-ignore no-explicit-any
        const paused = list.json.items.filter((e: any) => e.regarding.name === dgd);
        assert.equal(paused.length, 1);
        assert.equal(paused[0].series.count, 2);
      });

      await t.step("the manifest's ServiceAccount: kubernetes discovery (apply + watch its CR)", async () => {
        const run = await runDiscovery(full.kube);
        assert.equal(run.error, undefined);
        assert.equal(run.discovery.healthy, true);
        // The watch is what re-applies a deleted CR: prove it works under this identity.
        const path = `/apis/${GROUP}/v1alpha1/namespaces/${SA_NS}/${DWM}/${run.name}`;
        assert.equal((await cluster.request("DELETE", path)).status, 200);
        await waitFor(async () => (await cluster.request("GET", path)).status === 200, "the CR re-applied");
        await run.discovery.close();
        assert.deepEqual(
          run.logs.filter((l) => l.level !== "info").map((l) => l.message),
          ["DynamoWorkerMetadata deleted by someone else; re-applying"],
          "no other warning with the full manifest",
        );
      });

      await t.step(
        "the manifest's ServiceAccount: leader election (create, then get + update its Lease)",
        async () => {
          for (const fresh of [true, false]) {
            const run = await runLeader(cluster, full.kube, fresh);
            assert.equal(run.error, undefined);
            assert.equal(run.leading, true);
            // Released on stop: holder cleared, the duration kept.
            assert.equal(run.stored.json.spec.holderIdentity ?? "", "");
            assert.equal(run.stored.json.spec.leaseDurationSeconds, 3);
            assert.equal(run.stored.json.spec.leaseTransitions, fresh ? 0 : 1);
          }
        },
      );

      for (const pair of Object.keys(NEEDED_BY)) {
        const [resource, verb] = pair.split(" ");
        const scenario = NEEDED_BY[pair];
        await t.step(`without ${verb} on ${resource}: the ${scenario} request fails naming it`, async () => {
          const name = `gp-minus-${verb}-${resource.replace("/", "-")}`.slice(0, 63);
          if (scenario === "leader") {
            await grant(cluster, name, withoutVerb(leaderRules, resource, verb), pair, "namespace");
            const weak = await connectAs(cluster, name);
            opened.push(weak.kube);
            // Without create, the Lease must be missing for the elector to need it.
            const run = await runLeader(cluster, weak.kube, verb === "create");
            assert.equal(run.leading, false);
            assert.ok(run.error, "the attempt fails");
            assert.match(
              run.error,
              new RegExp(
                `^Kubernetes denied ${verb} on ${escape(`${LEASES}.${COORDINATION}`)} '${run.name}' ` +
                  `in namespace '${SA_NS}' \\(HTTP 403\\): the service account needs RBAC verb "${verb}" ` +
                  `on "${LEASES}" in API group "coordination\\.k8s\\.io" in namespace "${SA_NS}"$`,
              ),
            );
            return;
          }
          if (scenario === "discovery") {
            await grant(cluster, name, withoutVerb(discoveryRules, resource, verb), pair, "namespace");
            const weak = await connectAs(cluster, name);
            opened.push(weak.kube);
            const run = await runDiscovery(weak.kube);
            const denied = new RegExp(
              `Kubernetes denied ${verb} on ${
                escape(`${DWM}.${GROUP}`)
              } '${run.name}' in namespace '${SA_NS}' ` +
                `\\(HTTP 403\\): the service account needs RBAC verb "${verb}" on "${DWM}" ` +
                `in API group "nvidia\\.com" in namespace "${SA_NS}"`,
            );
            if (verb !== "watch") {
              // Nothing can be published: the start fails at once (no retrying a 403), naming it.
              assert.ok(run.error, "register must fail");
              assert.match(
                run.error.message,
                new RegExp(`^cannot publish DynamoWorkerMetadata '${run.name}'`),
              );
              assert.match(run.error.message, denied);
            } else {
              // Published, but it could not heal itself: the watch failure names the permission.
              assert.equal(run.error, undefined);
              await run.watchFailed;
              const line = run.logs.find((l) =>
                l.message === "DynamoWorkerMetadata watch failed; re-applying after a pause"
              )!;
              assert.equal(line.status, 403);
              assert.match(String(line.error), denied);
            }
            await run.discovery.close();
            return;
          }
          await grant(cluster, name, withoutVerb(rules, resource, verb), pair, "cluster");
          const weak = await connectAs(cluster, name, scenario === "budget", scenario === "events");
          opened.push(weak.kube);

          const { dgd, ns, adapter, response } = await runScenario(cluster, weak.kube, scenario);
          const object = resource === SCALE ? adapter : dgd;
          const denied = new RegExp(
            `Kubernetes denied ${verb} on ${
              escape(
                resource === SCALE
                  ? `dynamographdeploymentscalingadapters.${GROUP}/scale`
                  : `${resource}.${GROUP}`,
              )
            } '${object}' in namespace '${ns}' ` +
              `\\(HTTP 403\\): the service account needs RBAC verb "${verb}" on "${escape(resource)}" ` +
              `in API group "nvidia\\.com" in namespace "${ns}"$`,
          );
          if (scenario === "events") {
            // The decision is unaffected; the failed Event write is logged, naming the permission.
            assert.equal(response.status, "rejected", JSON.stringify(response));
            assert.match(response.message, /is paused/);
            const line = weak.logs.find((l) =>
              String(l.message).startsWith("cannot record a Kubernetes Event")
            );
            assert.ok(line, JSON.stringify(weak.logs));
            assert.match(
              String(line.error),
              new RegExp(
                `Kubernetes denied ${verb} on ${
                  escape(`${EVENTS}.${EVENTS_GROUP}`)
                }.* in namespace '${ns}' ` +
                  `\\(HTTP 403\\): the service account needs RBAC verb "${verb}" on "${EVENTS}" ` +
                  `in API group "events\\.k8s\\.io" in namespace "${ns}"$`,
              ),
            );
            return;
          }
          if (scenario === "budget") {
            // The cache cannot list: the budget fails closed, naming the missing permission.
            assert.equal(response.status, "error", JSON.stringify(response));
            assert.match(
              response.message,
              new RegExp(
                `^GPU budget cannot be checked: the DynamoGraphDeployment cache has not listed namespace '${ns}' yet ` +
                  `\\(.*Kubernetes denied list on dynamographdeployments\\.nvidia\\.com in namespace '${ns}' \\(HTTP 403\\)` +
                  `: the service account needs RBAC verb "list"`,
              ),
            );
            assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", ns, dgd)).Pre, 1, "nothing written");
            return;
          }
          if (verb !== "watch") {
            assert.equal(response.status, "error", JSON.stringify(response));
            assert.match(response.message, new RegExp(`^${denied.source}`));
            assert.deepEqual(response.current_replicas, {});
            if (verb === "get" || resource === DGD) {
              // Nothing was written: the denial came before (get) or is the write itself (patch).
              assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", ns, dgd)).Pre, 1);
            } else {
              const path =
                `/apis/nvidia.com/v1beta1/namespaces/${ns}/dynamographdeploymentscalingadapters/${adapter}`;
              assert.equal((await cluster.request("GET", path)).json.spec.replicas, 1, "adapter not written");
            }
            return;
          }
          // The write (get + patch) went through; the denial is on the watch of the blocking wait.
          // The answer must name it: a 403 does not go away by retrying, and a wait that quietly
          // re-reads instead would hide a broken RBAC setup and end in the blocking timeout's text,
          // naming nothing, which the match on the denial below refuses.
          assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", ns, dgd)).Pre, 3);
          const diagnosis = `answer ${JSON.stringify(response)}; connector logs: ${
            JSON.stringify(weak.logs.slice(0, 3))
          } (${weak.logs.length} lines)`;
          assert.equal(response.status, "error", diagnosis);
          assert.match(response.message, /\bwatch\b/, diagnosis);
          assert.match(response.message, new RegExp(`^${denied.source}`), diagnosis);
        });
      }
    } finally {
      for (const kube of opened) kube.close();
      await operator.stop();
      await cluster.stop();
      for (const dir of tempDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
