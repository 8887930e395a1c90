// deno-lint-ignore-file no-explicit-any -- API objects of any shape, read by tests only
/**
 * A test-side stand-in for the Dynamo operator (it plays the operator, not the API server, which
 * is real): copies each scaling adapter's `spec.replicas` into its DGD, and answers every new DGD
 * generation with Ready=False, then Ready=True and observedGeneration after `readyDelayMs`
 * (or never, for DGDs told to stay not ready). It polls; a test operator needs no watch.
 */
import type { KubeCluster } from "./kube_cluster.ts";
import { waitFor } from "./ports.ts";

const GROUP = "/apis/nvidia.com";

export interface FakeOperator {
  keepNotReady(namespace: string, name: string, notReady: boolean): void;
  /**
   * When this operator started its (successful) write of Ready=True for `generation` of `name`
   * (`Date.now()` just before sending it), or `undefined` if it has not written it. Nobody can
   * have seen that generation Ready before this instant.
   */
  readySentAt(name: string, generation: number): number | undefined;
  stop(): Promise<void>;
}

export function startFakeOperator(
  cluster: KubeCluster,
  namespace: string,
  options: { readyDelayMs?: number; intervalMs?: number } = {},
): FakeOperator {
  const readyDelay = options.readyDelayMs ?? 1000;
  const stuck = new Set<string>();
  const pendingSince = new Map<string, number>();
  const readyAt = new Map<string, number>();
  let running = true;

  const tick = async () => {
    for (const version of ["v1alpha1", "v1beta1"]) {
      const adapters = await cluster.request(
        "GET",
        `${GROUP}/${version}/namespaces/${namespace}/dynamographdeploymentscalingadapters`,
      );
      for (const adapter of adapters.ok ? adapters.json.items : []) {
        const { name: dgd, serviceName } = adapter.spec.dgdRef;
        await _propagate(cluster, namespace, dgd, serviceName, adapter.spec.replicas);
        if (adapter.status?.replicas !== adapter.spec.replicas) {
          await cluster.request(
            "PATCH",
            `${GROUP}/${version}/namespaces/${namespace}/dynamographdeploymentscalingadapters/${adapter.metadata.name}/status`,
            { status: { replicas: adapter.spec.replicas, selector: `app=${dgd}` } },
          );
        }
      }
    }
    const list = await cluster.request(
      "GET",
      `${GROUP}/v1alpha1/namespaces/${namespace}/dynamographdeployments`,
    );
    for (const dgd of list.ok ? list.json.items : []) {
      const key = dgd.metadata.name;
      const generation = dgd.metadata.generation;
      const observed = dgd.status?.observedGeneration;
      if (observed === generation && !stuck.has(key)) continue;
      if (!pendingSince.has(`${key}@${generation}`)) {
        pendingSince.set(`${key}@${generation}`, Date.now());
        await _setReady(cluster, namespace, dgd, false, observed ?? 0);
        continue;
      }
      if (!stuck.has(key) && Date.now() - pendingSince.get(`${key}@${generation}`)! >= readyDelay) {
        const sending = Date.now();
        if (await _setReady(cluster, namespace, dgd, true, generation)) {
          readyAt.set(`${key}@${generation}`, sending);
        }
      }
    }
  };
  const loop = (async () => {
    while (running) {
      try {
        await tick();
      } catch (error) {
        if (running) console.error("fake operator:", error);
      }
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
    }
  })();
  return {
    readySentAt(name, generation) {
      return readyAt.get(`${name}@${generation}`);
    },
    keepNotReady(ns, name, notReady) {
      if (ns !== namespace) throw new Error(`this operator watches ${namespace}`);
      if (notReady) stuck.add(name);
      else stuck.delete(name);
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** Marks a DGD Ready (or not) in its status, as the operator does. */
export async function markReady(
  cluster: KubeCluster,
  namespace: string,
  name: string,
  ready: boolean,
  version = "v1alpha1",
) {
  const got = await cluster.request(
    "GET",
    `${GROUP}/${version}/namespaces/${namespace}/dynamographdeployments/${name}`,
  );
  await _setReady(cluster, namespace, got.json, ready, got.json.metadata.generation, version);
}

async function _setReady(
  cluster: KubeCluster,
  namespace: string,
  dgd: Record<string, any>,
  ready: boolean,
  observedGeneration: number,
  version?: string,
): Promise<boolean> {
  const apiVersion = version ?? String(dgd.apiVersion).split("/")[1];
  const condition = {
    type: "Ready",
    status: ready ? "True" : "False",
    reason: ready ? "all_resources_are_ready" : "pods_not_ready",
    message: ready ? "All resources are ready" : "Waiting for pods",
    lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  };
  // Guarded by the resourceVersion it decided on, so a status written meanwhile (by a test
  // marking the DGD Ready) is not overwritten from a stale list: the next poll decides again.
  const written = await cluster.request(
    "PATCH",
    `${GROUP}/${apiVersion}/namespaces/${namespace}/dynamographdeployments/${dgd.metadata.name}/status`,
    {
      metadata: { resourceVersion: dgd.metadata.resourceVersion },
      status: { state: ready ? "successful" : "pending", observedGeneration, conditions: [condition] },
    },
  );
  return written.ok;
}

async function _propagate(
  cluster: KubeCluster,
  namespace: string,
  dgd: string,
  service: string,
  replicas: number,
) {
  for (const version of ["v1alpha1", "v1beta1"]) {
    const got = await cluster.request(
      "GET",
      `${GROUP}/${version}/namespaces/${namespace}/dynamographdeployments/${dgd}`,
    );
    if (!got.ok) continue;
    const spec = got.json.spec;
    if (Array.isArray(spec.components)) {
      const index = spec.components.findIndex((c: { name: string }) => c.name === service);
      if (index < 0 || spec.components[index].replicas === replicas) return;
      await cluster.request(
        "PATCH",
        `${GROUP}/${version}/namespaces/${namespace}/dynamographdeployments/${dgd}`,
        [{ op: "add", path: `/spec/components/${index}/replicas`, value: replicas }],
        "application/json-patch+json",
      );
    } else if (spec.services?.[service] && spec.services[service].replicas !== replicas) {
      await cluster.request(
        "PATCH",
        `${GROUP}/${version}/namespaces/${namespace}/dynamographdeployments/${dgd}`,
        { spec: { services: { [service]: { replicas } } } },
      );
    }
    return;
  }
}

/**
 * The operator's full status for a v1beta1 DGD, spec replicas copied into it: observedGeneration,
 * Ready, and per-component replica counts (upstream reads those before it lets a request reduce a
 * component). Returns the generation it reported on.
 */
export async function reconcileFullStatus(
  cluster: KubeCluster,
  namespace: string,
  name: string,
): Promise<number> {
  const path = `${GROUP}/v1beta1/namespaces/${namespace}/dynamographdeployments/${name}`;
  const got = await cluster.request("GET", path);
  if (!got.ok) throw new Error(`read ${namespace}/${name}: ${got.status} ${got.text}`);
  const dgd = got.json;
  const components: Record<string, unknown> = {};
  for (const c of dgd.spec.components as { name: string; replicas?: number }[]) {
    const n = c.replicas ?? 1;
    components[c.name] = {
      componentKind: "Deployment",
      componentName: `${name}-${c.name}`,
      gpusPerEngine: 1,
      gpusPerReplica: 1,
      replicas: n,
      updatedReplicas: n,
      readyReplicas: n,
      availableReplicas: n,
    };
  }
  const written = await cluster.request("PATCH", `${path}/status`, {
    status: {
      state: "successful",
      observedGeneration: dgd.metadata.generation,
      components,
      conditions: [{
        type: "Ready",
        status: "True",
        reason: "all_resources_are_ready",
        message: "ok",
        lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      }],
    },
  });
  if (!written.ok) throw new Error(`status of ${namespace}/${name}: ${written.status} ${written.text}`);
  return dgd.metadata.generation;
}

/** Waits until the DGD's current generation is observed and Ready (the operator has settled it). */
export async function waitSettled(
  cluster: KubeCluster,
  namespace: string,
  name: string,
  version = "v1alpha1",
  timeoutMs = 15_000,
): Promise<void> {
  await waitFor(
    async () => {
      const got = await cluster.request(
        "GET",
        `${GROUP}/${version}/namespaces/${namespace}/dynamographdeployments/${name}`,
      );
      if (!got.ok) return false;
      const dgd = got.json;
      const ready = dgd.status?.conditions?.find((c: { type: string }) => c.type === "Ready");
      return dgd.status?.observedGeneration === dgd.metadata.generation && ready?.status === "True";
    },
    `${namespace}/${name} settled (observed generation Ready)`,
    timeoutMs,
  );
}
