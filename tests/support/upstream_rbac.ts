/**
 * RBAC for upstream's Python Global Planner (ai-dynamo 1.6.1): what its Kubernetes client calls
 * on the scale path (a pods list included), for the tests and benchmarks that run it side by side.
 */
import { SA_NAMESPACE } from "./rbac.ts";

export const UPSTREAM_SA = "upstream-global-planner";

export const UPSTREAM_RBAC: Record<string, unknown>[] = [
  { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: UPSTREAM_SA, namespace: SA_NAMESPACE } },
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: UPSTREAM_SA },
    rules: [
      {
        apiGroups: ["nvidia.com"],
        resources: ["dynamographdeployments"],
        verbs: ["get", "list", "patch", "watch"],
      },
      {
        apiGroups: ["nvidia.com"],
        resources: ["dynamographdeploymentscalingadapters/scale"],
        verbs: ["get", "patch"],
      },
      { apiGroups: [""], resources: ["pods"], verbs: ["list"] },
    ],
  },
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: UPSTREAM_SA },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: UPSTREAM_SA },
    subjects: [{ kind: "ServiceAccount", name: UPSTREAM_SA, namespace: SA_NAMESPACE }],
  },
];
