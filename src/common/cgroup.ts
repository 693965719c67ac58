// Locating cgroup v2 on the host: where the unified hierarchy is mounted, which cgroup a
// process lives in, and which directory kubelet made for a pod. The datapath attaches its
// cgroup/connect programs to these directories, so every path here is absolute.

import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** The host cannot give us what the mesh needs from cgroup v2. */
export class CgroupError extends Error {
  readonly code = 'MESH_ERR_NO_CGROUP2';
  override name = 'CgroupError';
}

// Where distributions mount it: systemd's unified mode uses /sys/fs/cgroup, its hybrid mode
// /sys/fs/cgroup/unified (systemd src/shared/mount-setup.c).
const PREFERRED_MOUNTS = ['/sys/fs/cgroup', '/sys/fs/cgroup/unified'];

/**
 * Returns the mount point of the cgroup v2 hierarchy, read from /proc/self/mountinfo
 * (format: proc(5), "/proc/pid/mountinfo"). Throws CgroupError when there is none.
 */
export function findCgroup2Mount(mountinfo?: string): string {
  const text = mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8');
  const mounts = parseMountinfo(text)
    .filter((m) => m.fstype === 'cgroup2')
    .map((m) => m.mountPoint);
  for (const preferred of PREFERRED_MOUNTS) {
    if (mounts.includes(preferred)) return preferred;
  }
  if (mounts[0]) return mounts[0];
  throw new CgroupError(
    'no cgroup2 filesystem is mounted — the mesh attaches its programs to cgroup v2 and needs a host ' +
      'with cgroup v2 (unified or hybrid mode; e.g. systemd.unified_cgroup_hierarchy=1 on the kernel ' +
      'command line, or `mount -t cgroup2 none /sys/fs/cgroup/unified`)',
  );
}

export interface Mount {
  /** The path inside the filesystem that is mounted ("/" unless a bind mount or a cgroup namespace). */
  root: string;
  mountPoint: string;
  fstype: string;
}

/** Parses /proc/PID/mountinfo (proc(5)): the filesystem type is the first field after " - ". */
export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    // The optional fields before " - " vary in number.
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(' ');
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (!fields[3] || !fields[4] || !fstype) continue;
    mounts.push({ root: unescapeMountField(fields[3]), mountPoint: unescapeMountField(fields[4]), fstype });
  }
  return mounts;
}

/** Mount points in mountinfo escape space, tab, newline and backslash as \ooo octal. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/**
 * Returns the cgroup v2 path ("/kubepods/pod…") from the text of /proc/PID/cgroup: the line
 * "0::/path" (cgroups(7)). The path is relative to the cgroup2 mount of the reader's cgroup
 * namespace; join it to findCgroup2Mount() for a directory.
 */
export function parseProcCgroup(text: string): string {
  for (const line of text.split('\n')) {
    if (!line.startsWith('0::')) continue;
    // A removed cgroup is shown with a " (deleted)" suffix (kernel/cgroup/cgroup.c, proc_cgroup_show).
    return line.slice(3).replace(/ \(deleted\)$/, '');
  }
  throw new CgroupError(
    'the process has no cgroup v2 membership ("0::" line in /proc/PID/cgroup) — the host runs cgroup v1 only; ' +
      'the mesh needs cgroup v2',
  );
}

/** The cgroup v2 path of a running process, e.g. "/kubepods/besteffort/pod1234…/abcd". */
export function cgroupOfPid(pid: number | 'self'): string {
  return parseProcCgroup(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
}

// kubelet nests pods at most a few levels deep: kubepods[.slice]/<qos>/pod…, under an optional
// parent such as kubelet.slice or a container runtime's own cgroup (kind, k3d).
const DEFAULT_MAX_DEPTH = 6;

// Kubernetes object UIDs are RFC 4122 UUIDs; allow underscores for the systemd spelling.
const POD_UID = /^[0-9a-fA-F_-]{1,64}$/;

/**
 * Finds the cgroup directory kubelet created for a pod, searching breadth-first under `mount`
 * (at most `maxDepth` levels). Both cgroup drivers are recognised (pkg/kubelet/cm/cgroup_manager_linux.go):
 *   cgroupfs: .../kubepods/burstable/pod<uid>
 *   systemd:  .../kubepods-burstable.slice/kubepods-burstable-pod<uid with '_' for '-'>.slice
 * Returns undefined when no such directory exists (the pod is gone or not yet started).
 */
export async function findPodCgroup(
  podUid: string,
  mount: string,
  maxDepth = DEFAULT_MAX_DEPTH,
): Promise<string | undefined> {
  if (!POD_UID.test(podUid)) throw new TypeError(`not a Kubernetes pod UID: ${JSON.stringify(podUid)}`);
  const cgroupfsName = `pod${podUid.replaceAll('_', '-')}`;
  const systemdSuffix = `-pod${podUid.replaceAll('-', '_')}.slice`;
  const isPod = (name: string) => name === cgroupfsName || name.endsWith(systemdSuffix);

  let level = [mount];
  for (let depth = 1; depth <= maxDepth && level.length > 0; depth++) {
    const next: string[] = [];
    for (const dir of level) {
      for (const name of await subdirectories(dir)) {
        const path = join(dir, name);
        if (isPod(name)) return path;
        // A pod's children are its containers; another pod cannot be below them.
        if (!/(^|-)pod[0-9a-fA-F_-]+(\.slice)?$/.test(name)) next.push(path);
      }
    }
    level = next;
  }
  return undefined;
}

async function subdirectories(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    // Cgroups come and go while we walk; an unreadable or vanished one holds nothing for us.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'ENOTDIR') return [];
    throw err;
  }
}
