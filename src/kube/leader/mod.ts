/** Leader election on a Lease: the elector, its Kubernetes port and the write fence. */
export { type ElectorClock, LeaderElector, type Role, SYSTEM_CLOCK } from "./elector.ts";
export { KubeLeaseApi, type LeaseApi, type LeaseRecord, type StoredLease } from "./lease_api.ts";
export { leaderWriteFence } from "./fence.ts";
