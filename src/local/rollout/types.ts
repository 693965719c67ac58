// What a rollout of one component reports (src/local/rollout/index.ts dispatches them).

export interface RolloutResult {
  /** The node it ran on; absent for a cluster-wide component (the controller). */
  node?: string;
  oldPid?: number;
  newPid: number;
  /** From the start of the new process until it served everything the old one did. */
  handoverMs: number;
  /** Settles when the old process has exited (ztunnel: at the end of its drain). */
  drained: Promise<{ ms: number; code: number | null }>;
}
