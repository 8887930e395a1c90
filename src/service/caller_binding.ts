/**
 * Which DGDs a caller may scale (ours, opt-in). Upstream trusts the self-asserted
 * `caller_namespace`: any authorized planner may scale any DGD the ServiceAccount reaches.
 * `operator` binds a caller to the DGD whose pods the Dynamo operator gives that namespace
 * (`DYN_NAMESPACE` = `{k8s_namespace}-{dgd}`); `map` to an explicit list. Pure.
 */

export interface BindingSettings {
  callerBinding: "off" | "operator" | "map";
  /** Caller namespace → `namespace/dgd` names. */
  callerMap: Readonly<Record<string, readonly string[]>>;
  /** `null` = every Kubernetes namespace. */
  managedK8sNamespaces: readonly string[] | null;
}

export interface BindingTarget {
  caller: string;
  k8sNamespace: string;
  dgd: string;
}

/**
 * The Dynamo namespace the operator gives a DGD's pods: `{k8s_namespace}-{dgd}`, dots in the DGD
 * name replaced by dashes (a dot would split the runtime's `namespace.component.endpoint` path).
 */
export function operatorNamespace(k8sNamespace: string, dgd: string): string {
  return `${k8sNamespace}-${dgd.replaceAll(".", "-")}`;
}

export interface BindingRefusal {
  reason: "namespace_not_managed" | "caller_not_bound";
  message: string;
}

/** `undefined` when allowed; else the refusal, its message naming caller and target. */
export function bindingRefusal(settings: BindingSettings, target: BindingTarget): BindingRefusal | undefined {
  const message = _refusal(settings, target);
  if (!message) return undefined;
  return { reason: message.startsWith("Caller") ? "caller_not_bound" : "namespace_not_managed", message };
}

function _refusal(settings: BindingSettings, target: BindingTarget): string | undefined {
  const { caller, k8sNamespace, dgd } = target;
  const managed = settings.managedK8sNamespaces;
  if (managed && managed.length > 0 && !managed.includes(k8sNamespace)) {
    return `DynamoGraphDeployment '${k8sNamespace}/${dgd}' requested by caller '${caller}' is in a ` +
      `Kubernetes namespace this Global Planner does not manage (managed: ${managed.join(", ")}); ` +
      "nothing was changed";
  }
  if (settings.callerBinding === "operator") {
    const expected = operatorNamespace(k8sNamespace, dgd);
    if (caller !== expected) {
      return `Caller '${caller}' may not scale DynamoGraphDeployment '${k8sNamespace}/${dgd}': caller ` +
        `binding "operator" accepts only '${expected}' for it; nothing was changed`;
    }
  } else if (settings.callerBinding === "map") {
    const allowed = Object.hasOwn(settings.callerMap, caller) ? settings.callerMap[caller] : [];
    if (!allowed.includes(`${k8sNamespace}/${dgd}`)) {
      return `Caller '${caller}' may not scale DynamoGraphDeployment '${k8sNamespace}/${dgd}': caller ` +
        `binding "map" allows it ${
          allowed.length ? allowed.map((d) => `'${d}'`).join(", ") : "no DynamoGraphDeployment"
        }; nothing was changed`;
    }
  }
  return undefined;
}
