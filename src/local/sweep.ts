// Removing everything a local cluster with a given prefix made on this host — after a crash, or
// for `meshctl dev down` when its daemon is gone: processes in its cgroups, its network
// namespaces, its cgroup directories and its /etc/netns entries.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { CONTAINER_LABEL, listContainers, removeAllContainers, removeV1Tree } from './runtime/oci.ts';
import { join } from 'node:path';
import { deleteNetns, NETNS_DIR, removeCgroup } from './host.ts';

export const ETC_NETNS = '/etc/netns';

/** Children first (nodes hold pods): removeCgroup kills what is left inside (by PID) and
 * retries until empty. */
async function removeTree(dir: string): Promise<void> {
  for (const child of readdirSync(dir, { withFileTypes: true })) {
    if (child.isDirectory()) await removeTree(join(dir, child.name));
  }
  await removeCgroup(dir);
}

/** Returns what it removed, for the user. */
export async function sweepLocalCluster(prefix: string, cgroupParent: string): Promise<string[]> {
  const removed: string[] = [];
  const containers = await listContainers(prefix);
  if (containers.length) {
    await removeAllContainers(prefix);
    removed.push(`${containers.length} containers (label ${CONTAINER_LABEL}=${prefix})`);
  }
  if (removeV1Tree(cgroupParent).length) removed.push(`cgroup v1 twins of ${cgroupParent}`);
  if (existsSync(cgroupParent)) {
    await removeTree(cgroupParent);
    removed.push(`cgroup ${cgroupParent}`);
  }
  const mine = (name: string) => name.startsWith(`${prefix}-`);
  const netns = existsSync(NETNS_DIR) ? readdirSync(NETNS_DIR).filter(mine) : [];
  if (netns.length) {
    await deleteNetns(netns);
    removed.push(`${netns.length} network namespaces (${prefix}-*)`);
  }
  const etc = existsSync(ETC_NETNS) ? readdirSync(ETC_NETNS).filter(mine) : [];
  for (const d of etc) rmSync(join(ETC_NETNS, d), { recursive: true, force: true });
  if (etc.length) removed.push(`${etc.length} ${ETC_NETNS} entries`);
  return removed;
}
