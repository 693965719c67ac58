// Finding a pod's network namespace and cgroup on this node from its UID alone, the same way on a
// real node and in the local cluster: kubelet names the pod's cgroup after its UID, and any process
// in that cgroup (or in a container's cgroup below it) lives in the pod's network namespace.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { findPodCgroup } from '../common/cgroup.ts';

export interface PodLocation {
  cgroupPath: string;
  /** /proc/<pid>/ns/net of a process in the pod: valid while that process lives. */
  netnsPath: string;
  pid: number;
}

function firstPid(dir: string, depth = 0): number | undefined {
  try {
    const pid = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').find(Boolean);
    if (pid) return Number(pid);
    if (depth >= 3) return undefined;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const p = firstPid(join(dir, e.name), depth + 1);
      if (p) return p;
    }
  } catch {
    // the cgroup went away while we looked
  }
  return undefined;
}

/** Where the pod runs now, or undefined if it has no cgroup or no process yet. */
export async function locatePod(uid: string, cgroupRoot: string): Promise<PodLocation | undefined> {
  const cgroupPath = await findPodCgroup(uid, cgroupRoot);
  if (!cgroupPath) return undefined;
  const pid = firstPid(cgroupPath);
  if (!pid) return undefined;
  return { cgroupPath, netnsPath: `/proc/${pid}/ns/net`, pid };
}
