// Each local node's own host filesystem, for the hostPath volumes a node's system pods use. All
// local nodes share one host, so a hostPath such as /sys/fs/bpf or /var/run/mesh taken literally
// would give two nodes' agents one set of pins and one socket. The kubelet resolves the paths of
// node-local state (NODE_LOCAL) into <state dir>/nodes/<node>/root, which holds, as a real node
// does: its own bpffs at sys/fs/bpf; its pods' cgroup subtree bind-mounted at
// sys/fs/cgroup/kubepods.slice and sys/fs/cgroup/kubepods (the systemd and cgroupfs drivers'
// names, so the chart's node.podCgroup works either way), so an agent that mounts /sys/fs/cgroup
// attaches to its own node's pods only; and run/, etc/cni, opt/cni, var/lib as plain directories
// (var/run → run, as on hosts), except run/netns, the runtime's netns dir, which is the host's.
// Other hostPaths (the host's /usr for the host-runtime waypoints, a
// test's directories) are the host's own, as before.
import { mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join, normalize } from 'node:path';
import { NETNS_DIR } from '../host.ts';
import { run } from '../run.ts';

/** Host paths that are a node's own state (by prefix). */
export const NODE_LOCAL = ['/sys/fs/bpf', '/sys/fs/cgroup', '/run', '/var/run', '/etc/cni', '/opt/cni', '/var/lib'];
const CGROUP_NAMES = ['kubepods.slice', 'kubepods'];
/** Where runtimes keep pods' named netns (containerd and CRI-O: /var/run/netns). */
const NETNS_DIRS = ['/var/run/netns', '/run/netns'];

function mounted(path: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === path);
}

export class NodeRoot {
  /** <state dir>/nodes/<node>/root */
  readonly dir: string;
  private readonly podCgroup: string;

  constructor(dir: string, podCgroup: string) {
    this.dir = dir;
    this.podCgroup = podCgroup;
  }

  /** Where the bpffs of this node is mounted on the host. */
  get bpffs(): string {
    return join(this.dir, 'sys/fs/bpf');
  }

  /** Makes the directories and mounts (idempotent: a restarted cluster finds them made). */
  async prepare(): Promise<void> {
    for (const d of ['run', 'etc/cni/net.d', 'opt/cni/bin', 'var/lib', 'sys/fs/bpf']) mkdirSync(join(this.dir, d), { recursive: true });
    try {
      symlinkSync('../run', join(this.dir, 'var/run'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (!mounted(this.bpffs)) await run('mount', ['-t', 'bpf', 'bpf', this.bpffs]);
    for (const name of CGROUP_NAMES) {
      const at = join(this.dir, 'sys/fs/cgroup', name);
      mkdirSync(at, { recursive: true });
      if (!mounted(at)) await run('mount', ['--bind', this.podCgroup, at]);
    }
  }

  /** The host path behind a pod's hostPath `path` on this node. */
  resolve(path: string): string {
    const p = normalize(path);
    // The runtime's named netns dir is the host's: every local node's pods have their netns there
    // (host.ts NETNS_DIR, names unique per cluster), and CNI_NETNS names a path in it.
    for (const dir of NETNS_DIRS) if (p === dir || p.startsWith(`${dir}/`)) return join(NETNS_DIR, p.slice(dir.length));
    return NODE_LOCAL.some((l) => p === l || p.startsWith(`${l}/`)) ? join(this.dir, p) : p;
  }

  /**
   * Unmounts the node's bpffs (whatever is still pinned there goes with it: links detach, maps
   * are freed once no process holds them) and its cgroup views, then removes the directory.
   */
  async release(): Promise<void> {
    for (const at of [...CGROUP_NAMES.map((n) => join(this.dir, 'sys/fs/cgroup', n)), this.bpffs]) {
      if (mounted(at)) await run('umount', [at]);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Unmounts what a crashed cluster left under its state dir's node roots (sweep). */
export async function sweepNodeRoots(stateDir: string): Promise<string[]> {
  const root = join(stateDir, 'nodes');
  const left = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of left) await run('umount', [m]);
  return left;
}
