// Sockets inside a pod's network namespace, created on a native thread that entered it (see
// addon/netns.cc) and handed to Node as fds.
import { isIPv6 } from 'node:net';
import { DELIVERY_MARK, DELIVERY_RULE_PRIORITY, DELIVERY_TABLE } from '../common/constants.ts';
import { rawAddress } from './addr.ts';
import { DatapathError } from './errors.ts';
import { type NativeError, type NetnsSocketOptions, native } from './native.ts';

export interface InNetnsSocketOptions {
  /** Address to bind; '0.0.0.0' / '::' when omitted (for the given family). */
  host?: string;
  port?: number;
  family?: 4 | 6;
  listen?: boolean;
  backlog?: number;
  /** SO_MARK for the socket, e.g. ztunnel's (MESH_MARK) so the datapath never captures it. */
  mark?: number;
  v6only?: boolean;
  freebind?: boolean;
  /** IP_TRANSPARENT: bind to an address the netns does not own (needs CAP_NET_ADMIN). */
  transparent?: boolean;
  /** SO_REUSEPORT: a second process (a new ztunnel taking over) may bind the same port. */
  reuseport?: boolean;
}

function familyOf(opts: InNetnsSocketOptions): 4 | 6 {
  return opts.family ?? (opts.host && isIPv6(opts.host) ? 6 : 4);
}

function nativeOptions(opts: InNetnsSocketOptions): NetnsSocketOptions {
  return {
    family: familyOf(opts),
    ...(opts.host ? { addr: rawAddress(opts.host) } : {}),
    port: opts.port ?? 0,
    listen: opts.listen ?? false,
    backlog: opts.backlog ?? 511,
    ...(opts.mark !== undefined ? { mark: opts.mark } : {}),
    v6only: opts.v6only ?? false,
    freebind: opts.freebind ?? false,
    transparent: opts.transparent ?? false,
    reuseport: opts.reuseport ?? false,
  };
}

function socketError(netnsPath: string, opts: InNetnsSocketOptions, e: unknown): DatapathError {
  const err = e as NativeError;
  const where = `${opts.host ?? (familyOf(opts) === 6 ? '[::]' : '0.0.0.0')}:${opts.port ?? 0} in ${netnsPath}`;
  const hint = err.code === 'EADDRINUSE' ? ' (something in the pod already listens there)' : '';
  return new DatapathError('MESH_ERR_NETNS', `socket ${where}: ${err.message}${hint}`, err);
}

/** Creates a TCP socket inside the netns at netnsPath; returns its fd (non-blocking, CLOEXEC). */
export function socketInNetns(netnsPath: string, opts: InNetnsSocketOptions): number {
  try {
    return native().netnsSocket(netnsPath, nativeOptions(opts));
  } catch (e) {
    throw socketError(netnsPath, opts, e);
  }
}

/**
 * Sockets of one netns for a process that makes many (ztunnel: one per connection it opens from
 * or into a pod). Entering a netns costs a native thread and a setns: ~90 us on an idle machine,
 * and on a busy one the caller also waits for that thread to be scheduled (~2 ms per batch on
 * the event loop under connection churn, issue 16). So fresh sockets are made in batches (2,
 * doubling up to 32 while they are used) and finished one by one on the main thread (a socket
 * stays in the netns it was made in); the spares are refilled off the event loop (a pool thread
 * waits for the netns thread) once they run below half a batch, so only a burst that empties
 * them waits for a batch. close() releases the spares, which otherwise keep the netns alive.
 */
export class NetnsSockets {
  static readonly MAX_BATCH = 32;
  readonly netnsPath: string;
  private readonly spare: Record<4 | 6, number[]> = { 4: [], 6: [] };
  private readonly batch: Record<4 | 6, number> = { 4: 1, 6: 1 };
  private readonly refilling: Record<4 | 6, boolean> = { 4: false, 6: false };
  private closed = false;

  constructor(netnsPath: string) {
    this.netnsPath = netnsPath;
  }

  /** A socket made to `opts`, as socketInNetns() would make it. */
  socket(opts: InNetnsSocketOptions): number {
    if (this.closed) throw new DatapathError('MESH_ERR_NETNS', `sockets of ${this.netnsPath} were closed`);
    const family = familyOf(opts);
    const n = native();
    try {
      const options = nativeOptions(opts); // before taking a socket: it throws on a bad address
      const spare = this.spare[family];
      let fd = spare.pop();
      if (fd === undefined) {
        const made = n.netnsSocketBatch(this.netnsPath, family, this.grow(family));
        fd = made.pop()!;
        spare.push(...made);
      }
      if (spare.length < this.batch[family] / 2 && !this.refilling[family]) this.refill(family);
      return n.configureSocket(fd, options); // closes fd if it fails
    } catch (e) {
      throw socketError(this.netnsPath, opts, e);
    }
  }

  /** How many fresh sockets are kept, per family. */
  get spares(): { 4: number; 6: number } {
    return { 4: this.spare[4].length, 6: this.spare[6].length };
  }

  close(): void {
    this.closed = true;
    const n = native();
    for (const f of [4, 6] as const) for (const fd of this.spare[f].splice(0)) n.closeFd(fd);
  }

  /** The next batch's size: doubled, up to MAX_BATCH, each time one is made. */
  private grow(family: 4 | 6): number {
    return (this.batch[family] = Math.min(NetnsSockets.MAX_BATCH, this.batch[family] * 2));
  }

  private refill(family: 4 | 6): void {
    const n = native();
    this.refilling[family] = true;
    n.netnsSocketBatchAsync(this.netnsPath, family, this.grow(family)).then(
      (fds) => {
        this.refilling[family] = false;
        if (this.closed) for (const fd of fds) n.closeFd(fd);
        else this.spare[family].push(...fds);
      },
      // The netns is going away (its pod is being removed): the next socket() makes its own
      // batch on the spot, and says why when it cannot.
      () => (this.refilling[family] = false),
    );
  }
}

/** The netns cookie that eBPF programs see through bpf_get_netns_cookie(). */
export function netnsCookie(netnsPath: string): bigint {
  try {
    return native().netnsCookie(netnsPath);
  } catch (e) {
    throw new DatapathError(
      'MESH_ERR_NETNS',
      `cannot read the cookie of ${netnsPath}: ${(e as Error).message}`,
      e as NativeError,
    );
  }
}

/** The port a bound, not yet connected socket got from the kernel. */
export function boundPort(fd: number): number {
  return native().localPort(fd);
}

/**
 * ztunnel delivers to an app from the client's own address (IP_TRANSPARENT) on sockets with
 * DELIVERY_MARK; the pod's delivery routing (below) sends everything that carries it to lo.
 * The mark, table and rule priority are in src/common/constants.ts.
 */
export { DELIVERY_MARK, DELIVERY_RULE_PRIORITY, DELIVERY_TABLE };

/**
 * Sets up (or removes) the routing inside a pod's netns that lets ztunnel connect to the app from
 * the client's address: tcp_fwmark_accept=1, "fwmark DELIVERY_MARK lookup DELIVERY_TABLE" and
 * "local default dev lo table DELIVERY_TABLE", for each address family the pod has. Idempotent.
 */
export function setDeliveryRouting(netnsPath: string, opts: { enable: boolean; families: (4 | 6)[]; sysctlNetDir?: string }): void {
  try {
    native().netnsDeliveryRouting(netnsPath, {
      mark: DELIVERY_MARK,
      table: DELIVERY_TABLE,
      priority: DELIVERY_RULE_PRIORITY,
      enable: opts.enable,
      families: opts.families,
      sysctlNetDir: opts.sysctlNetDir ?? SYSCTL_NET_DIR,
    });
  } catch (e) {
    const err = e as NativeError;
    throw new DatapathError(
      'MESH_ERR_NETNS',
      `${opts.enable ? 'setting up' : 'removing'} delivery routing in ${netnsPath}: ${err.message}`,
      err,
    );
  }
}

/** Closes an fd that Node has not adopted (yet). */
export function closeFd(fd: number): void {
  native().closeFd(fd);
}

/** The per-netns sysctls a component may set in a pod's netns (nothing else is written there). */
const NETNS_SYSCTLS = new Set(['net/ipv4/tcp_migrate_req']);

/** A process's own view of its netns's net sysctls (read-only in a container). */
export const SYSCTL_NET_DIR = '/proc/sys/net';

/**
 * Sets a network sysctl inside the netns at netnsPath (e.g. `net/ipv4/tcp_migrate_req`, which
 * moves a closing reuseport listener's queued connections to another listener of its group),
 * through `sysctlNetDir`: /proc/sys/net, or a writable mount of it (MESH_SYSCTL_NET_DIR).
 */
export function setNetnsSysctl(netnsPath: string, name: string, value: string, sysctlNetDir = SYSCTL_NET_DIR): void {
  if (!NETNS_SYSCTLS.has(name)) throw new DatapathError('MESH_ERR_NETNS', `sysctl ${name} is not one the mesh sets in a pod (${[...NETNS_SYSCTLS].join(', ')})`);
  try {
    native().netnsSysctl(netnsPath, `${sysctlNetDir}/${name.slice('net/'.length)}`, value);
  } catch (e) {
    const err = e as NativeError;
    const hint = err.code === 'ENOENT' ? ' (the kernel lacks it: tcp_migrate_req needs Linux 5.14)' : '';
    throw new DatapathError('MESH_ERR_NETNS', `sysctl ${name}=${value} in ${netnsPath}: ${err.message}${hint}`, err);
  }
}
