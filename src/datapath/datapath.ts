// The datapath: the eBPF object loaded with its maps pinned, its cgroup programs attached through
// pinned links, and one pinned sk_lookup link per enrolled pod's netns. Everything that must
// survive a restart of the agent or of ztunnel lives in bpffs:
//
//   <dir>/maps/mesh_*                 maps (libbpf pins them by name)
//   <dir>/links/cgroup-<program>      connect4, connect6, sockops on the pods' cgroup subtree
//   <dir>/links/pod-<netns cookie>    sk_lookup on one pod's netns
//
// Opening again re-uses the pinned maps and swaps the new programs into the existing links
// (bpf_link_update), so a restart or an upgrade neither drops nor doubles capture.
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmdirSync,
  rmSync,
  statfsSync,
  statSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { HBONE_PORT, INBOUND_PORT, OUTBOUND_PORT, ZTUNNEL_MARK_DEFAULT } from '../common/constants.ts';
import { DatapathError, explainLoadError } from './errors.ts';
import { type DatapathEvent, decodeEvent, LAYOUT, STAT_EVENTS_LOST, u32Key } from './layout.ts';
import { bpfObjectPath, type NativeError, type NativeMap, native, type RingReader } from './native.ts';

const BPF_FS_MAGIC = 0xcafe4a11;
/** The event reader's pause after each batch: at most 200 wakeups a second, events at most this
 * late under load (bench/capture.ts measured the per-event wakeup at ~0.6× a pod's connect rate). */
export const EVENT_BATCH_MS = 5;

export const MAP_NAMES = [
  'mesh_pods',
  'mesh_pod_addrs',
  'mesh_pod_uids',
  'mesh_excl_ports',
  'mesh_excl_cidrs',
  'mesh_socks',
  'mesh_pending',
  'mesh_orig_dst',
  'mesh_deliveries',
  'mesh_events',
  'mesh_stats',
] as const;
export type MapName = (typeof MAP_NAMES)[number];

export interface DatapathOptions {
  /** A directory on a bpf filesystem that holds this datapath's pins, e.g. /sys/fs/bpf/mesh. */
  bpffsDir: string;
  /** The cgroup v2 directory whose subtree holds the pods (never the root cgroup in tests). */
  cgroupPath: string;
  objectPath?: string;
  /** SO_MARK that ztunnel puts on its own sockets; such sockets are never captured. */
  mark?: number;
  outboundPort?: number;
  inboundPort?: number;
  hbonePort?: number;
  /** Emit PASSED events (enrolled pod, left alone). On by default: flows explain skips too. */
  emitPassed?: boolean;
  /** Report connections of pods outside the mesh (one OBSERVED per connection, at its close, with
   * its start and byte counts), so that flows show plaintext traffic too. On by default. */
  observe?: boolean;
}

/** A typed handle on one map. Keys and values are the raw structs (see layout.ts). */
export class BpfMap {
  readonly name: string;
  readonly fd: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;

  constructor(m: NativeMap) {
    this.name = m.name;
    this.fd = m.fd;
    this.keySize = m.keySize;
    this.valueSize = m.valueSize;
    this.maxEntries = m.maxEntries;
  }

  get(key: Buffer, valueSize = this.valueSize): Buffer | null {
    return this.wrap('lookup', () => native().mapLookup(this.fd, key, valueSize));
  }

  set(key: Buffer, value: Buffer): void {
    this.wrap('update', () => native().mapUpdate(this.fd, key, value));
  }

  /** Reads and removes an entry in one syscall; null when absent. */
  take(key: Buffer): Buffer | null {
    return this.wrap('lookup-and-delete', () => native().mapLookupAndDelete(this.fd, key, this.valueSize));
  }

  delete(key: Buffer): boolean {
    return this.wrap('delete', () => native().mapDelete(this.fd, key));
  }

  keys(): Buffer[] {
    return this.wrap('iterate', () => native().mapKeys(this.fd, this.keySize, this.maxEntries + 1));
  }

  /** Closes the fd: only for maps opened by pin (openPinnedMap); a loaded object owns its own. */
  close(): void {
    native().closeFd(this.fd);
  }

  private wrap<T>(op: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const err = e as NativeError;
      const hint =
        err.code === 'E2BIG' || err.code === 'ENOMEM' ? ` (map is full: ${this.maxEntries} entries)` : '';
      throw new DatapathError('MESH_ERR_MAP', `${op} in ${this.name} failed: ${err.message}${hint}`, err);
    }
  }
}

const CGROUP_PROGRAMS = [
  { program: 'mesh_connect4', attach: 'BPF_CGROUP_INET4_CONNECT' },
  { program: 'mesh_connect6', attach: 'BPF_CGROUP_INET6_CONNECT' },
  { program: 'mesh_sockops', attach: 'BPF_CGROUP_SOCK_OPS' },
] as const;

/** Detaches the link pinned at `pin` now and removes the pin (a link pinned elsewhere too, or
 * held by an fd, would otherwise stay attached). */
function detachPinnedLink(pin: string): void {
  const n = native();
  try {
    const fd = n.objGet(pin);
    try {
      n.linkDetach(fd);
    } catch {
      // a netns link whose namespace is gone is already detached
    } finally {
      n.closeFd(fd);
    }
  } finally {
    rmSync(pin);
  }
}

function ensureBpffs(dir: string): void {
  let probe = dir;
  while (!existsSync(probe)) probe = dirname(probe);
  if (statfsSync(probe).type !== BPF_FS_MAGIC) {
    throw new DatapathError(
      'MESH_ERR_BPFFS',
      `${dir} is not on a bpf filesystem, so the datapath could not survive a restart: mount one with \`mount -t bpf bpf ${probe === dir ? dir : '/sys/fs/bpf'}\``,
    );
  }
  mkdirSync(join(dir, 'maps'), { recursive: true });
  mkdirSync(join(dir, 'links'), { recursive: true });
}

export class Datapath {
  readonly bpffsDir: string;
  readonly cgroupPath: string;
  readonly maps: Record<MapName, BpfMap>;
  private readonly handle: unknown;
  private readonly progFds: Map<string, number>;
  private readonly readers = new Set<RingReader>();
  private closed = false;

  private constructor(
    opts: DatapathOptions,
    handle: unknown,
    maps: Record<MapName, BpfMap>,
    progs: Map<string, number>,
  ) {
    this.bpffsDir = opts.bpffsDir;
    this.cgroupPath = opts.cgroupPath;
    this.handle = handle;
    this.maps = maps;
    this.progFds = progs;
  }

  /** Loads (or re-opens) the datapath and makes sure the cgroup programs are attached once. */
  static async open(opts: DatapathOptions): Promise<Datapath> {
    ensureBpffs(opts.bpffsDir);
    if (!existsSync(opts.cgroupPath) || !statSync(opts.cgroupPath).isDirectory()) {
      throw new DatapathError(
        'MESH_ERR_ATTACH',
        `cgroup ${opts.cgroupPath} does not exist (is it on the cgroup v2 mount?)`,
      );
    }
    const objectPath = opts.objectPath ?? bpfObjectPath;
    if (!existsSync(objectPath)) {
      throw new DatapathError(
        'MESH_ERR_BPF_LOAD',
        `${objectPath} is missing: run \`make\` to build the eBPF programs`,
      );
    }
    const rodata: Record<string, number> = {
      mesh_mark: opts.mark ?? ZTUNNEL_MARK_DEFAULT,
      mesh_outbound_port: opts.outboundPort ?? OUTBOUND_PORT,
      mesh_inbound_port: opts.inboundPort ?? INBOUND_PORT,
      mesh_hbone_port: opts.hbonePort ?? HBONE_PORT,
      mesh_emit_passed: opts.emitPassed === false ? 0 : 1,
      mesh_observe: opts.observe === false ? 0 : 1,
    };
    let obj: Awaited<ReturnType<ReturnType<typeof native>['loadObject']>>;
    try {
      obj = await native().loadObject(objectPath, join(opts.bpffsDir, 'maps'), rodata);
    } catch (e) {
      throw explainLoadError(e as NativeError, objectPath);
    }
    const maps = {} as Record<MapName, BpfMap>;
    for (const name of MAP_NAMES) {
      const m = obj.maps.find((x) => x.name === name);
      if (!m)
        throw new DatapathError(
          'MESH_ERR_BPF_LOAD',
          `${objectPath} has no map ${name}: rebuild with \`make\``,
        );
      maps[name] = new BpfMap(m);
    }
    const progs = new Map(obj.programs.map((p) => [p.name, p.fd] as const));
    const dp = new Datapath(opts, obj.handle, maps, progs);
    try {
      dp.attachCgroupPrograms();
      dp.upgradePodLinks();
    } catch (e) {
      dp.close();
      throw e;
    }
    return dp;
  }

  private prog(name: string): number {
    const fd = this.progFds.get(name);
    if (fd === undefined)
      throw new DatapathError('MESH_ERR_BPF_LOAD', `program ${name} is missing from the object`);
    return fd;
  }

  private linkPath(name: string): string {
    return join(this.bpffsDir, 'links', name);
  }

  private attachCgroupPrograms(): void {
    const n = native();
    const cgroupId = statSync(this.cgroupPath, { bigint: true }).ino;
    for (const { program, attach } of CGROUP_PROGRAMS) {
      const pin = this.linkPath(`cgroup-${program}`);
      const progFd = this.prog(program);
      if (existsSync(pin)) {
        const fd = n.objGet(pin);
        try {
          const info = n.linkInfo(fd);
          if (info.cgroupId !== undefined && info.cgroupId !== cgroupId) {
            throw new DatapathError(
              'MESH_ERR_STATE',
              `${pin} is attached to another cgroup (id ${info.cgroupId}, wanted ${this.cgroupPath} id ${cgroupId}); uninstall the old datapath first`,
            );
          }
          n.linkUpdate(fd, progFd); // an upgrade swaps programs atomically; capture never stops
        } finally {
          n.closeFd(fd);
        }
        continue;
      }
      const cg = openSync(this.cgroupPath, 'r');
      let linkFd: number;
      try {
        linkFd = n.linkCreate(progFd, cg, n.constants[attach]);
      } catch (e) {
        throw new DatapathError(
          'MESH_ERR_ATTACH',
          `attaching ${program} to ${this.cgroupPath} failed: ${(e as Error).message}`,
          e as NativeError,
        );
      } finally {
        closeSync(cg);
      }
      try {
        n.objPin(linkFd, pin); // a link dies with its last fd: the pin is what outlives us
      } finally {
        n.closeFd(linkFd);
      }
    }
  }

  /** Cookies of the pod netns that have a pinned sk_lookup link. */
  podLinkCookies(): bigint[] {
    return readdirSync(join(this.bpffsDir, 'links'))
      .filter((f) => f.startsWith('pod-'))
      .map((f) => BigInt(f.slice(4)));
  }

  private upgradePodLinks(): void {
    const n = native();
    for (const cookie of this.podLinkCookies()) {
      const fd = n.objGet(this.linkPath(`pod-${cookie}`));
      try {
        n.linkUpdate(fd, this.prog('mesh_sk_lookup'));
      } catch {
        // The pod's netns is gone (the link was auto-detached); reconcile removes it.
      } finally {
        n.closeFd(fd);
      }
    }
  }

  /** Attaches sk_lookup to a pod's netns; idempotent (an existing pinned link is kept). */
  attachPod(netnsPath: string, netnsCookie: bigint): void {
    const pin = this.linkPath(`pod-${netnsCookie}`);
    if (existsSync(pin)) return;
    const n = native();
    let ns: number;
    try {
      ns = openSync(netnsPath, 'r');
    } catch (e) {
      throw new DatapathError(
        'MESH_ERR_NETNS',
        `cannot open network namespace ${netnsPath}: ${(e as Error).message}`,
      );
    }
    try {
      const linkFd = n.linkCreate(this.prog('mesh_sk_lookup'), ns, n.constants.BPF_SK_LOOKUP);
      try {
        n.objPin(linkFd, pin);
      } finally {
        n.closeFd(linkFd);
      }
    } catch (e) {
      throw new DatapathError(
        'MESH_ERR_ATTACH',
        `attaching sk_lookup to ${netnsPath} failed: ${(e as Error).message}`,
        e as NativeError,
      );
    } finally {
      closeSync(ns);
    }
  }

  /** Detaches and unpins a pod's sk_lookup link; false when there was none. */
  detachPod(netnsCookie: bigint): boolean {
    const pin = this.linkPath(`pod-${netnsCookie}`);
    if (!existsSync(pin)) return false;
    detachPinnedLink(pin);
    return true;
  }

  /** Program file descriptors, for BPF_PROG_TEST_RUN and inspection. */
  programFd(name: 'mesh_connect4' | 'mesh_connect6' | 'mesh_sockops' | 'mesh_sk_lookup'): number {
    return this.prog(name);
  }

  /** Events the programs could not deliver because the ring buffer was full. */
  eventsLost(): bigint {
    const cpus = native().numPossibleCpus();
    const v = this.maps.mesh_stats.get(u32Key(STAT_EVENTS_LOST), 8 * cpus);
    let sum = 0n;
    for (let i = 0; v && i < cpus; i++) sum += v.readBigUInt64LE(i * 8);
    return sum;
  }

  /**
   * Streams decoded events from the ring buffer until the returned reader is closed. After each
   * batch the reader waits `batchMs` before it looks again, so that a busy node is woken at most
   * 1000/batchMs times a second instead of once per connection (addon/ringbuf.cc); a lone event
   * is delivered at once. 0 takes every event as it comes.
   */
  readEvents(onEvents: (events: DatapathEvent[]) => void, pollMs = 100, batchMs = EVENT_BATCH_MS): { close(): void } {
    const size = LAYOUT.mesh_event.size;
    const reader = new (native().RingReader)(
      this.maps.mesh_events.fd,
      (batch) => {
        const evs = new Array<DatapathEvent>(batch.length / size);
        for (let i = 0; i < evs.length; i++) evs[i] = decodeEvent(batch, i * size);
        onEvents(evs);
      },
      pollMs,
      batchMs,
      size,
    );
    this.readers.add(reader);
    return {
      close: () => {
        if (this.readers.delete(reader)) reader.close();
      },
    };
  }

  /** Closes this process's handles. Pins, links and therefore capture stay in place. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.readers) r.close();
    this.readers.clear();
    native().closeObject(this.handle);
  }

  /** Removes the datapath entirely: detaches every link and removes every pin under dir. */
  static uninstall(bpffsDir: string): void {
    if (!existsSync(bpffsDir)) return;
    const links = join(bpffsDir, 'links');
    if (existsSync(links)) {
      for (const f of readdirSync(links)) detachPinnedLink(join(links, f));
      rmdirSync(links);
    }
    const maps = join(bpffsDir, 'maps');
    if (existsSync(maps)) {
      for (const f of readdirSync(maps)) rmSync(join(maps, f));
      rmdirSync(maps);
    }
  }
}
