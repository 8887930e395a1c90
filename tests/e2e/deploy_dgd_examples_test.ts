/**
 * deploy/global-planner-dgd.{v1beta1,v1alpha1}.yaml: the control DynamoGraphDeployment examples.
 * Each document passes a strict server-side dry run on a real kube-apiserver — the v1alpha1 one
 * against upstream's DGD CRD (deploy/crds/), the v1beta1 one against the project's v1beta1 test CRD
 * (upstream 1.6.1's planner reads and writes DGDs at v1beta1). The reduced CRD keeps the pod
 * template as unknown fields, so the pod the operator would make from each component is dry-run as
 * a Pod too (strict, Pod Security "restricted"): a typo in the pod template fails there. And our
 * service, run as that pod (the operator's env, the example's args, the operator's planner
 * ServiceAccount with the example's binding), scales a model DGD for upstream's own planner client.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { applyManifest, createDgd, readDgd, replicasOf, v1beta1Dgd } from "../support/dgd_fixtures.ts";
import { type KubeCluster, startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { putSlice } from "../support/kube_discovery.ts";
import { PROJECT_ROOT } from "../support/paths.ts";
import { assertVenv, runDriver } from "../support/python.ts";
import { startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

// deno-lint-ignore no-explicit-any
type Manifest = Record<string, any>;

const V1BETA1 = "deploy/global-planner-dgd.v1beta1.yaml";
const V1ALPHA1 = "deploy/global-planner-dgd.v1alpha1.yaml";

async function readManifests(file: string): Promise<Manifest[]> {
  const docs = parseAllDocuments(await Deno.readTextFile(`${PROJECT_ROOT}/${file}`));
  for (const doc of docs) assert.deepEqual(doc.errors, [], `${file}: YAML errors`);
  return docs.map((d) => d.toJSON()).filter((d) => d !== null);
}

const byKind = (docs: Manifest[], kind: string): Manifest => {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0];
};

function collection(doc: Manifest): string {
  switch (doc.kind) {
    case "ClusterRoleBinding":
      return "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
    case "Role":
    case "RoleBinding":
      return `/apis/rbac.authorization.k8s.io/v1/namespaces/${doc.metadata.namespace}/${doc.kind.toLowerCase()}s`;
    case "DynamoGraphDeployment":
      return `/apis/${doc.apiVersion}/namespaces/${doc.metadata.namespace}/dynamographdeployments`;
    default:
      throw new Error(`unexpected kind ${doc.kind}`);
  }
}

async function dryRun(cluster: KubeCluster, doc: Manifest, path = collection(doc)) {
  return await cluster.request("POST", `${path}?dryRun=All&fieldValidation=Strict`, doc);
}

/** Every document is accepted as it is, with no warning (strict validation turns those into errors). */
async function assertAccepted(cluster: KubeCluster, file: string): Promise<void> {
  for (const doc of await readManifests(file)) {
    const r = await dryRun(cluster, doc);
    assert.ok(r.ok, `${file}: ${doc.kind} ${doc.metadata.name}: HTTP ${r.status} ${r.text}`);
    assert.equal(r.json.metadata.name, doc.metadata.name);
    assert.equal(r.headers.get("warning"), null, `${file}: ${doc.kind}: ${r.headers.get("warning")}`);
  }
}

/**
 * The pod the Dynamo operator makes for a `planner` component: the component's own pod spec plus
 * the operator's planner defaults (upstream ai-dynamo/dynamo,
 * deploy/operator/internal/dynamo/component_planner.go and component_common.go).
 */
function operatorPlannerPod(dgd: Manifest, component: string, spec: Manifest): Manifest {
  const pod = structuredClone(spec);
  pod.serviceAccountName ??= "planner-serviceaccount";
  const main = pod.containers.find((c: Manifest) => c.name === "main");
  assert.ok(main, "the pod spec has the operator's main container");
  main.ports = [
    { name: "metrics", containerPort: 9085, protocol: "TCP" },
    { name: "system", containerPort: 9090, protocol: "TCP" },
  ];
  const field = (fieldPath: string) => ({ valueFrom: { fieldRef: { fieldPath } } });
  main.env = [
    { name: "DYN_NAMESPACE", value: `${dgd.metadata.namespace}-${dgd.metadata.name}` },
    { name: "DYN_COMPONENT", value: "planner" },
    { name: "DYN_PARENT_DGD_K8S_NAME", value: dgd.metadata.name },
    { name: "DYN_PARENT_DGD_K8S_NAMESPACE", value: dgd.metadata.namespace },
    { name: "POD_NAME", ...field("metadata.name") },
    { name: "POD_NAMESPACE", ...field("metadata.namespace") },
    { name: "POD_UID", ...field("metadata.uid") },
    { name: "DYN_DISCOVERY_BACKEND", value: "kubernetes" },
    { name: "PLANNER_PROMETHEUS_PORT", value: "9085" },
    { name: "DYN_SYSTEM_PORT", value: "9090" },
    ...(main.env ?? []),
  ];
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: `${dgd.metadata.name}-${component.toLowerCase()}-0`,
      namespace: dgd.metadata.namespace,
    },
    spec: pod,
  };
}

/** v1alpha1 → the same pod spec: extraPodSpec with mainContainer as `main`, probes from the service. */
function v1alpha1PodSpec(service: Manifest): Manifest {
  const { mainContainer, ...rest } = structuredClone(service.extraPodSpec);
  return {
    ...rest,
    containers: [{
      name: "main",
      ...mainContainer,
      readinessProbe: service.readinessProbe,
      livenessProbe: service.livenessProbe,
      resources: service.resources,
    }],
  };
}

async function restrictedNamespace(cluster: KubeCluster, ns: string): Promise<void> {
  await cluster.createNamespace(ns);
  const r = await cluster.request("PATCH", `/api/v1/namespaces/${ns}`, {
    metadata: { labels: { "pod-security.kubernetes.io/enforce": "restricted" } },
  });
  assert.ok(r.ok, r.text);
}

async function assertPodAccepted(cluster: KubeCluster, pod: Manifest): Promise<void> {
  const r = await dryRun(cluster, pod, `/api/v1/namespaces/${pod.metadata.namespace}/pods`);
  assert.ok(r.ok, `the operator's pod: HTTP ${r.status} ${r.text}`);
  assert.equal(r.headers.get("warning"), null, `${r.headers.get("warning")}`);
}

/** What the examples must say, whatever their version: image, command, flags, probes, identity. */
function assertGlobalPlannerContainer(dgd: Manifest, main: Manifest): void {
  assert.match(main.image, /^global-planner[:@]/);
  // The operator's default command is `/bin/sh -c`; the distroless image has no shell.
  assert.deepEqual(main.command, ["/global-planner"]);
  assert.equal(main.args[0], "--managed-namespaces");
  // Leader election on: two replicas, one of them leading.
  assert.equal(main.args.at(-1), "--leader-elect");
  const managed = main.args.slice(1, -1);
  assert.ok(managed.length > 0);
  // Dynamo namespaces of DGDs are <k8s namespace>-<DGD name>; the callers live beside this DGD.
  for (const ns of managed) assert.ok(ns.startsWith(`${dgd.metadata.namespace}-`), ns);
  assert.deepEqual(main.readinessProbe.httpGet, { path: "/health", port: "system" });
  assert.deepEqual(main.livenessProbe.httpGet, { path: "/live", port: "system" });
  // More tolerant than the operator's planner default (one failed /live restarts the pod).
  assert.ok(main.livenessProbe.failureThreshold * main.livenessProbe.periodSeconds >= 30);
  assert.equal(main.securityContext.readOnlyRootFilesystem, true);
  assert.deepEqual(main.volumeMounts, [{ name: "tmp", mountPath: "/tmp" }]);
}

async function assertBinding(docs: Manifest[], dgd: Manifest): Promise<void> {
  const binding = byKind(docs, "ClusterRoleBinding");
  const rbac = parseAllDocuments(await Deno.readTextFile(`${PROJECT_ROOT}/deploy/rbac.yaml`))
    .map((d) => d.toJSON());
  const clusterRoles = rbac.filter((d) => d?.kind === "ClusterRole").map((d) => d.metadata.name);
  assert.deepEqual(binding.roleRef, {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "ClusterRole",
    name: binding.roleRef.name,
  });
  assert.ok(clusterRoles.includes(binding.roleRef.name), `${binding.roleRef.name} is in deploy/rbac.yaml`);
  assert.deepEqual(binding.subjects, [
    { kind: "ServiceAccount", name: "planner-serviceaccount", namespace: dgd.metadata.namespace },
  ]);
  // The Lease's RBAC in the pod's namespace: get, create, update on leases only.
  const role = byKind(docs, "Role");
  assert.equal(role.metadata.namespace, dgd.metadata.namespace);
  assert.deepEqual(role.rules, [
    { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update"] },
  ]);
  const roleBinding = byKind(docs, "RoleBinding");
  assert.equal(roleBinding.metadata.namespace, dgd.metadata.namespace);
  assert.deepEqual(roleBinding.roleRef, {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "Role",
    name: role.metadata.name,
  });
  assert.deepEqual(roleBinding.subjects, binding.subjects);
}

Deno.test({
  name: "deploy/global-planner-dgd.v1beta1.yaml: a control DGD whose planner component runs our image",
  async fn(t) {
    // The project's v1alpha1 + v1beta1 DGD CRD, and upstream's DynamoWorkerMetadata CRD.
    const cluster = await startKubeCluster({ extraCrdFiles: [upstreamDwmCrd()] });
    try {
      const docs = await readManifests(V1BETA1);
      const dgd = byKind(docs, "DynamoGraphDeployment");
      await restrictedNamespace(cluster, dgd.metadata.namespace);

      await t.step("every document passes a strict server-side dry run", async () => {
        await assertAccepted(cluster, V1BETA1);
      });

      await t.step("the GlobalPlanner component: type planner, our image and flags, probes", async () => {
        assert.equal(dgd.apiVersion, "nvidia.com/v1beta1");
        assert.equal(dgd.spec.components.length, 1);
        const [c] = dgd.spec.components;
        assert.equal(c.name, "GlobalPlanner");
        assert.equal(c.type, "planner");
        assert.equal(c.replicas, 2);
        const [main] = c.podTemplate.spec.containers;
        assert.equal(main.name, "main");
        assertGlobalPlannerContainer(dgd, main);
        await assertBinding(docs, dgd);
      });

      await t.step("the pod the operator would make is a valid, restricted Pod", async () => {
        const [c] = dgd.spec.components;
        await assertPodAccepted(cluster, operatorPlannerPod(dgd, c.name, c.podTemplate.spec));
      });

      await t.step("the pod dry run catches what the reduced CRD lets through", async () => {
        const typo = structuredClone(dgd);
        const main = typo.spec.components[0].podTemplate.spec.containers[0];
        main.readinesProbe = main.readinessProbe;
        delete main.readinessProbe;
        const accepted = await dryRun(cluster, typo); // unknown fields are kept in a pod template
        assert.ok(accepted.ok, accepted.text);
        const c = typo.spec.components[0];
        const r = await dryRun(
          cluster,
          operatorPlannerPod(typo, c.name, c.podTemplate.spec),
          `/api/v1/namespaces/${dgd.metadata.namespace}/pods`,
        );
        assert.equal(r.status, 400, r.text);
        assert.match(r.json.message, /unknown field "spec\.containers\[0\]\.readinesProbe"/);

        const escalating = structuredClone(dgd.spec.components[0].podTemplate.spec);
        escalating.containers[0].securityContext.allowPrivilegeEscalation = true;
        const refused = await dryRun(
          cluster,
          operatorPlannerPod(dgd, "GlobalPlanner", escalating),
          `/api/v1/namespaces/${dgd.metadata.namespace}/pods`,
        );
        assert.equal(refused.status, 403, refused.text);
        assert.match(
          refused.json.message,
          /violates PodSecurity "restricted:latest": allowPrivilegeEscalation/,
        );
      });

      await t.step(
        "run as the operator's pod, it scales a model DGD for upstream's planner client",
        async () => {
          await scalesForUpstreamPlanner(cluster, docs, dgd);
        },
      );
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "deploy/global-planner-dgd.v1alpha1.yaml: accepted by upstream's DGD CRD, same pod as v1beta1",
  async fn(t) {
    const cluster = await startKubeCluster({ dgdCrd: "upstream-v1alpha1" });
    try {
      const docs = await readManifests(V1ALPHA1);
      const dgd = byKind(docs, "DynamoGraphDeployment");
      await restrictedNamespace(cluster, dgd.metadata.namespace);

      await t.step("every document passes a strict server-side dry run", async () => {
        await assertAccepted(cluster, V1ALPHA1);
      });

      await t.step("the GlobalPlanner service: componentType planner, our image and flags", async () => {
        assert.equal(dgd.apiVersion, "nvidia.com/v1alpha1");
        assert.deepEqual(Object.keys(dgd.spec.services), ["GlobalPlanner"]);
        const service = dgd.spec.services.GlobalPlanner;
        assert.equal(service.componentType, "planner");
        assert.equal(service.replicas, 2);
        assertGlobalPlannerContainer(dgd, v1alpha1PodSpec(service).containers[0]);
        await assertBinding(docs, dgd);
      });

      await t.step("upstream's CRD validates the pod spec: a misspelled field is refused", async () => {
        const typo = structuredClone(dgd);
        typo.spec.services.GlobalPlanner.extraPodSpec.mainContainer.comand = ["/global-planner"];
        const r = await dryRun(cluster, typo);
        assert.equal(r.status, 400, r.text);
        assert.match(
          r.json.message,
          /unknown field "spec\.services\.GlobalPlanner\.extraPodSpec\.mainContainer\.comand"/,
        );
      });

      await t.step(
        "the operator's pod is valid and restricted, and the same as the v1beta1 example's",
        async () => {
          const spec = v1alpha1PodSpec(dgd.spec.services.GlobalPlanner);
          await assertPodAccepted(cluster, operatorPlannerPod(dgd, "GlobalPlanner", spec));
          const v1beta1 = byKind(await readManifests(V1BETA1), "DynamoGraphDeployment");
          assert.deepEqual(v1beta1.metadata, dgd.metadata);
          assert.deepEqual(spec, v1beta1.spec.components[0].podTemplate.spec);
          assert.deepEqual(
            byKind(await readManifests(V1BETA1), "ClusterRoleBinding"),
            byKind(docs, "ClusterRoleBinding"),
          );
        },
      );
    } finally {
      await cluster.stop();
    }
  },
});

/**
 * The operator's pod of the v1beta1 example, created for real, with its downward-API env resolved
 * against it; our service runs with that env and the example's args, in-cluster as the operator's
 * `planner-serviceaccount`, with deploy/rbac.yaml and the example's ClusterRoleBinding applied.
 * The DynamoWorkerMetadata verbs in the DGD's namespace are granted here by a Role like
 * deploy/rbac.yaml's discovery Role: on a real cluster the operator's planner RBAC provides them
 * (upstream's own Global Planner registers the same way under the same ServiceAccount). No
 * kubelet or EndpointSlice controller runs: the test plays them (readiness, then the ready slice).
 * A real 1.6.1 local planner of model DGD `llama` (upstream's GlobalPlannerConnector) scales it.
 */
async function scalesForUpstreamPlanner(
  cluster: KubeCluster,
  docs: Manifest[],
  dgd: Manifest,
): Promise<void> {
  await assertVenv();
  const ns = dgd.metadata.namespace;
  const [component] = dgd.spec.components;
  const podObject = operatorPlannerPod(dgd, component.name, component.podTemplate.spec);
  const created = await cluster.request("POST", `/api/v1/namespaces/${ns}/pods`, podObject);
  assert.ok(created.ok, `HTTP ${created.status} ${created.text}`);
  const pod = created.json as Manifest;
  const [main] = pod.spec.containers;
  const env: Record<string, string> = {};
  for (const e of main.env as Manifest[]) {
    const path: string | undefined = e.valueFrom?.fieldRef?.fieldPath;
    env[e.name] = e.value ?? path!.split(".").reduce((o: Manifest, k: string) => o[k], pod);
  }
  assert.equal(env.DYN_NAMESPACE, "team-a-gp-ctrl");

  const rbac = parseAllDocuments(await Deno.readTextFile(`${PROJECT_ROOT}/deploy/rbac.yaml`))
    .map((d) => d.toJSON()).filter((d) => d);
  for (const n of new Set(rbac.map((d) => d.metadata.namespace).filter(Boolean))) {
    await cluster.createNamespace(n);
  }
  await applyManifest(cluster, rbac);
  await applyManifest(cluster, [byKind(docs, "ClusterRoleBinding")]);
  // The example's Lease Role: --leader-elect needs it.
  await applyManifest(cluster, [byKind(docs, "Role"), byKind(docs, "RoleBinding")]);
  const discoveryRole = rbac.find((d) =>
    d.kind === "Role" && /dynamoworkermetadatas/.test(JSON.stringify(d))
  );
  assert.ok(discoveryRole, "deploy/rbac.yaml has a discovery Role");
  await applyManifest(cluster, [
    { ...discoveryRole, metadata: { name: "operator-planner-discovery", namespace: ns } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "operator-planner-discovery", namespace: ns },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "operator-planner-discovery" },
      subjects: [{ kind: "ServiceAccount", name: pod.spec.serviceAccountName, namespace: ns }],
    },
  ]);
  await createDgd(
    cluster,
    v1beta1Dgd("llama", ns, {
      prefill: { type: "prefill", replicas: 1 },
      decode: { type: "decode", replicas: 1 },
    }),
  );

  const saDir = await Deno.makeTempDir({ prefix: "gp-dgd-sa-" }); // under /tmp: the service reads it
  await cluster.writeServiceAccountDir(
    saDir,
    ns,
    await cluster.createServiceAccountToken(ns, pod.spec.serviceAccountName),
  );
  const ours = await startService({
    args: [...main.args, "--service-account-dir", saDir],
    // A free system port rather than the operator's 9090 (other tests run beside this one).
    env: { ...env, ...cluster.inClusterEnv(), DYN_SYSTEM_PORT: "0", DYN_SYSTEM_HOST: "127.0.0.1" },
  });
  try {
    const status = await ours.waitForLog((l) => l.message === "system status server listening");
    // The one replica here takes the Lease (POD_NAMESPACE and POD_NAME from the operator's env).
    await ours.waitForLog((l) => l.message === "serving as leader", 30_000);
    const probe = await fetch(`http://127.0.0.1:${status.port}${main.readinessProbe.httpGet.path}`);
    assert.equal(probe.status, 200, await probe.text());
    await putSlice(cluster, ns, "gp-ctrl-globalplanner", [{
      pod: pod.metadata.name,
      uid: pod.metadata.uid,
      ready: true,
    }]);

    const plan = async (caller: string) => {
      const r = await runDriver(
        "planner_client.py",
        ["--gp-namespace", env.DYN_NAMESPACE, "--caller-namespace", caller, "--dgd", "llama"]
          .concat(["--k8s-namespace", ns, "--prefill", "2", "--decode", "3", "--timeout", "40"]),
        {
          DYN_DISCOVERY_BACKEND: "kubernetes",
          KUBECONFIG: await cluster.kubeconfig(`${saDir}/planner-kubeconfig`, cluster.adminToken, ns),
          POD_NAME: "llama-planner-0",
          POD_UID: crypto.randomUUID(),
          POD_NAMESPACE: ns,
          DYN_PARENT_DGD_K8S_NAME: "llama",
          DYN_TCP_RPC_HOST: "127.0.0.1",
        },
        60_000,
      );
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr.slice(-2000)}`);
      return r.lines[0] as { response: { status: string; message: string } | null; raised: unknown };
    };
    // --managed-namespaces of the example: the Dynamo namespace of DGD llama is allowed…
    const allowed = await plan("team-a-llama");
    assert.equal(allowed.response?.status, "success", JSON.stringify(allowed));
    assert.equal(allowed.raised, null);
    assert.deepEqual(replicasOf(await readDgd(cluster, "v1beta1", ns, "llama")), { prefill: 2, decode: 3 });
    // …and one it does not name is refused with upstream's message.
    const refused = await plan("team-a-other");
    assert.equal(refused.response?.message, "Namespace team-a-other not authorized", JSON.stringify(refused));
  } finally {
    await ours.stop("SIGTERM");
    await Deno.remove(saDir, { recursive: true });
  }
}
