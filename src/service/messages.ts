/**
 * Response messages that callers and their tests match on; kept verbatim from upstream where
 * upstream has one.
 */
export const NO_OPERATION_MESSAGE = "[no-operation] Scale request received and logged (not executed)";
export const NO_CONNECTOR_MESSAGE =
  "Kubernetes scaling is not available in this build of the Global Planner; " +
  "run with --no-operation to accept and log requests without scaling";
export const scaledMessage = (dgd: string) => `Scaled ${dgd} successfully`;
