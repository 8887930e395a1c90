/**
 * GPUs per replica of one DGD service/component, used only for budget accounting.
 * Pure: it reads the plain JSON of the DGD and never guesses. When the count cannot be
 * determined it answers `unknown` with a reason naming the DGD, the component and the missing
 * field, because the budget must fail closed (upstream once counted such DGDs as 0).
 */

/**
 * Which layout the DGD spec uses: `services` (v1alpha1 map) or `components` (v1beta1 list).
 * Decided by the fields present, not by `apiVersion` (a DGD with both uses `components`).
 */
export type DgdShape = "services" | "components";

export type GpuCount =
  /** `source` says where the number came from, for logs (e.g. `status.components.x.gpusPerReplica`). */
  | { kind: "ok"; perReplica: number; source: string }
  /** The count cannot be determined; callers fail closed with `reason`. */
  | { kind: "unknown"; reason: string };

export interface GpuInput {
  /** `"{namespace}/{name}"` of the DGD, for reasons. */
  dgd: string;
  shape: DgdShape;
  /** Service key (v1alpha1) or component name (v1beta1). */
  component: string;
  /** v1beta1 position in `spec.components`, for field paths in reasons. */
  index?: number;
  /** The service/component spec object. */
  spec: Record<string, unknown>;
  /** The DGD's `status` (any shape; only `components`/`services` entries are read). */
  status?: unknown;
}

/** The GPU resource name on v1beta1 pod templates (v1alpha1 uses `resources.*.gpu`). */
export const GPU_RESOURCE = "nvidia.com/gpu";
/** CRD default of `multinode.nodeCount` when a `multinode` block exists without it. */
export const DEFAULT_NODE_COUNT = 2;
const TP_FLAGS = ["--tensor-parallel-size", "--tp"];

/**
 * In order of preference: the operator-published `gpusPerReplica` in status; then the
 * v1beta1 main container's `nvidia.com/gpu` (limits, else requests), else its
 * `--tensor-parallel-size`/`--tp`; or the v1alpha1 `resources.limits.gpu`, else
 * `resources.requests.gpu`. Spec-derived counts are multiplied by `multinode.nodeCount`
 * (default 2) when a `multinode` block exists; the published status value already describes a
 * whole replica and is taken as is.
 */
export function gpusPerReplica(input: GpuInput): GpuCount {
  const published = _published(input);
  if (published) return published;
  const single = input.shape === "components" ? _fromPodTemplate(input) : _fromResources(input);
  if (single.kind === "unknown") return single;
  return _timesNodeCount(input, single);
}

/** Non-negative integers, as JSON numbers or integer strings (resource quantities like "2"). */
export function wholeNumber(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value === "string" && /^\s*\+?\d+\s*$/.test(value)) {
    const parsed = Number(value.trim());
    return Number.isSafeInteger(parsed) ? parsed : undefined;
  }
  return undefined;
}

function _published(input: GpuInput): GpuCount | undefined {
  const status = _record(input.status);
  for (const section of ["components", "services"]) {
    const entry = _record(_record(status?.[section])?.[input.component]);
    const value = entry?.gpusPerReplica;
    if (value === undefined || value === null) continue;
    const path = `status.${section}.${input.component}.gpusPerReplica`;
    const count = wholeNumber(value);
    if (count === undefined) {
      // Newest upstream's wording, so operators recognise it; the DGD is added for context.
      return {
        kind: "unknown",
        reason: `GPU shape for component '${input.component}' is unavailable: ` +
          `DGD '${input.dgd}' ${path} is ${JSON.stringify(value)}, not a non-negative integer`,
      };
    }
    return { kind: "ok", perReplica: count, source: path };
  }
  return undefined;
}

function _fromResources(input: GpuInput): GpuCount {
  const base = `spec.services.${input.component}.resources`;
  const resources = _record(input.spec.resources);
  for (const kind of ["limits", "requests"]) {
    const value = _record(resources?.[kind])?.gpu;
    if (value === undefined || value === null) continue;
    return _counted(input, value, `${base}.${kind}.gpu`);
  }
  return _unknown(input, `neither ${base}.limits.gpu nor ${base}.requests.gpu is set`);
}

function _fromPodTemplate(input: GpuInput): GpuCount {
  const base = `spec.components[${input.index ?? "?"}]`;
  const containers = _record(_record(input.spec.podTemplate)?.spec)?.containers;
  const main = Array.isArray(containers)
    ? containers.map(_record).find((container) => container?.name === "main")
    : undefined;
  const containerPath = `${base}.podTemplate.spec.containers[name=main]`;
  if (!main) return _unknown(input, `${containerPath} is missing`);
  const resources = _record(main.resources);
  for (const kind of ["limits", "requests"]) {
    const value = _record(resources?.[kind])?.[GPU_RESOURCE];
    if (value === undefined || value === null) continue;
    return _counted(input, value, `${containerPath}.resources.${kind}["${GPU_RESOURCE}"]`);
  }
  const tp = _tensorParallelArg(main);
  if (tp !== undefined) return _counted(input, tp.value, `${containerPath} ${tp.flag}`);
  return _unknown(
    input,
    `${containerPath} has no resources.limits/requests["${GPU_RESOURCE}"] ` +
      `and no ${TP_FLAGS.join("/")} argument`,
  );
}

/**
 * The last `--tensor-parallel-size`/`--tp` in the main container's command line (argparse
 * keeps the last). Command and args are both read, and each entry is split on whitespace,
 * because launch lines are often one `sh -c "python -m ... --tp 4"` string.
 */
function _tensorParallelArg(
  container: Record<string, unknown>,
): { flag: string; value: unknown } | undefined {
  const words = [container.command, container.args]
    .flatMap((list) => (Array.isArray(list) ? list : []))
    .filter((word): word is string => typeof word === "string")
    .flatMap((word) => word.split(/\s+/).filter(Boolean));
  let found: { flag: string; value: unknown } | undefined;
  words.forEach((word, i) => {
    for (const flag of TP_FLAGS) {
      if (word === flag) found = { flag, value: words[i + 1] };
      else if (word.startsWith(`${flag}=`)) found = { flag, value: word.slice(flag.length + 1) };
    }
  });
  return found;
}

function _timesNodeCount(input: GpuInput, single: { perReplica: number; source: string }): GpuCount {
  const multinode = _record(input.spec.multinode);
  if (!multinode) return { kind: "ok", ...single };
  const raw = multinode.nodeCount;
  const nodeCount = raw === undefined || raw === null ? DEFAULT_NODE_COUNT : wholeNumber(raw);
  if (nodeCount === undefined || nodeCount < 1) {
    return _unknown(input, `multinode.nodeCount is ${JSON.stringify(raw)}, not a positive integer`);
  }
  return {
    kind: "ok",
    perReplica: single.perReplica * nodeCount,
    source: `${single.source} × multinode.nodeCount ${nodeCount}`,
  };
}

function _counted(input: GpuInput, value: unknown, path: string): GpuCount {
  const count = wholeNumber(value);
  if (count === undefined) {
    return _unknown(input, `${path} is ${JSON.stringify(value) ?? "missing"}, not a non-negative integer`);
  }
  return { kind: "ok", perReplica: count, source: path };
}

function _unknown(input: GpuInput, detail: string): GpuCount {
  return {
    kind: "unknown",
    reason: `cannot determine GPUs per replica of component '${input.component}' ` +
      `of DGD '${input.dgd}': ${detail}`,
  };
}

function _record(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? value as Record<string, unknown>
    : undefined;
}
