/**
 * Response messages that callers and their tests match on; kept verbatim from upstream where
 * upstream has one.
 */
export const NO_OPERATION_MESSAGE = "[no-operation] Scale request received and logged (not executed)";
export const NO_CONNECTOR_MESSAGE =
  "Kubernetes scaling is not available in this build of the Global Planner; " +
  "run with --no-operation to accept and log requests without scaling";
export const scaledMessage = (dgd: string) => `Scaled ${dgd} successfully`;
/**
 * A negative count (pydantic lets it through; upstream then fails at the API server with a raw
 * client exception). Ours answers before any Kubernetes call, naming every offending target.
 */
export const negativeReplicasMessage = (
  targets: readonly { role: string; component: string | null; replicas: number }[],
): string =>
  `Invalid scale request: desired_replicas must be >= 0, got ${
    targets.map((t) => `${t.replicas} for ${t.role}${t.component ? ` (${t.component})` : ""}`).join(", ")
  }; nothing was changed`;
