// The host resources a local topology owns besides its links: named network namespaces and
// cgroup directories. Creating is simple; these helpers make removal tolerant of what is already
// gone and precise about what is left.

import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TopologyError } from './errors.ts';
import { run } from './run.ts';

/** Where `ip netns add` bind-mounts namespaces (iproute2's NETNS_RUN_DIR). */
export const NETNS_DIR = '/run/netns';

export function netnsPath(name: string): string {
  return join(NETNS_DIR, name);
}

export function netnsExists(name: string): boolean {
  return existsSync(netnsPath(name));
}

/**
 * Deletes named namespaces in one `ip -force -batch` (it goes on past failures). Missing ones are
 * fine; any still present afterwards is an error. A namespace that a process still holds lives
 * on unnamed until that process exits — the name, which is what we own, is gone either way.
 */
export async function deleteNetns(names: readonly string[]): Promise<void> {
  const present = names.filter(netnsExists);
  if (present.length === 0) return;
  let failure: unknown;
  await run('ip', ['-force', '-batch', '-'], present.map((n) => `netns del ${n}\n`).join('')).catch((err) => {
    failure = err;
  });
  const left = present.filter(netnsExists);
  if (left.length) {
    throw new TopologyError(
      `could not delete network namespaces ${left.join(', ')}`,
      failure ? [failure] : [],
    );
  }
}

/**
 * Removes a cgroup directory once its processes are gone. Processes still inside are ones we
 * put there (spawned children and their descendants); they get SIGKILL by PID. rmdir fails with
 * EBUSY until the kernel has finished their exit, so it is retried for up to two seconds. Child
 * cgroups go first, the same way: a container runtime makes its own below a pod's (podman's
 * `libpod-<id>`), and one that a `podman run` stopped mid-start left behind — its `runc init`
 * waiting for a start that never comes, unknown to podman — keeps the pod's cgroup busy.
 */
export async function removeCgroup(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 40) {
        const pids = await cgroupPids(dir);
        const children = await childCgroups(dir);
        throw new TopologyError(
          `could not remove cgroup ${dir} (${code}); processes left: [${pids.join(', ')}]${children.length ? `; child cgroups left: ${children.join(', ')}` : ''}`,
        );
      }
    }
    for (const child of await childCgroups(dir)) await removeCgroup(child);
    for (const pid of await cgroupPids(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // ESRCH: it exited between the read and the kill.
      }
    }
    await sleep(50);
  }
}

async function childCgroups(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
}

async function cgroupPids(dir: string): Promise<number[]> {
  const text = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map(Number);
}

/** `mkdir -p` that returns the directories it created, shallowest first. */
export async function mkdirTracked(dir: string): Promise<string[]> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return [];
  const dirs: string[] = [];
  for (let d = dir; d.length >= first.length; d = dirname(d)) dirs.unshift(d);
  return dirs;
}
