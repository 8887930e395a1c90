/**
 * The Kubernetes discovery backend's port on the one API client: server-side apply of this
 * process's DynamoWorkerMetadata and a watch of that one object (RBAC: `patch` and `watch` on
 * `dynamoworkermetadatas` in the pod's namespace).
 */
import type {
  WatchedChange,
  WorkerMetadataApi,
  WorkerMetadataObject,
} from "../runtime/discovery/worker_metadata.ts";
import { DWM_FIELD_MANAGER } from "../runtime/discovery/worker_metadata.ts";
import { type KubeClient, SERVER_WATCH_TIMEOUT_SECONDS } from "./client.ts";
import { GROUP } from "./resources.ts";

export const DWM = "dynamoworkermetadatas";
const enc = encodeURIComponent;

export class KubeWorkerMetadataApi implements WorkerMetadataApi {
  #client: KubeClient;

  constructor(client: KubeClient) {
    this.#client = client;
  }

  async apply(object: WorkerMetadataObject, signal?: AbortSignal): Promise<WorkerMetadataObject> {
    const { name, namespace } = object.metadata;
    const query = new URLSearchParams({ fieldManager: DWM_FIELD_MANAGER, force: "true" });
    return await this.#client.json<WorkerMetadataObject>({
      method: "PATCH",
      verb: "patch",
      group: GROUP,
      resource: DWM,
      namespace,
      name,
      path: `/apis/${object.apiVersion}/namespaces/${enc(namespace)}/${DWM}/${enc(name)}?${query}`,
      // JSON is YAML: the API server takes a JSON body under the apply content type.
      contentType: "application/apply-patch+yaml",
      body: object,
      signal,
    });
  }

  async clearEndpoints(namespace: string, name: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.#client.json({
        method: "PATCH",
        verb: "patch",
        group: GROUP,
        resource: DWM,
        namespace,
        name,
        path: `/apis/${GROUP}/v1alpha1/namespaces/${enc(namespace)}/${DWM}/${enc(name)}`,
        // A JSON patch, unlike an apply, fails with 404 instead of creating the object.
        contentType: "application/json-patch+json",
        body: [{ op: "replace", path: "/spec/data/endpoints", value: {} }],
        signal,
      });
      return true;
    } catch (error) {
      if ((error as { detail?: { status?: number } })?.detail?.status === 404) return false;
      throw error;
    }
  }

  async *watch(
    namespace: string,
    name: string,
    resourceVersion: string,
    signal: AbortSignal,
  ): AsyncGenerator<WatchedChange> {
    const query = new URLSearchParams({
      watch: "true",
      fieldSelector: `metadata.name=${name}`,
      resourceVersion,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(SERVER_WATCH_TIMEOUT_SECONDS),
    });
    yield* this.#client.watch({
      method: "GET",
      verb: "watch",
      group: GROUP,
      resource: DWM,
      namespace,
      name,
      path: `/apis/${GROUP}/v1alpha1/namespaces/${enc(namespace)}/${DWM}?${query}`,
      signal,
    });
  }
}
