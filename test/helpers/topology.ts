// Root-only test environments: a Topology with a unique prefix, its own cgroup parent and its
// own bpffs, all torn down after the test whether it passed or not, and checked for leftovers.

import { randomBytes } from 'node:crypto';
import { listContainers } from '../../src/local/runtime/oci.ts';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { findCgroup2Mount } from '../../src/common/cgroup.ts';
import { run, Topology, type TopologyOptions } from '../../src/local/index.ts';

export interface TestTopology {
  readonly topo: Topology;
  readonly prefix: string;
  /** The cgroup2 mount point of this host. */
  readonly cgroupMount: string;
  readonly cgroupParent: string;
  /** A private bpffs mount for pinning, instead of the host's /sys/fs/bpf. */
  readonly bpffs: string;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** `mt` and five random characters: unique per test, short enough for netns and link names. */
export function uniquePrefix(): string {
  return `mt${[...randomBytes(5)].map((b) => ALPHABET[b % ALPHABET.length]).join('')}`;
}

/**
 * A Topology with its own cgroup parent and a private bpffs mount; `destroy()` removes all of it
 * and reports what it could not. Tests use makeTopology; benchmarks use this directly.
 */
export async function createScratch(
  prefix: string,
  opts: Omit<TopologyOptions, 'prefix' | 'cgroupParent'> = {},
): Promise<TestTopology & { destroy(): Promise<void> }> {
  const cgroupMount = findCgroup2Mount();
  const cgroupParent = join(cgroupMount, `mesh-test-${prefix}`);
  let topo: Topology | undefined;
  let bpffs: string | undefined;
  let mounted = false;
  const destroy = async () => {
    const errors: unknown[] = [];
    await topo?.destroy().catch((err) => errors.push(err));
    if (mounted && bpffs) {
      await run('umount', [bpffs]).catch(async (err) => {
        errors.push(err);
        await run('umount', ['-l', bpffs!]).catch(() => {});
      });
    }
    if (bpffs) await rmdir(bpffs).catch((err) => errors.push(err));
    if (errors.length) throw new AggregateError(errors, `teardown of test topology ${prefix} failed`);
  };
  try {
    bpffs = await mkdtemp(`/tmp/mesh-${prefix}-bpffs-`);
    await run('mount', ['-t', 'bpf', 'bpf', bpffs]);
    mounted = true;
    topo = await Topology.create({ ...opts, prefix, cgroupParent });
  } catch (err) {
    await destroy().catch(() => {});
    throw err;
  }
  return { topo, prefix, cgroupMount, cgroupParent, bpffs, destroy };
}

/**
 * Creates a Topology for this test and registers a teardown that destroys it, unmounts and
 * removes the bpffs, then fails the test if anything with the prefix is left on the host.
 */
export async function makeTopology(
  t: ExecutionContext,
  opts: Omit<TopologyOptions, 'prefix' | 'cgroupParent'> = {},
): Promise<TestTopology> {
  const prefix = uniquePrefix();
  const holder: { scratch?: Awaited<ReturnType<typeof createScratch>> } = {};
  // Registered before anything exists, so a failure half-way through creation is checked too.
  t.teardown(async () => {
    const errors: unknown[] = [];
    await holder.scratch?.destroy().catch((err) => errors.push(err));
    const leftovers = await assertNothingLeaked(prefix);
    if (leftovers.length) errors.push(new Error(`left on the host: ${leftovers.join('; ')}`));
    if (errors.length) throw new AggregateError(errors, `teardown of test topology ${prefix} failed`);
  });
  holder.scratch = await createScratch(prefix, opts);
  return holder.scratch;
}

/** makeTopology, then `fn`; cleanup happens in the test's teardown. */
export async function withTopology<T>(
  t: ExecutionContext,
  opts: Omit<TopologyOptions, 'prefix' | 'cgroupParent'>,
  fn: (env: TestTopology) => Promise<T>,
): Promise<T> {
  return fn(await makeTopology(t, opts));
}

/**
 * Lists what is left on the host from a test topology with `prefix`: network namespaces,
 * cgroups directly under the cgroup2 mount, bpffs mounts and /tmp directories. Empty means clean.
 */
export async function assertNothingLeaked(prefix: string): Promise<string[]> {
  const leftovers: string[] = [];
  const netns = await run('ip', ['netns', 'list']);
  for (const line of netns.split('\n')) {
    const name = line.split(' ')[0];
    if (name?.startsWith(`${prefix}-`)) leftovers.push(`netns ${name}`);
  }
  const mount = findCgroup2Mount();
  for (const name of await readdir(mount)) {
    if (name.includes(prefix)) leftovers.push(`cgroup ${join(mount, name)}`);
  }
  for (const line of (await readFile('/proc/mounts', 'utf8')).split('\n')) {
    const [, mountPoint, fstype] = line.split(' ');
    // bpffs, netns bind mounts (/run/netns/<prefix>-…), pod volumes: anything mounted under our name.
    if (mountPoint?.includes(prefix)) leftovers.push(`${fstype === 'bpf' ? 'bpffs' : fstype} mount ${mountPoint}`);
  }
  for (const name of await readdir('/tmp')) {
    if (name.startsWith(`mesh-${prefix}-`)) leftovers.push(`directory /tmp/${name}`);
  }
  for (const name of await listContainers(prefix)) leftovers.push(`container ${name}`);
  for (const h of mount === '/sys/fs/cgroup' ? [] : await readdir('/sys/fs/cgroup')) {
    if (join('/sys/fs/cgroup', h) === mount) continue;
    for (const name of await readdir(join('/sys/fs/cgroup', h)).catch(() => [])) {
      if (name.includes(prefix)) leftovers.push(`cgroup ${join('/sys/fs/cgroup', h, name)}`);
    }
  }
  return leftovers;
}

/**
 * Network-namespace tests need root. Returns true when the test can go on. Otherwise the test
 * fails — in CI always, since a skipped e2e suite there hides breakage — unless MESH_ALLOW_SKIP=1
 * outside CI, where it passes with a log line. Use: `if (!(await requireRoot(t))) return;`
 */
export async function requireRoot(t: ExecutionContext): Promise<boolean> {
  const problem = await rootProblem();
  if (problem === undefined) return true;
  const message = `this test needs root with network namespaces and cgroup v2: ${problem}`;
  if (process.env['CI'] === 'true') {
    t.fail(`${message} (CI=true: root tests may not be skipped in CI)`);
  } else if (process.env['MESH_ALLOW_SKIP'] === '1') {
    t.log(`SKIPPED — ${message} (MESH_ALLOW_SKIP=1)`);
    t.pass();
  } else {
    t.fail(`${message} (run as root, or set MESH_ALLOW_SKIP=1 to skip locally)`);
  }
  return false;
}

async function rootProblem(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return `running as uid ${process.getuid?.()}, not root`;
  if (!existsSync('/proc/self/ns/net')) return 'the kernel has no network namespaces (/proc/self/ns/net)';
  try {
    findCgroup2Mount();
    await run('ip', ['netns', 'list']);
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return undefined;
}
