/**
 * A typed, read-only view of a DynamoGraphDeployment (DGD) as the Kubernetes API returns it
 * (plain JSON, `nvidia.com/v1alpha1` or `nvidia.com/v1beta1`), and the pure decisions the
 * scaler takes on it: readiness, target resolution, the replica read-back, adapter names and
 * patch bodies. No I/O and no clocks, so every rule here is
 * tested over plain objects.
 *
 * The spec layout is decided by the fields present: `spec.components` (a list, v1beta1) wins
 * over `spec.services` (a map, v1alpha1). `apiVersion` is validated and reported, and only
 * picks the layout when neither field exists (an empty DGD).
 */
import { DgdShapeError, InvalidRequest, TargetResolutionError } from "../errors.ts";
import type { TargetReplica } from "../service/contract.ts";
import { type DgdShape, type GpuCount, gpusPerReplica, wholeNumber } from "./gpu.ts";

export type { DgdShape, GpuCount };
export type DgdApiVersion = "v1alpha1" | "v1beta1";
export type Role = "prefill" | "decode";

export const DGD_GROUP = "nvidia.com";
export const DGD_KIND = "DynamoGraphDeployment";
export const MERGE_PATCH = "application/merge-patch+json";
export const JSON_PATCH = "application/json-patch+json";

/** One v1alpha1 service or v1beta1 component. */
export interface ComponentView {
  /** v1alpha1 `spec.services` key / v1beta1 `spec.components[].name`. */
  name: string;
  /** v1beta1 position in `spec.components` (JSON-patch paths); absent for v1alpha1. */
  index?: number;
  /** v1alpha1 `componentType` / v1beta1 `type`. */
  type?: string;
  /** v1alpha1 `subComponentType` as written (it alone decides a v1alpha1 role). */
  subComponentType?: string;
  /** `prefill`/`decode` from v1alpha1 `subComponentType` or v1beta1 `type`; else not a pool. */
  role?: Role;
  /** `spec` replicas; missing = 0. */
  replicas: number;
  /** A DGDSA owns `replicas`: v1alpha1 `scalingAdapter.enabled: true` / v1beta1 `scalingAdapter` present. */
  scalingAdapter: boolean;
  /** GPUs per replica; `unknown` makes a budget fail closed. */
  gpus: GpuCount;
}

export interface DgdView {
  apiVersion: DgdApiVersion;
  shape: DgdShape;
  name: string;
  namespace: string;
  resourceVersion?: string;
  uid?: string;
  generation?: number;
  observedGeneration?: number;
  ready: boolean;
  /** `metadata.annotations` (string values only; absent = none). */
  annotations: Record<string, string>;
  components: ComponentView[];
}

export interface ResolvedTarget {
  /** The requested `sub_component_type` (also for a `component_name` fallback). */
  role: Role;
  component: ComponentView;
  desired: number;
}

export interface Patch {
  contentType: string;
  body: unknown;
}

/** Throws `DgdShapeError` when the object is not a DGD this module can read. */
export function viewDgd(object: unknown): DgdView {
  const dgd = _record(object);
  if (!dgd) throw new DgdShapeError(`DynamoGraphDeployment must be an object, got ${_kindOf(object)}`);
  const apiVersion = _apiVersion(dgd);
  const metadata = _record(dgd.metadata);
  const name = metadata?.name;
  const namespace = metadata?.namespace;
  if (typeof name !== "string" || name === "" || typeof namespace !== "string" || namespace === "") {
    throw new DgdShapeError("DynamoGraphDeployment must have metadata.name and metadata.namespace");
  }
  const label = `${namespace}/${name}`;
  const spec = _record(dgd.spec);
  if (!spec) throw new DgdShapeError(`DynamoGraphDeployment '${label}' has no spec`);
  const shape = _shapeOf(spec, apiVersion);
  const components = shape === "components"
    ? _components(label, spec.components, dgd.status)
    : _services(label, spec.services, dgd.status);
  const status = _record(dgd.status);
  return {
    apiVersion,
    shape,
    name,
    namespace,
    resourceVersion: typeof metadata?.resourceVersion === "string" ? metadata.resourceVersion : undefined,
    uid: typeof metadata?.uid === "string" ? metadata.uid : undefined,
    generation: _optionalInteger(metadata?.generation),
    observedGeneration: _optionalInteger(status?.observedGeneration),
    ready: isReady(dgd),
    annotations: _annotations(metadata?.annotations),
    components,
  };
}

/** Orchestrator-era readiness: the first `Ready` condition has status `"True"`. Never throws. */
export function isReady(object: unknown): boolean {
  const conditions = _record(_record(object)?.status)?.conditions;
  if (!Array.isArray(conditions)) return false;
  const ready = conditions.map(_record).find((condition) => condition?.type === "Ready");
  return ready?.status === "True";
}

/**
 * Maps every target onto one component before anything is written, so a bad second target
 * cannot leave the first one applied. Throws `TargetResolutionError` with upstream's messages.
 */
export function resolveTargets(view: DgdView, targets: readonly TargetReplica[]): ResolvedTarget[] {
  if (targets.length === 0) throw new TargetResolutionError("target_replicas cannot be empty");
  const claimed = new Set<string>();
  return targets.map((target) => {
    const role = target.sub_component_type;
    const component = _resolveOne(view, role, target.component_name);
    if (claimed.has(component.name)) {
      throw new TargetResolutionError(`duplicate replica target for component ${component.name}`);
    }
    claimed.add(component.name);
    return { role, component, desired: target.desired_replicas };
  });
}

/**
 * `{role: spec replicas}` for every component with a role. Two components sharing a role
 * make the answer ambiguous, so that is an error with the resolution's duplicate message.
 */
export function currentReplicas(view: DgdView): Record<string, number> {
  const replicas: Record<string, number> = {};
  for (const role of ["prefill", "decode"] as const) {
    const holders = view.components.filter((component) => component.role === role);
    if (holders.length > 1) throw new TargetResolutionError(_severalMessage(view.shape, role, holders));
    if (holders.length === 1) replicas[role] = holders[0].replicas;
  }
  return replicas;
}

/** The DGDSA the operator creates for an opted-in service/component. */
export function adapterName(dgdName: string, componentName: string): string {
  return `${dgdName}-${componentName.toLowerCase()}`;
}

/**
 * Body for `PATCH .../dynamographdeploymentscalingadapters/<adapter>/scale`. With
 * `resourceVersion` (of the adapter) the API server rejects the write with 409 if the adapter
 * changed since it was read (upstream writes unguarded: a concurrent edit would be lost).
 */
export function adapterScalePatch(replicas: number, resourceVersion?: string): Patch {
  _checkReplicas(replicas);
  const body: Record<string, unknown> = { spec: { replicas } };
  if (resourceVersion !== undefined) body.metadata = { resourceVersion };
  return { contentType: MERGE_PATCH, body };
}

/**
 * Fallback write when the service/component has no adapter, to be sent to the DGD at
 * `view.apiVersion`. `view` should be freshly read: for the list layout the JSON patch addresses
 * the component by its index and a `test` op guards against reordering (422 if it moved).
 */
export function dgdReplicaPatch(view: DgdView, componentName: string, replicas: number): Patch {
  _checkReplicas(replicas);
  const component = view.components.find((candidate) => candidate.name === componentName);
  if (!component) {
    const where = view.shape === "components" ? "spec.components" : "spec.services";
    throw new TargetResolutionError(
      `DynamoGraphDeployment '${view.namespace}/${view.name}' has no ${where} entry named '${componentName}'`,
    );
  }
  if (view.shape === "services") {
    return { contentType: MERGE_PATCH, body: { spec: { services: { [componentName]: { replicas } } } } };
  }
  const path = `/spec/components/${component.index}`;
  return {
    contentType: JSON_PATCH,
    body: [
      { op: "test", path: `${path}/name`, value: componentName },
      { op: "add", path: `${path}/replicas`, value: replicas },
    ],
  };
}

function _resolveOne(view: DgdView, role: Role, componentName: string | null): ComponentView {
  const matches = view.components.filter((component) => component.role === role);
  if (matches.length > 1) throw new TargetResolutionError(_severalMessage(view.shape, role, matches));
  if (matches.length === 1) return matches[0];
  const named = componentName ? view.components.find((c) => c.name === componentName) : undefined;
  if (named && _mayStandIn(view.shape, named, role)) return named;
  throw new TargetResolutionError(
    view.shape === "services"
      ? `DynamoGraphDeployment must contain a service with subComponentType '${role}'`
      : `DynamoGraphDeployment must contain a component with type '${role}'`,
  );
}

/** Whether a named component may take a role it does not declare (`component_name` fallback). */
function _annotations(value: unknown): Record<string, string> {
  const record = _record(value);
  if (!record) return {};
  return Object.fromEntries(Object.entries(record).filter(([, v]) => typeof v === "string")) as Record<
    string,
    string
  >;
}

function _mayStandIn(shape: DgdShape, component: ComponentView, role: Role): boolean {
  if (shape === "services") return !component.subComponentType;
  return !component.type || component.type === "worker" || component.type === role;
}

function _severalMessage(shape: DgdShape, role: Role, matches: ComponentView[]): string {
  const names = matches.map((component) => component.name).sort().join(", ");
  return shape === "services"
    ? `DynamoGraphDeployment must contain only one service with subComponentType '${role}', ` +
      `but found multiple: {${names}}`
    : `DynamoGraphDeployment must contain only one component with type '${role}', ` +
      `but found multiple: {${names}}`;
}

function _apiVersion(dgd: Record<string, unknown>): DgdApiVersion {
  const apiVersion = dgd.apiVersion;
  const [group, version] = typeof apiVersion === "string" ? apiVersion.split("/") : [];
  if (group !== DGD_GROUP || (version !== "v1alpha1" && version !== "v1beta1")) {
    throw new DgdShapeError(
      `DynamoGraphDeployment apiVersion must be ${DGD_GROUP}/v1alpha1 or ${DGD_GROUP}/v1beta1, ` +
        `got ${JSON.stringify(apiVersion) ?? "nothing"}`,
    );
  }
  if (dgd.kind !== undefined && dgd.kind !== DGD_KIND) {
    throw new DgdShapeError(`expected kind ${DGD_KIND}, got ${JSON.stringify(dgd.kind)}`);
  }
  return version;
}

function _shapeOf(spec: Record<string, unknown>, apiVersion: DgdApiVersion): DgdShape {
  if (spec.components !== undefined && spec.components !== null) return "components";
  if (spec.services !== undefined && spec.services !== null) return "services";
  return apiVersion === "v1beta1" ? "components" : "services";
}

function _services(label: string, services: unknown, status: unknown): ComponentView[] {
  if (services === undefined || services === null) return [];
  const map = _record(services);
  if (!map) throw new DgdShapeError(`DynamoGraphDeployment '${label}' spec.services must be a map`);
  return Object.entries(map).map(([name, value]) => {
    const spec = _record(value);
    if (!spec) {
      throw new DgdShapeError(`DynamoGraphDeployment '${label}' spec.services.${name} must be an object`);
    }
    const subComponentType = _optionalString(spec.subComponentType);
    return {
      name,
      type: _optionalString(spec.componentType),
      subComponentType,
      role: _roleOf(subComponentType),
      replicas: _replicas(label, `spec.services.${name}`, spec.replicas),
      scalingAdapter: _record(spec.scalingAdapter)?.enabled === true,
      gpus: gpusPerReplica({ dgd: label, shape: "services", component: name, spec, status }),
    };
  });
}

function _components(label: string, components: unknown, status: unknown): ComponentView[] {
  if (components === undefined || components === null) return [];
  if (!Array.isArray(components)) {
    throw new DgdShapeError(`DynamoGraphDeployment '${label}' spec.components must be a list`);
  }
  // The CRD keeps names unique case-insensitively; adapter names (lower-cased) rely on it.
  const seen = new Set<string>();
  return components.map((value, index) => {
    const spec = _record(value);
    const name = spec?.name;
    if (!spec || typeof name !== "string" || name === "") {
      throw new DgdShapeError(`DynamoGraphDeployment '${label}' spec.components[${index}] has no name`);
    }
    if (seen.has(name.toLowerCase())) {
      throw new DgdShapeError(`DynamoGraphDeployment '${label}' has two components named '${name}'`);
    }
    seen.add(name.toLowerCase());
    const type = _optionalString(spec.type);
    return {
      name,
      index,
      type,
      role: _roleOf(type),
      replicas: _replicas(label, `spec.components[${index}]`, spec.replicas),
      scalingAdapter: spec.scalingAdapter !== undefined && spec.scalingAdapter !== null,
      gpus: gpusPerReplica({ dgd: label, shape: "components", component: name, index, spec, status }),
    };
  });
}

function _roleOf(value: string | undefined): Role | undefined {
  return value === "prefill" || value === "decode" ? value : undefined;
}

function _replicas(label: string, path: string, value: unknown): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new DgdShapeError(
      `DynamoGraphDeployment '${label}' ${path}.replicas is ${
        JSON.stringify(value)
      }, not a non-negative integer`,
    );
  }
  return value;
}

function _checkReplicas(replicas: number): void {
  if (!Number.isSafeInteger(replicas) || replicas < 0) {
    throw new InvalidRequest(`desired replicas must be a non-negative integer, got ${replicas}`);
  }
}

function _optionalInteger(value: unknown): number | undefined {
  return typeof value === "number" ? wholeNumber(value) : undefined;
}

function _optionalString(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function _record(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? value as Record<string, unknown>
    : undefined;
}

function _kindOf(value: unknown): string {
  if (value === null) return "null";
  return Array.isArray(value) ? "a list" : `a ${typeof value}`;
}
