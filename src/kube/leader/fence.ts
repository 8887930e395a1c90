/**
 * The write fence of a leader-elected replica: every Kubernetes write but the Lease itself and
 * this pod's own DynamoWorkerMetadata (discovery must be withdrawn also by a standby) needs the
 * current term, and is aborted when the term ends. A write never sent by a standby cannot land
 * after a new leader's first write; one sent in the term is aborted at its end, and the scaler's
 * resourceVersion preconditions turn a late one into a 409.
 */
import type { WriteFence } from "../client.ts";
import { DWM } from "../worker_metadata.ts";
import { LEASES } from "./lease_api.ts";

/** Resources written whatever the role. */
const UNFENCED = new Set([LEASES, DWM]);

export function leaderWriteFence(elector: { writeSignal(): AbortSignal }): WriteFence {
  return (request) => (UNFENCED.has(request.resource) ? undefined : elector.writeSignal());
}
