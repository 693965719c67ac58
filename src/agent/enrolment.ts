// Enrolment: putting a pod under capture and taking it out again. The pinned maps are the source
// of truth (this process may be a restart of one that enrolled the pods), mirrored in memory
// because the agent is their only writer.
import { existsSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { relative } from 'node:path';
import { logger } from '../common/log.ts';
import {
  type Datapath,
  formatMeshAddress,
  layout,
  meshAddress,
  netnsCookie,
  parseCidr,
  setDeliveryRouting,
  setNetnsSysctl,
  SYSCTL_NET_DIR,
} from '../datapath/index.ts';

const log = logger('enrol');

/** What the agent needs to know to enrol a pod. */
export interface PodSpec {
  uid: string;
  /** Path of the pod's network namespace, e.g. /proc/<pid>/ns/net or /run/netns/<name>. */
  netnsPath: string;
  /** The pod's cgroup; when given it must lie in the datapath's cgroup subtree. */
  cgroupPath?: string;
  /** The pod's IPs: at most one IPv4 and one IPv6. */
  addresses: string[];
  excludeOutboundPorts?: number[];
  excludeInboundPorts?: number[];
  excludeOutboundCidrs?: string[];
  /** For logs only. */
  name?: string;
  /** Who the pod is, when the enroller knows it before the config stream does (at sandbox
   * creation): passed on to ztunnel so that it can serve the pod at once. */
  workload?: PodWorkloadInfo;
}

/** Istio's ZDS WorkloadInfo: enough for ztunnel to know the pod's identity. */
export interface PodWorkloadInfo {
  name: string;
  namespace: string;
  serviceAccount: string;
}

export interface EnrolledPod {
  uid: string;
  netnsCookie: bigint;
  podId: number;
  addresses: string[];
  excludeOutboundPorts: number[];
  excludeInboundPorts: number[];
  excludeOutboundCidrs: string[];
  workload?: PodWorkloadInfo;
  /** Delivery routing is set up in the pod's netns (see setDeliveryRouting). */
  transparent: boolean;
}

/** What ztunnel must hear about: a pod entered (or re-entered) capture, or left it. */
export type EnrolmentChange =
  | { type: 'add'; pod: EnrolledPod; netnsPath: string }
  | { type: 'del'; uid: string; netnsCookie: bigint };

export class EnrolmentError extends Error {
  readonly code = 'MESH_ERR_ENROL';
}

function validate(spec: PodSpec, cgroupRoot: string): void {
  const who = spec.name ?? spec.uid;
  if (typeof spec.uid !== 'string' || spec.uid.length === 0) throw new EnrolmentError('pod uid is required');
  if (Buffer.byteLength(spec.uid) >= layout.UID_SIZE)
    throw new EnrolmentError(`pod uid '${spec.uid}' is longer than 63 bytes`);
  if (!spec.netnsPath || !existsSync(spec.netnsPath)) {
    throw new EnrolmentError(`pod ${who}: network namespace '${spec.netnsPath}' does not exist`);
  }
  if (!Array.isArray(spec.addresses) || spec.addresses.length === 0) {
    throw new EnrolmentError(`pod ${who}: at least one address is required`);
  }
  const families = spec.addresses.map((a) => isIP(a));
  if (families.includes(0))
    throw new EnrolmentError(`pod ${who}: '${spec.addresses[families.indexOf(0)]}' is not an IP address`);
  if (spec.addresses.length > 2 || new Set(families).size !== families.length) {
    throw new EnrolmentError(
      `pod ${who}: at most one IPv4 and one IPv6 address (got ${spec.addresses.join(', ')})`,
    );
  }
  for (const p of [...(spec.excludeOutboundPorts ?? []), ...(spec.excludeInboundPorts ?? [])]) {
    if (!Number.isInteger(p) || p < 1 || p > 65535)
      throw new EnrolmentError(`pod ${who}: excluded port '${p}' is not in 1-65535`);
  }
  for (const c of spec.excludeOutboundCidrs ?? []) {
    try {
      parseCidr(c);
    } catch (e) {
      throw new EnrolmentError(`pod ${who}: ${(e as Error).message}`);
    }
  }
  if (spec.cgroupPath !== undefined) {
    const rel = relative(cgroupRoot, spec.cgroupPath);
    if (rel.startsWith('..') || rel.startsWith('/')) {
      throw new EnrolmentError(
        `pod ${who}: its cgroup ${spec.cgroupPath} is outside the captured subtree ${cgroupRoot}; its connections would not be captured`,
      );
    }
  }
}

/** Whether an enrolled pod already has exactly what `spec` asks for (its netns aside). */
function sameSettings(p: EnrolledPod, spec: PodSpec): boolean {
  const sorted = (xs: number[] | undefined) => [...new Set(xs ?? [])].sort((a, b) => a - b).join(',');
  return (
    p.addresses.join(',') === spec.addresses.map((a) => formatMeshAddress(meshAddress(a))).join(',') &&
    p.excludeOutboundPorts.join(',') === sorted(spec.excludeOutboundPorts) &&
    p.excludeInboundPorts.join(',') === sorted(spec.excludeInboundPorts) &&
    p.excludeOutboundCidrs.join(',') === [...new Set(spec.excludeOutboundCidrs ?? [])].sort().join(',')
  );
}

function bigintSafe(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

export class Enrolment {
  private readonly dp: Datapath;
  private readonly byUid = new Map<string, EnrolledPod>();
  // The netns path each pod was last enrolled with (memory only: a path like /proc/PID/ns/net is
  // not worth keeping across restarts; the agent locates pods again).
  private readonly paths = new Map<string, string>();
  // The netns each pod was enrolled in, as "dev:inode" (a stat, cheaper than reading its cookie on
  // a native thread): lets a repeated enrol of an unchanged pod return at once.
  private readonly netnsKeys = new Map<string, string>();
  private readonly listeners = new Set<(change: EnrolmentChange) => void>();
  /**
   * Pods ztunnel has been told of whose capture is not on yet (enrol with `capture: false`):
   * nothing of theirs is in the maps until capture(). Memory only: after a restart the model
   * stages them again.
   */
  private readonly staged = new Set<string>();

  /** Where the pods' net sysctls are written (AgentConfig.sysctlNetDir). */
  readonly sysctlNetDir: string;

  constructor(dp: Datapath, opts: { sysctlNetDir?: string } = {}) {
    this.dp = dp;
    this.sysctlNetDir = opts.sysctlNetDir ?? SYSCTL_NET_DIR;
    this.load();
  }

  /** Rebuilds the in-memory view from the pinned maps (after a restart). */
  private load(): void {
    const m = this.dp.maps;
    const excl = new Map<number, { out: number[]; in: number[]; cidrs: string[] }>();
    const slot = (id: number) => {
      const e = excl.get(id) ?? { out: [], in: [], cidrs: [] };
      excl.set(id, e);
      return e;
    };
    for (const k of m.mesh_excl_ports.keys()) {
      const { podId, port, dir } = layout.decodeExclPortKey(k);
      (dir === layout.DIR_INBOUND ? slot(podId).in : slot(podId).out).push(port);
    }
    for (const k of m.mesh_excl_cidrs.keys()) {
      const { podId, addr, bits } = layout.decodeExclCidrKey(k);
      const text = formatMeshAddress(addr);
      const v4 = text.includes('.');
      slot(podId).cidrs.push(`${text}/${v4 ? bits - 96 : bits}`);
    }
    for (const k of m.mesh_pod_uids.keys()) {
      const cookie = k.readBigUInt64LE(0);
      const uidBuf = m.mesh_pod_uids.get(k);
      const podBuf = m.mesh_pods.get(k);
      if (!uidBuf || !podBuf) continue;
      const pod = layout.decodePod(podBuf);
      const e = excl.get(pod.podId) ?? { out: [], in: [], cidrs: [] };
      const uid = layout.decodeUid(uidBuf);
      this.byUid.set(uid, {
        uid,
        netnsCookie: cookie,
        podId: pod.podId,
        addresses: pod.addrs.map(formatMeshAddress).filter(Boolean),
        excludeOutboundPorts: e.out.sort((a, b) => a - b),
        excludeInboundPorts: e.in.sort((a, b) => a - b),
        excludeOutboundCidrs: e.cidrs.sort(),
        transparent: (pod.flags & layout.POD_F_TRANSPARENT) !== 0,
      });
    }
    if (this.byUid.size > 0) log.info({ pods: this.byUid.size }, 'restored enrolment from pinned maps');
    // A pod link without its pod entry is what an unenrolment stopped between its first step and
    // its second leaves (enrolment attaches the link after writing the entry). Finish it: without
    // the entry sk_lookup cannot place the pod's addresses and would refuse every connection.
    for (const cookie of this.dp.podLinkCookies()) {
      if (m.mesh_pods.get(layout.u64Key(cookie))) continue;
      this.dp.detachPod(cookie);
      log.info({ netnsCookie: String(cookie) }, 'removed the sk_lookup link of a pod whose unenrolment was interrupted');
    }
  }

  /** Calls `fn` after every enrol that changed something and every unenrol. */
  onChange(fn: (change: EnrolmentChange) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  netnsPathOf(uid: string): string | undefined {
    return this.paths.get(uid);
  }

  private emit(change: EnrolmentChange): void {
    for (const fn of this.listeners) fn(change);
  }

  list(): EnrolledPod[] {
    return [...this.byUid.values()];
  }

  get(uid: string): EnrolledPod | undefined {
    return this.byUid.get(uid);
  }

  private nextPodId(): number {
    const used = new Set([...this.byUid.values()].map((p) => p.podId));
    for (let id = 1; ; id++) if (!used.has(id)) return id;
  }

  /**
   * Puts a pod under capture. Idempotent: enrolling the same pod again changes only what differs;
   * a pod whose sandbox (netns) was recreated under the same uid is moved to the new netns.
   *
   * `capture: false` stages a pod that is already running (its namespace joined the mesh): ztunnel
   * hears of it (the 'add' change) and opens its listeners, but the pod's connections are left
   * alone until capture(uid) — call it once ztunnel serves the pod, so that none of them is
   * refused in between. A pod already captured stays captured; enrolling a staged pod without
   * `capture: false` captures it.
   */
  enrol(spec: PodSpec, opts: { capture?: boolean } = {}): EnrolledPod {
    validate(spec, this.dp.cgroupPath);
    const st = statSync(spec.netnsPath, { bigint: true });
    const nsKey = `${st.dev}:${st.ino}`;
    const known = this.byUid.get(spec.uid);
    if (known && this.netnsKeys.get(spec.uid) === nsKey && sameSettings(known, spec)) {
      this.paths.set(spec.uid, spec.netnsPath); // the same netns, perhaps through another process
      if (spec.workload && !known.workload) known.workload = spec.workload;
      if (opts.capture !== false) this.capture(spec.uid);
      return known;
    }
    const cookie = netnsCookie(spec.netnsPath);
    const prev = this.byUid.get(spec.uid);
    if (prev && prev.netnsCookie !== cookie) this.unenrol(spec.uid);
    const staging = opts.capture === false && (!this.byUid.has(spec.uid) || this.staged.has(spec.uid));
    // A staged pod has nothing in the maps to replace.
    const current = this.staged.has(spec.uid) ? undefined : this.byUid.get(spec.uid);
    const before = this.byUid.get(spec.uid);
    const podId = before?.podId ?? this.nextPodId();
    const next: EnrolledPod = {
      uid: spec.uid,
      netnsCookie: cookie,
      podId,
      addresses: spec.addresses.map((a) => formatMeshAddress(meshAddress(a))),
      excludeOutboundPorts: [...new Set(spec.excludeOutboundPorts ?? [])].sort((a, b) => a - b),
      excludeInboundPorts: [...new Set(spec.excludeInboundPorts ?? [])].sort((a, b) => a - b),
      excludeOutboundCidrs: [...new Set(spec.excludeOutboundCidrs ?? [])].sort(),
      ...((spec.workload ?? before?.workload) ? { workload: spec.workload ?? before?.workload } : {}),
      transparent: this.deliveryRouting(spec),
    };
    if (staging) this.staged.add(spec.uid);
    else {
      this.writeMaps(next, current, spec.netnsPath);
      this.staged.delete(spec.uid);
    }
    this.byUid.set(spec.uid, next);
    const changed =
      !before || JSON.stringify(before, bigintSafe) !== JSON.stringify(next, bigintSafe) || this.paths.get(spec.uid) === undefined;
    this.paths.set(spec.uid, spec.netnsPath);
    this.netnsKeys.set(spec.uid, nsKey);
    if (changed) this.emit({ type: 'add', pod: next, netnsPath: spec.netnsPath });
    if (staging && !before)
      log.info({ uid: spec.uid, pod: spec.name, netnsCookie: String(cookie), podId }, 'pod staged: capture starts once ztunnel serves it');
    else if (!current && !staging)
      log.info({ uid: spec.uid, pod: spec.name, netnsCookie: String(cookie), podId }, 'pod enrolled');
    return next;
  }

  /**
   * Turns capture on for a pod staged by enrol(…, { capture: false }); false when the pod is not
   * staged (gone, or captured already).
   */
  capture(uid: string): boolean {
    const p = this.byUid.get(uid);
    const path = this.paths.get(uid);
    if (!this.staged.has(uid) || !p || !path) return false;
    this.writeMaps(p, undefined, path);
    this.staged.delete(uid);
    log.info({ uid, netnsCookie: String(p.netnsCookie), podId: p.podId }, 'pod enrolled');
    return true;
  }

  /** Writes `next` into the maps over `current` (what they hold for it, if anything) and attaches
   * the pod's sk_lookup. */
  private writeMaps(next: EnrolledPod, current: EnrolledPod | undefined, netnsPath: string): void {
    const m = this.dp.maps;
    const key = layout.u64Key(next.netnsCookie);
    const podId = next.podId;
    // Exclusions and addresses first, the pod entry (which turns capture on) last: the programs
    // never see a half-enrolled pod.
    if (current) this.clearExclusions(current);
    for (const p of next.excludeOutboundPorts)
      m.mesh_excl_ports.set(layout.encodeExclPortKey(podId, p, layout.DIR_OUTBOUND), Buffer.of(1));
    for (const p of next.excludeInboundPorts)
      m.mesh_excl_ports.set(layout.encodeExclPortKey(podId, p, layout.DIR_INBOUND), Buffer.of(1));
    for (const c of next.excludeOutboundCidrs) {
      const { addr, bits } = parseCidr(c);
      m.mesh_excl_cidrs.set(layout.encodeExclCidrKey(podId, addr, bits), Buffer.of(1));
    }
    for (const a of current?.addresses ?? [])
      if (!next.addresses.includes(a)) m.mesh_pod_addrs.delete(meshAddress(a));
    for (const a of next.addresses) m.mesh_pod_addrs.set(meshAddress(a), key);
    m.mesh_pod_uids.set(key, layout.encodeUid(next.uid));
    const addrs: [Buffer, Buffer] = [Buffer.alloc(16), Buffer.alloc(16)];
    for (const [i, a] of next.addresses.entries()) meshAddress(a).copy(addrs[i] as Buffer);
    const flags = layout.POD_F_ENROLLED | (next.transparent ? layout.POD_F_TRANSPARENT : 0);
    m.mesh_pods.set(key, layout.encodePod({ podId, flags, addrs }));
    this.dp.attachPod(netnsPath, next.netnsCookie);
  }

  /**
   * Sets up the routing that lets ztunnel deliver to the pod's app from the client's address.
   * A failure is not fatal: ztunnel then delivers from 127.0.0.6, as before, and the app sees
   * that instead of its client.
   */
  private deliveryRouting(spec: PodSpec): boolean {
    // ztunnel's handover moves the queue of a closing in-pod listener to its successor with
    // tcp_migrate_req; the agent sets it, as ztunnel's own /proc/sys is read-only in a container.
    try {
      setNetnsSysctl(spec.netnsPath, 'net/ipv4/tcp_migrate_req', '1', this.sysctlNetDir);
    } catch (e) {
      log.warn({ uid: spec.uid, pod: spec.name, err: (e as Error).message }, 'connections queued on a listener when a ztunnel handover closes it will be reset');
    }
    try {
      setDeliveryRouting(spec.netnsPath, { enable: true, families: spec.addresses.map((a) => (isIP(a) === 6 ? 6 : 4)), sysctlNetDir: this.sysctlNetDir });
      return true;
    } catch (e) {
      log.warn({ uid: spec.uid, pod: spec.name, err: (e as Error).message }, 'no delivery routing: the app will see 127.0.0.6 as the source of meshed connections');
      return false;
    }
  }

  private clearExclusions(p: EnrolledPod): void {
    const m = this.dp.maps;
    for (const port of p.excludeOutboundPorts)
      m.mesh_excl_ports.delete(layout.encodeExclPortKey(p.podId, port, layout.DIR_OUTBOUND));
    for (const port of p.excludeInboundPorts)
      m.mesh_excl_ports.delete(layout.encodeExclPortKey(p.podId, port, layout.DIR_INBOUND));
    for (const c of p.excludeOutboundCidrs) {
      const { addr, bits } = parseCidr(c);
      m.mesh_excl_cidrs.delete(layout.encodeExclCidrKey(p.podId, addr, bits));
    }
  }

  /** Takes a pod out of capture; false when it was not enrolled. */
  unenrol(uid: string): boolean {
    const p = this.byUid.get(uid);
    if (!p) return false;
    // A staged pod has nothing in the maps: ztunnel stops serving it, and that is all.
    if (this.staged.delete(uid)) return this.forget(p, 'staged pod dropped before its capture began');
    const m = this.dp.maps;
    const key = layout.u64Key(p.netnsCookie);
    // Capture stops here; the rest is cleanup. Until the link goes, on the next line, sk_lookup
    // refuses connections from outside (it cannot place the pod), so nothing passes half-done.
    m.mesh_pods.delete(key);
    this.dp.detachPod(p.netnsCookie);
    // The delivery routing stays in the pod: it only concerns packets with ztunnel's delivery
    // mark, and connections ztunnel delivered before the pod left keep their replies coming back
    // to it (removing it would strand them). Re-enrolling finds it in place.
    for (const a of p.addresses) {
      const owner = m.mesh_pod_addrs.get(meshAddress(a));
      if (owner?.equals(key)) m.mesh_pod_addrs.delete(meshAddress(a));
    }
    this.clearExclusions(p);
    m.mesh_pod_uids.delete(key);
    return this.forget(p, 'pod unenrolled');
  }

  /** Drops what this process holds of a pod and tells ztunnel (ZDS 'del'). */
  private forget(p: EnrolledPod, why: string): true {
    this.byUid.delete(p.uid);
    this.paths.delete(p.uid);
    this.netnsKeys.delete(p.uid);
    this.emit({ type: 'del', uid: p.uid, netnsCookie: p.netnsCookie });
    log.info({ uid: p.uid, netnsCookie: String(p.netnsCookie) }, why);
    return true;
  }

  /**
   * Makes the enrolled set equal to `desired`: enrols what is missing or changed, unenrols what is
   * no longer wanted, and leaves the rest untouched.
   */
  reconcile(desired: PodSpec[]): {
    enrolled: string[];
    unenrolled: string[];
    failed: { uid: string; error: string }[];
  } {
    const want = new Set(desired.map((d) => d.uid));
    const result = {
      enrolled: [] as string[],
      unenrolled: [] as string[],
      failed: [] as { uid: string; error: string }[],
    };
    for (const uid of [...this.byUid.keys()]) {
      if (!want.has(uid) && this.unenrol(uid)) result.unenrolled.push(uid);
    }
    for (const spec of desired) {
      const had = this.byUid.has(spec.uid);
      try {
        this.enrol(spec);
        if (!had) result.enrolled.push(spec.uid);
      } catch (e) {
        result.failed.push({ uid: spec.uid, error: (e as Error).message });
      }
    }
    return result;
  }
}
