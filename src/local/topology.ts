// A fake cluster network built from network namespaces on this host: one "fabric" namespace
// holding a bridge that plays the physical network, one namespace per node joined to it, and one
// per pod with a veth into its node. Nothing here touches the host's own namespace: every link
// is made with `ip -n <one of ours>`, every cgroup under the parent we are given.
//
//   fabric  netns <prefix>-fabric        br0 ── f<N> ══╗
//   node N  netns <prefix>-<node>                      eth0 10.250.0.(N+1)   v<k> 169.254.1.1, fe80::1 ══╗
//   pod     netns <prefix>-<node>-<pod>                                      eth0 10.(100+N).0.(2..)/32
//
// Node N: fabric 10.250.0.(N+1) and fd00:250::(N+1); pods from 10.(100+N).0.0/24 and
// fd00:(100+N)::/64 starting at .2 / ::2 (the IPv6 host part spells the IPv4 one's decimal digits).
//
// Pods are routed, not bridged (as Calico and Cilium do): each pod has a /32 (/128) and a default
// route via the link-local gateway 169.254.1.1 (fe80::1), which every host veth carries; the node
// has a /32 route per pod. All pod traffic, even between pods of one node, therefore crosses the
// node's IP layer, where service DNAT and its reverse translation (conntrack) see both directions.

import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { findCgroup2Mount } from '../common/cgroup.ts';
import { CommandError, TopologyError } from './errors.ts';
import { deleteNetns, mkdirTracked, netnsExists, netnsPath, removeCgroup } from './host.ts';
import { collect, type ExecResult, stopChildren } from './process.ts';
import { ipBatch, run, systemTool } from './run.ts';

export interface TopologyOptions {
  /** Short name ([a-z][a-z0-9]{0,11}) that starts every namespace name we create. */
  prefix: string;
  /** Give nodes and pods IPv6 addresses too (dual stack). */
  ipv6?: boolean;
  /** Absolute directory under the cgroup2 mount for pod cgroups; created if missing (and then
   *  removed by destroy()). Default: `<cgroup2 mount>/mesh-<prefix>`. */
  cgroupParent?: string;
}

/** A node: a namespace on the fabric that routes its own pod CIDR. */
export interface NodeNet {
  readonly name: string;
  readonly index: number;
  readonly netns: string;
  /** The namespace's bind-mount file, for setns(2) or `nsenter --net=`. */
  readonly netnsPath: string;
  /** Address on the fabric (eth0). */
  readonly ip4: string;
  readonly ip6?: string;
  readonly podCidr4: string;
  readonly podCidr6?: string;
  /** The pods' default gateway: a link-local address on every host veth of the node. */
  readonly gateway4: string;
  readonly gateway6?: string;
}

/** A pod: a namespace whose only link is eth0, with its peer `hostVeth` in the node namespace. */
export interface PodNet {
  readonly name: string;
  readonly node: NodeNet;
  readonly netns: string;
  readonly netnsPath: string;
  readonly uid: string;
  readonly ip4: string;
  readonly ip6?: string;
  /** Absolute cgroup v2 directory, named as kubelet's cgroupfs driver does: `pod<uid>`. */
  readonly cgroup: string;
  /** The pod's veth peer in the node namespace, where tc programs for the pod attach. */
  readonly hostVeth: string;
}

export type { ExecResult };

const NAME = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
const POD_UID = /^[0-9a-fA-F-]{1,64}$/;
const MAX_NODES = 156; // 10.(100+N) must stay an octet
const FIRST_POD_HOST = 2;
const LAST_POD_HOST = 254;
const FABRIC_BRIDGE = 'br0';
const GATEWAY4 = '169.254.1.1';
const GATEWAY6 = 'fe80::1';
// Addresses usable at once instead of after ~1s of duplicate address detection (RFC 4862 §5.4);
// `nodad` covers the addresses we add, these cover the link-local ones the kernel adds.
const NO_DAD = ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0'];
// The child writes its own PID into the cgroup, then becomes the command inside the namespace
// (`ip netns exec` execs without forking), so the PID we hold is the command's.
const ENTER_POD = 'echo $$ > "$1" && shift && exec ip netns exec "$@"';

interface NodeState {
  readonly net: NodeNet;
  readonly hostsInUse: Set<number>;
  nextVeth: number;
}

export class Topology {
  readonly prefix: string;
  readonly ipv6: boolean;
  readonly cgroupParent: string;
  readonly fabricNetns: string;
  readonly #createdCgroupDirs: string[];
  readonly #nodes = new Map<string, NodeState>();
  readonly #pods = new Map<string, PodNet>();
  readonly #children = new Map<ChildProcess, PodNet | NodeNet>();
  readonly #inFlight = new Set<Promise<unknown>>();
  #nodeQueue: Promise<unknown> = Promise.resolve();
  #nextNodeIndex = 0;
  #closed = false;
  #destroying: Promise<void> | undefined;

  private constructor(opts: Required<TopologyOptions>, createdCgroupDirs: string[]) {
    this.prefix = opts.prefix;
    this.ipv6 = opts.ipv6;
    this.cgroupParent = opts.cgroupParent;
    this.fabricNetns = `${opts.prefix}-fabric`;
    this.#createdCgroupDirs = createdCgroupDirs;
  }

  static async create(opts: TopologyOptions): Promise<Topology> {
    const { prefix } = opts;
    if (!/^[a-z][a-z0-9]{0,11}$/.test(prefix)) {
      throw new TypeError(`topology prefix must match [a-z][a-z0-9]{0,11}, got ${JSON.stringify(prefix)}`);
    }
    const mount = findCgroup2Mount();
    const cgroupParent = opts.cgroupParent ?? join(mount, `mesh-${prefix}`);
    if (!cgroupParent.startsWith(`${mount}/`) || cgroupParent.split('/').includes('..')) {
      throw new TypeError(`cgroupParent ${cgroupParent} is not a directory under the cgroup2 mount ${mount}`);
    }
    if (netnsExists(`${prefix}-fabric`)) {
      throw new TopologyError(
        `network namespace ${prefix}-fabric already exists — a previous run with prefix ${prefix} leaked; ` +
          `delete its namespaces (ip netns list | grep ^${prefix}-) or choose another prefix`,
      );
    }
    const created = await mkdirTracked(cgroupParent);
    const topo = new Topology({ prefix, ipv6: opts.ipv6 ?? false, cgroupParent }, created);
    try {
      await run('ip', ['netns', 'add', topo.fabricNetns]);
      await ipBatch(
        ['link set lo up', `link add ${FABRIC_BRIDGE} type bridge`, `link set ${FABRIC_BRIDGE} up`],
        topo.fabricNetns,
      );
    } catch (err) {
      await topo.destroy().catch(() => {});
      throw err;
    }
    return topo;
  }

  get nodes(): NodeNet[] {
    return [...this.#nodes.values()].map((n) => n.net);
  }

  get pods(): PodNet[] {
    return [...this.#pods.values()];
  }

  /** Adds a node namespace on the fabric, with routes between it and every other node. */
  addNode(name: string): Promise<NodeNet> {
    this.#assertOpen();
    // One at a time: each node's routes are written against the nodes that exist before it.
    const next = this.#nodeQueue.then(() => this.#addNode(name));
    this.#nodeQueue = next.catch(() => {});
    return next;
  }

  async #addNode(name: string): Promise<NodeNet> {
    this.#assertOpen();
    checkName('node', name);
    if (this.#nodes.has(name))
      throw new TopologyError(`node ${name} already exists in topology ${this.prefix}`);
    const index = this.#nextNodeIndex;
    if (index >= MAX_NODES) throw new TopologyError(`a topology holds at most ${MAX_NODES} nodes`);
    const netns = `${this.prefix}-${name}`;
    const net: NodeNet = {
      name,
      index,
      netns,
      netnsPath: netnsPath(netns),
      ip4: `10.250.0.${index + 1}`,
      podCidr4: `10.${100 + index}.0.0/24`,
      gateway4: GATEWAY4,
      ...(this.ipv6
        ? {
            ip6: `fd00:250::${index + 1}`,
            podCidr6: `fd00:${100 + index}::/64`,
            gateway6: GATEWAY6,
          }
        : {}),
    };
    await run('ip', ['netns', 'add', netns]);
    // The node's pods live in its own cgroup subtree, as each kubelet has its own kubepods: a
    // node agent attaches to its node's subtree and sees only its node's pods.
    this.#createdCgroupDirs.push(...(await mkdirTracked(join(this.cgroupParent, name))));
    this.#nextNodeIndex++;
    const others = this.nodes;
    try {
      const sysctls = [
        'net.ipv4.ip_forward=1',
        ...(this.ipv6 ? ['net.ipv6.conf.all.forwarding=1', ...NO_DAD] : []),
      ];
      await run('ip', ['netns', 'exec', netns, systemTool('sysctl', 'procps'), '-q', '-w', ...sysctls]);
      await ipBatch(
        [
          `link add f${index} type veth peer name eth0 netns ${netns}`,
          `link set f${index} master ${FABRIC_BRIDGE} up`,
        ],
        this.fabricNetns,
      );
      await ipBatch(
        [
          'link set lo up',
          'link set eth0 up',
          `addr add ${net.ip4}/24 dev eth0`,
          ...(this.ipv6 ? [`addr add ${net.ip6}/64 dev eth0 nodad`] : []),
          ...others.flatMap((other) => this.#routesTo(other)),
        ],
        netns,
      );
      await Promise.all(others.map((other) => ipBatch(this.#routesTo(net), other.netns)));
    } catch (err) {
      // Its fabric veth goes with it; routes towards it in other nodes point nowhere, harmlessly.
      await deleteNetns([netns]).catch(() => {});
      throw err;
    }
    this.#nodes.set(name, { net, hostsInUse: new Set(), nextVeth: 0 });
    return net;
  }

  #routesTo(node: NodeNet): string[] {
    const v4 = `route replace ${node.podCidr4} via ${node.ip4}`;
    return this.ipv6 ? [v4, `route replace ${node.podCidr6} via ${node.ip6}`] : [v4];
  }

  /** Adds a pod namespace on `node`, with a routed veth into the node and a cgroup `pod<uid>`. */
  addPod(node: NodeNet, name: string, opts: { uid?: string } = {}): Promise<PodNet> {
    this.#assertOpen();
    // destroy() waits for pods under construction, so it sees every namespace they create.
    const pending = this.#addPod(node, name, opts);
    this.#inFlight.add(pending);
    const settle = () => this.#inFlight.delete(pending);
    pending.then(settle, settle);
    return pending;
  }

  async #addPod(node: NodeNet, name: string, opts: { uid?: string }): Promise<PodNet> {
    checkName('pod', name);
    const state = this.#nodes.get(node.name);
    if (state?.net !== node)
      throw new TopologyError(`node ${node.name} is not part of topology ${this.prefix}`);
    const netns = `${node.netns}-${name}`;
    const clash = this.#pods.get(netns);
    if (clash)
      throw new TopologyError(`pod ${clash.name} on node ${clash.node.name} already uses netns ${netns}`);
    const uid = opts.uid ?? randomUUID();
    if (!POD_UID.test(uid)) throw new TypeError(`pod uid must be a UUID, got ${JSON.stringify(uid)}`);
    if (this.pods.some((p) => p.uid === uid)) throw new TopologyError(`pod uid ${uid} is already in use`);
    const host = firstFree(state.hostsInUse);
    if (host === undefined) throw new TopologyError(`node ${node.name} has no free pod address left`);
    const pod: PodNet = {
      name,
      node,
      netns,
      netnsPath: netnsPath(netns),
      uid,
      ip4: `10.${100 + node.index}.0.${host}`,
      ...(this.ipv6 ? { ip6: `fd00:${100 + node.index}::${host}` } : {}),
      cgroup: join(this.cgroupParent, node.name, `pod${uid}`),
      hostVeth: `v${state.nextVeth++}`,
    };
    // Both are reserved synchronously so concurrent addPod calls cannot pick them too.
    state.hostsInUse.add(host);
    this.#pods.set(netns, pod);
    // Remove only what this call made: a failed mkdir or `netns add` may mean another owner's.
    const [ns, cg] = await Promise.allSettled([run('ip', ['netns', 'add', netns]), mkdir(pod.cgroup)]);
    if (ns.status === 'rejected' || cg.status === 'rejected') {
      if (ns.status === 'fulfilled') await deleteNetns([netns]).catch(() => {});
      if (cg.status === 'fulfilled') await rmdir(pod.cgroup).catch(() => {});
      this.#forget(pod);
      throw ns.status === 'rejected' ? ns.reason : (cg as PromiseRejectedResult).reason;
    }
    try {
      if (this.ipv6) await run('ip', ['netns', 'exec', netns, systemTool('sysctl', 'procps'), '-q', '-w', ...NO_DAD]);
      await ipBatch(
        [
          `link add ${pod.hostVeth} type veth peer name eth0 netns ${netns}`,
          `link set ${pod.hostVeth} up`,
          `addr add ${GATEWAY4}/32 dev ${pod.hostVeth}`,
          `route add ${pod.ip4}/32 dev ${pod.hostVeth}`,
          ...(this.ipv6
            ? [`addr add ${GATEWAY6}/64 dev ${pod.hostVeth} nodad`, `route add ${pod.ip6}/128 dev ${pod.hostVeth}`]
            : []),
        ],
        node.netns,
      );
      await ipBatch(
        [
          'link set lo up',
          'link set eth0 up',
          `addr add ${pod.ip4}/32 dev eth0`,
          `route add ${GATEWAY4} dev eth0 scope link`,
          `route add default via ${GATEWAY4} dev eth0`,
          ...(this.ipv6
            ? [`addr add ${pod.ip6}/128 dev eth0 nodad`, `route add ::/0 via ${GATEWAY6} dev eth0`]
            : []),
        ],
        netns,
      );
    } catch (err) {
      await this.removePod(pod).catch(() => {});
      throw err;
    }
    return pod;
  }

  /** Stops the pod's processes, then deletes its cgroup, host veth and namespace. */
  async removePod(pod: PodNet): Promise<void> {
    await stopChildren([...this.#children].filter(([, p]) => p === pod).map(([child]) => child));
    const errors: unknown[] = [];
    await removeCgroup(pod.cgroup).catch((err) => errors.push(err));
    // The veth pair goes with the namespace only once no process holds the namespace; delete the
    // host end explicitly so the node is clean either way.
    await ipBatch([`link del ${pod.hostVeth}`], pod.node.netns).catch((err) => {
      const gone = err instanceof CommandError && /Cannot find device/.test(err.stderr);
      if (!gone && netnsExists(pod.node.netns)) errors.push(err);
    });
    await deleteNetns([pod.netns]).catch((err) => errors.push(err));
    if (errors.length) throw new TopologyError(`removing pod ${pod.netns} left resources behind`, errors);
    this.#forget(pod);
  }

  #forget(pod: PodNet): void {
    if (this.#pods.get(pod.netns) !== pod) return;
    this.#pods.delete(pod.netns);
    this.#nodes.get(pod.node.name)?.hostsInUse.delete(Number(pod.ip4.split('.')[3]));
  }

  /**
   * Starts `cmd` inside the pod's network namespace and cgroup. The process is in the cgroup
   * before it execs `cmd`, so cgroup-attached programs see its very first socket call.
   */
  spawn(pod: PodNet, cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    this.#assertOpen();
    if (this.#pods.get(pod.netns) !== pod) {
      throw new TopologyError(`pod ${pod.netns} is not part of topology ${this.prefix}`);
    }
    const procs = join(pod.cgroup, 'cgroup.procs');
    const child = spawn('sh', ['-c', ENTER_POD, 'sh', procs, pod.netns, cmd, ...args], opts);
    this.#children.set(child, pod);
    const forget = () => this.#children.delete(child);
    child.once('exit', forget);
    child.once('error', forget);
    return child;
  }

  /**
   * Starts `cmd` in a node's network namespace (a hostNetwork pod, e.g. the mesh's node agent), in
   * `cgroup`, which must lie under this topology's cgroup parent. Stopped by destroy().
   */
  spawnInNode(node: NodeNet, cgroup: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    this.#assertOpen();
    if (this.#nodes.get(node.name)?.net !== node) throw new TopologyError(`node ${node.name} is not part of topology ${this.prefix}`);
    if (!cgroup.startsWith(`${this.cgroupParent}/`)) throw new TypeError(`cgroup ${cgroup} is not under ${this.cgroupParent}`);
    const child = spawn('sh', ['-c', ENTER_POD, 'sh', join(cgroup, 'cgroup.procs'), node.netns, cmd, ...args], opts);
    this.#children.set(child, node);
    const forget = () => this.#children.delete(child);
    child.once('exit', forget);
    child.once('error', forget);
    return child;
  }

  /** Runs `cmd` as spawn() does and collects its output; a non-zero exit is a result, not an error. */
  async exec(
    pod: PodNet,
    cmd: string,
    args: readonly string[],
    opts: { input?: string; timeoutMs?: number } = {},
  ): Promise<ExecResult> {
    return collect(this.spawn(pod, cmd, args, { stdio: 'pipe' }), opts);
  }

  /**
   * Kills every process started here and deletes every namespace and cgroup the topology made.
   * Missing resources are fine; calling again retries whatever a failure left. After trying
   * everything, throws one TopologyError listing each failure.
   */
  destroy(): Promise<void> {
    this.#closed = true;
    this.#destroying ??= this.#teardown().finally(() => {
      this.#destroying = undefined;
    });
    return this.#destroying;
  }

  async #teardown(): Promise<void> {
    await Promise.allSettled([this.#nodeQueue, ...this.#inFlight]);
    await stopChildren([...this.#children.keys()]);
    const errors: unknown[] = [];
    await Promise.all(this.pods.map((pod) => removeCgroup(pod.cgroup).catch((err) => errors.push(err))));
    const namespaces = [
      ...this.pods.map((p) => p.netns),
      ...this.nodes.map((n) => n.netns),
      this.fabricNetns,
    ];
    await deleteNetns(namespaces).catch((err) => errors.push(err));
    if (errors.length === 0) {
      this.#pods.clear();
      this.#nodes.clear();
    }
    // Our own parent directories, deepest first; empty once the pod cgroups are gone.
    while (errors.length === 0 && this.#createdCgroupDirs.length > 0) {
      await removeCgroup(this.#createdCgroupDirs.at(-1)!).then(
        () => this.#createdCgroupDirs.pop(),
        (err) => errors.push(err),
      );
    }
    if (errors.length) throw new TopologyError(`destroying topology ${this.prefix} was incomplete`, errors);
  }

  #assertOpen(): void {
    if (this.#closed) throw new TopologyError(`topology ${this.prefix} has been destroyed`);
  }
}

function firstFree(inUse: Set<number>): number | undefined {
  for (let host = FIRST_POD_HOST; host <= LAST_POD_HOST; host++) if (!inUse.has(host)) return host;
  return undefined;
}

function checkName(kind: string, name: string): void {
  if (!NAME.test(name)) {
    throw new TypeError(`${kind} name must be a short DNS label ([a-z0-9-]), got ${JSON.stringify(name)}`);
  }
}
