/**
 * deploy/rbac.yaml and deploy/deployment.yaml are valid Kubernetes objects: every document is sent
 * to a real kube-apiserver as a server-side dry run with strict field validation (unknown or
 * duplicate fields are errors), so a typo anywhere in a manifest fails here instead of at
 * `kubectl apply`. And our service, run with the Deployment's env and args, is found by a real
 * 1.6.1 caller through Kubernetes discovery with the identity the downward API gives and the
 * labels the Service gives its slices.
 * (The control DGD examples: deploy_dgd_examples_test.ts.)
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { type KubeCluster, startKubeCluster, upstreamDwmCrd } from "../support/kube_cluster.ts";
import { applyManifest } from "../support/dgd_fixtures.ts";
import { PROJECT_ROOT } from "../support/paths.ts";
import { assertVenv, runDriver } from "../support/python.ts";
import { startService } from "../support/service.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

// deno-lint-ignore no-explicit-any
type Manifest = Record<string, any>;

const MANIFESTS = ["deploy/rbac.yaml", "deploy/deployment.yaml"];

async function readManifests(file: string): Promise<Manifest[]> {
  const docs = parseAllDocuments(await Deno.readTextFile(`${PROJECT_ROOT}/${file}`));
  for (const doc of docs) assert.deepEqual(doc.errors, [], `${file}: YAML errors`);
  return docs.map((d) => d.toJSON()).filter((d) => d !== null);
}

/** The collection path of a manifest's kind, from the server's own discovery (no guessed plurals). */
async function collectionPath(cluster: KubeCluster, doc: Manifest): Promise<string> {
  const base = doc.apiVersion.includes("/") ? `/apis/${doc.apiVersion}` : `/api/${doc.apiVersion}`;
  const r = await cluster.request("GET", base);
  assert.equal(r.status, 200, `discovery ${base}: ${r.text}`);
  const resource = (r.json as { resources: { name: string; kind: string; namespaced: boolean }[] }).resources
    .find((res) => res.kind === doc.kind && !res.name.includes("/"));
  assert.ok(resource, `${doc.apiVersion} ${doc.kind} is not served`);
  if (!resource.namespaced) return `${base}/${resource.name}`;
  assert.ok(doc.metadata?.namespace, `${doc.kind} ${doc.metadata?.name} names no namespace`);
  return `${base}/namespaces/${doc.metadata.namespace}/${resource.name}`;
}

async function dryRunCreate(cluster: KubeCluster, doc: Manifest) {
  const path = await collectionPath(cluster, doc);
  return await cluster.request("POST", `${path}?dryRun=All&fieldValidation=Strict`, doc);
}

Deno.test({
  name: "deploy/rbac.yaml, deploy/deployment.yaml: strict server-side dry run; the pod is discoverable",
  async fn(t) {
    const cluster = await startKubeCluster({ extraCrdFiles: [upstreamDwmCrd()] });
    try {
      await cluster.createNamespace("dynamo-system");

      for (const file of MANIFESTS) {
        await t.step(`${file} is accepted`, async () => {
          const docs = await readManifests(file);
          assert.ok(docs.length > 0, `${file} has no documents`);
          for (const doc of docs) {
            const r = await dryRunCreate(cluster, doc);
            assert.ok(r.ok, `${file}: ${doc.kind} ${doc.metadata.name}: HTTP ${r.status} ${r.text}`);
            // A dry run persists nothing, and the server answers with the object it would store.
            assert.equal((r.json as Manifest).metadata.name, doc.metadata.name);
            assert.equal(r.headers.get("warning"), null, `${file}: ${doc.kind}: ${r.headers.get("warning")}`);
          }
        });
      }

      await t.step("Deployment: identity, env, probes, restricted Pod Security", async () => {
        const docs = await readManifests("deploy/deployment.yaml");
        const deployment = docs.find((d) => d.kind === "Deployment")!;
        const sa = (await readManifests("deploy/rbac.yaml")).find((d) => d.kind === "ServiceAccount")!;
        assert.equal(deployment.metadata.namespace, sa.metadata.namespace);
        const pod = deployment.spec.template.spec;
        assert.equal(pod.serviceAccountName, sa.metadata.name);
        assert.equal(pod.automountServiceAccountToken, true);
        const [c] = pod.containers;
        const env = Object.fromEntries(c.env.map((e: Manifest) => [e.name, e.value ?? e.valueFrom]));
        assert.deepEqual(env.POD_NAME, { fieldRef: { fieldPath: "metadata.name" } });
        assert.deepEqual(env.POD_UID, { fieldRef: { fieldPath: "metadata.uid" } });
        assert.deepEqual(env.POD_NAMESPACE, { fieldRef: { fieldPath: "metadata.namespace" } });
        assert.deepEqual(env.DYN_TCP_RPC_HOST, { fieldRef: { fieldPath: "status.podIP" } });
        assert.equal(env.DYN_DISCOVERY_BACKEND, "kubernetes");
        assert.equal(env.DYN_SYSTEM_PORT, "9090");
        assert.ok(env.DYN_NAMESPACE);
        assert.equal(env.ETCD_ENDPOINTS, undefined);
        // Two replicas, one leader: the others stand by, ready but unregistered.
        assert.equal(deployment.spec.replicas, 2);
        assert.equal(c.args[0], "--leader-elect");
        assert.equal(c.args[1], "--managed-namespaces");
        assert.deepEqual(c.ports, [{ name: "system", containerPort: 9090, protocol: "TCP" }]);
        assert.deepEqual(c.livenessProbe.httpGet, { path: "/live", port: "system" });
        assert.deepEqual(c.readinessProbe.httpGet, { path: "/health", port: "system" });
        assert.ok(c.resources.requests.cpu && c.resources.limits.memory);
        assert.deepEqual(c.securityContext, {
          runAsNonRoot: true,
          runAsUser: 65532,
          runAsGroup: 65532,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          privileged: false,
          capabilities: { drop: ["ALL"] },
          seccompProfile: { type: "RuntimeDefault" },
        });
        // The Pod Security "restricted" profile, checked by the server itself. The ServiceAccount is
        // created for real (the only object that is), as a real cluster's admission would require.
        const created = await cluster.request("POST", "/api/v1/namespaces/dynamo-system/serviceaccounts", sa);
        assert.ok(created.ok, created.text);
        const labelled = await cluster.request(
          "PATCH",
          "/api/v1/namespaces/dynamo-system",
          { metadata: { labels: { "pod-security.kubernetes.io/enforce": "restricted" } } },
        );
        assert.ok(labelled.ok, labelled.text);
        const pod0 = await cluster.request(
          "POST",
          "/api/v1/namespaces/dynamo-system/pods?dryRun=All&fieldValidation=Strict",
          {
            apiVersion: "v1",
            kind: "Pod",
            metadata: { name: "global-planner-restricted", namespace: "dynamo-system" },
            spec: pod,
          },
        );
        assert.ok(pod0.ok, `HTTP ${pod0.status} ${pod0.text}`);
        // …which does enforce: the same pod allowed to escalate is refused.
        const loose = structuredClone(pod);
        loose.containers[0].securityContext.allowPrivilegeEscalation = true;
        const refused = await cluster.request(
          "POST",
          "/api/v1/namespaces/dynamo-system/pods?dryRun=All",
          {
            apiVersion: "v1",
            kind: "Pod",
            metadata: { name: "loose", namespace: "dynamo-system" },
            spec: loose,
          },
        );
        assert.equal(refused.status, 403, refused.text);
        assert.match(refused.text, /violates PodSecurity/);
      });

      await t.step("the dry run really validates: a misspelled field is rejected", async () => {
        const docs = await readManifests("deploy/deployment.yaml");
        const deployment = structuredClone(docs.find((d) => d.kind === "Deployment")!);
        const probe = deployment.spec.template.spec.containers[0].livenessProbe.httpGet;
        probe.prot = probe.port;
        const r = await dryRunCreate(cluster, deployment);
        assert.equal(r.status, 400, r.text);
        assert.match(
          (r.json as { message: string }).message,
          /strict decoding error: unknown field "spec\.template\.spec\.containers\[0\]\.livenessProbe\.httpGet\.prot"/,
        );

        const wrongType = structuredClone(docs.find((d) => d.kind === "Deployment")!);
        wrongType.spec.template.spec.securityContext.runAsUser = "nonroot";
        const typed = await dryRunCreate(cluster, wrongType);
        assert.equal(typed.status, 400, typed.text);

        const invalid = structuredClone(docs.find((d) => d.kind === "Deployment")!);
        invalid.spec.template.spec.containers[0].livenessProbe.httpGet.port = "no-such-port-name-too-long";
        const rejected = await dryRunCreate(cluster, invalid);
        assert.equal(rejected.status, 422, rejected.text);

        // …and nothing was stored by any of the dry runs.
        const list = await cluster.request("GET", "/apis/apps/v1/namespaces/dynamo-system/deployments");
        assert.deepEqual((list.json as { items: unknown[] }).items, []);
      });

      await t.step("Service + downward API: a real 1.6.1 caller finds our service through them", async () => {
        await discoveredThroughManifest(cluster);
      });
    } finally {
      await cluster.stop();
    }
  },
});

/** The Service's slice entry for a pod, as the EndpointSlice controller writes it (none runs here). */
function controllerSlice(service: Manifest, pod: Manifest): Manifest {
  const { namespace, name, uid } = pod.metadata;
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `${service.metadata.name}-abcde`,
      namespace,
      // The controller copies the Service's labels onto its slices, next to these two.
      labels: {
        ...service.metadata.labels,
        "kubernetes.io/service-name": service.metadata.name,
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
      },
    },
    addressType: "IPv4",
    // A pod IP would be here; the API server refuses loopback, and callers route by the CR anyway.
    endpoints: [{
      addresses: ["192.0.2.10"],
      conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: "Pod", namespace, name, uid },
    }],
    ports: service.spec.ports.map((p: Manifest) => ({ name: p.name, port: p.port, protocol: p.protocol })),
  };
}

/**
 * The pod of deploy/deployment.yaml is created for real; its env is resolved the way the kubelet
 * resolves the downward API (against that pod object). Our service starts with that env and the
 * manifest's args, in-cluster with a token of deploy/rbac.yaml's ServiceAccount (all of rbac.yaml
 * applied), answers the readiness probe, and only then gets the slice its Service would get (no
 * controller-manager or kubelet runs here). A real 1.6.1 caller in the same namespace then finds
 * and calls it.
 */
async function discoveredThroughManifest(cluster: KubeCluster): Promise<void> {
  await assertVenv();
  const docs = await readManifests("deploy/deployment.yaml");
  const deployment = docs.find((d) => d.kind === "Deployment")!;
  const service = docs.find((d) => d.kind === "Service")!;
  const template = deployment.spec.template;
  const [c] = template.spec.containers;
  const ns = deployment.metadata.namespace;

  assert.equal(service.metadata.namespace, ns);
  assert.equal(service.metadata.labels["nvidia.com/dynamo-discovery-enabled"], "true");
  assert.equal(service.metadata.labels["nvidia.com/dynamo-discovery-backend"], "kubernetes");
  // The Service targets the system port, which is the one the readiness probe (/health) checks:
  // the slice entry is ready exactly when the registration is.
  const [svcPort] = service.spec.ports;
  assert.equal(c.readinessProbe.httpGet.path, "/health");
  assert.equal(c.readinessProbe.httpGet.port, svcPort.targetPort);
  const systemPort = c.ports.find((p: Manifest) => p.name === svcPort.targetPort);
  assert.ok(systemPort, `container port ${svcPort.targetPort}`);

  const created = await cluster.request("POST", `/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "global-planner-7d9f8c6b5-x2k4q", namespace: ns, labels: template.metadata.labels },
    spec: template.spec,
  });
  assert.ok(created.ok, `HTTP ${created.status} ${created.text}`);
  const pod = created.json as Manifest;
  const selector = Object.entries(service.spec.selector).map(([k, v]) => `${k}=${v}`).join(",");
  const selected = await cluster.request(
    "GET",
    `/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(selector)}`,
  );
  assert.deepEqual(selected.json.items.map((p: Manifest) => p.metadata.name), [pod.metadata.name]);

  const fieldRef = (path: string): string => {
    const value: unknown = path.split(".").reduce((o: Manifest | undefined, k) => o?.[k], pod);
    assert.equal(typeof value, "string", `downward API ${path} of the created pod`);
    return value as string;
  };
  const env: Record<string, string> = {};
  for (const e of c.env as Manifest[]) {
    if (e.name === "DYN_TCP_RPC_HOST") continue; // status.podIP: no pod runs here, loopback instead
    env[e.name] = e.value ?? fieldRef(e.valueFrom.fieldRef.fieldPath);
  }
  assert.equal(env.POD_UID, pod.metadata.uid);
  assert.equal(env.DYN_SYSTEM_PORT, String(systemPort.containerPort));

  await applyManifest(cluster, await readManifests("deploy/rbac.yaml"));
  const saDir = await Deno.makeTempDir({ prefix: "gp-deploy-sa-" }); // under /tmp: the service reads it
  await cluster.writeServiceAccountDir(
    saDir,
    ns,
    await cluster.createServiceAccountToken(ns, "global-planner"),
  );
  const ours = await startService({
    args: [...c.args, "--service-account-dir", saDir],
    env: {
      ...env,
      ...cluster.inClusterEnv(),
      // A free port rather than the manifest's 9090 (other tests run beside this one).
      DYN_SYSTEM_PORT: "0",
      DYN_SYSTEM_HOST: "127.0.0.1",
    },
  });
  try {
    const status = await ours.waitForLog((l) => l.message === "system status server listening");
    // With --leader-elect the pod registers once it holds the Lease (deploy/rbac.yaml's Role).
    await ours.waitForLog((l) => l.message === "serving as leader", 30_000);
    // The kubelet's readiness probe: only a 200 here makes the slice entry ready.
    const probe = await fetch(`http://127.0.0.1:${status.port}${c.readinessProbe.httpGet.path}`);
    assert.equal(probe.status, 200, await probe.text());
    const cr = await cluster.request(
      "GET",
      `/apis/nvidia.com/v1alpha1/namespaces/${ns}/dynamoworkermetadatas/${pod.metadata.name}`,
    );
    assert.ok(cr.ok, `our DynamoWorkerMetadata is named after the pod: ${cr.text}`);
    assert.equal(cr.json.metadata.ownerReferences[0].uid, pod.metadata.uid);
    const slice = await cluster.request(
      "POST",
      `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`,
      controllerSlice(service, pod),
    );
    assert.ok(slice.ok, `HTTP ${slice.status} ${slice.text}`);

    const call = await runDriver(
      "call_endpoint.py",
      ["--endpoint", `${env.DYN_NAMESPACE}.GlobalPlanner.health`, "--wait-timeout", "30", "--timeout", "60"],
      {
        DYN_DISCOVERY_BACKEND: "kubernetes",
        KUBECONFIG: await cluster.kubeconfig(`${saDir}/caller-kubeconfig`, cluster.adminToken, ns),
        POD_NAME: "planner-0",
        POD_UID: crypto.randomUUID(),
        POD_NAMESPACE: ns,
        DYN_TCP_RPC_HOST: "127.0.0.1",
      },
    );
    assert.equal(call.code, 0, `${call.stdout}\n${call.stderr.slice(-2000)}`);
    const item = call.lines.find((l) => "item" in l)?.item as Manifest;
    assert.equal(item?.namespace, env.DYN_NAMESPACE, call.stdout);
    assert.deepEqual(item.managed_namespaces, c.args.slice(c.args.indexOf("--managed-namespaces") + 1));
    assert.equal(item.role, "leader");
  } finally {
    await ours.stop("SIGTERM");
    await Deno.remove(saDir, { recursive: true });
  }
}
