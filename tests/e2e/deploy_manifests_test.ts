/**
 * deploy/*.yaml are valid Kubernetes objects: every document is sent to a real kube-apiserver as a
 * server-side dry run with strict field validation (unknown or duplicate fields are errors), so a
 * typo anywhere in a manifest fails here instead of at `kubectl apply`.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { PROJECT_ROOT } from "../support/paths.ts";

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
  name: "deploy/*.yaml: every document passes a strict server-side dry run",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = await startKubeCluster();
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
        assert.deepEqual(env.POD_NAMESPACE, { fieldRef: { fieldPath: "metadata.namespace" } });
        assert.deepEqual(env.DYN_TCP_RPC_HOST, { fieldRef: { fieldPath: "status.podIP" } });
        assert.equal(env.DYN_DISCOVERY_BACKEND, "etcd");
        assert.equal(env.DYN_SYSTEM_PORT, "9090");
        assert.ok(env.DYN_NAMESPACE && env.ETCD_ENDPOINTS);
        assert.equal(c.args[0], "--managed-namespaces");
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
    } finally {
      await cluster.stop();
    }
  },
});
