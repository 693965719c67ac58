// What the local cluster's daemon shares with `meshctl dev` through its state directory: its
// status file and pid file. Kept apart from the daemon so that meshctl loads none of the cluster.
import { join } from 'node:path';

export interface DaemonStatus {
  phase: 'starting' | 'ready' | 'stopping' | 'stopped' | 'failed';
  pid: number;
  message: string;
  progress: string[];
  server?: string;
  kubeconfig?: string;
  nodes?: number;
  /** The mesh (controller, agents, ztunnels) runs on the cluster; meshctl finds it in mesh.json. */
  mesh?: boolean;
}

export function statusPath(stateDir: string): string {
  return join(stateDir, 'status.json');
}

export function pidPath(stateDir: string): string {
  return join(stateDir, 'daemon.pid');
}

/** The daemon's control socket (`meshctl dev rollout`): see src/local/daemon-control.ts. */
export function controlPath(stateDir: string): string {
  return join(stateDir, 'daemon.sock');
}
