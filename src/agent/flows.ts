// The node's flows: one record per connection, joining what the kernel decided (ring-buffer
// events) with what ztunnel did (its connection records, over ZDS) and naming both ends from the
// mesh model (pods, service accounts, services). Flows of pods outside the mesh come from the
// kernel alone: one OBSERVED event per connection, at its close, with its start and byte counts.
// Joins:
//   outbound  ztunnel's record carries the app socket's cookie  ↔ the CAPTURED event's cookie
//   inbound   ztunnel's record carries the TCP tuple it accepted ↔ the STEERED event's tuple
//             (for HBONE, the pooled outer connection: every stream on it names the same event)
// Kernel-only verdicts (REFUSED: fail closed, for want of a ztunnel socket or for an address of
// the pod the mesh does not know) become flows by themselves.
import { randomUUID } from 'node:crypto';
import { HBONE_PORT } from '../common/constants.ts';
import type { DatapathEvent } from '../datapath/index.ts';
import type { FlowRing } from '../flows/ring.ts';
import type { Endpoint, Flow, KernelDecision, LostEvent, Verdict } from '../flows/types.ts';
import type { ConnectionRecord } from '../zds/protocol.ts';
import type { L7Record } from '../flows/l7.ts';

/** What the model says about an address. */
export interface AddressInfo {
  namespace: string;
  podName?: string;
  workload?: string;
  serviceAccount?: string;
  nodeName?: string;
  /** A Service's hostname, when the address is its VIP. */
  service?: string;
  /** A pod's labels, "key=value". */
  labels?: string[];
  /** The hostnames of the Services a pod backs. */
  backs?: string[];
  /** Whether the model puts the pod in the mesh (captured, tunnel protocol HBONE). */
  inMesh?: boolean;
  /** Why the model leaves the pod out of the mesh ('' or absent when it is in it). */
  notCapturedReason?: string;
  /** Set when the address has left the model (wall-clock ms): it names connections older than
   * that, never newer ones (the address may belong to a new pod by now). */
  goneAtMs?: number;
}

export interface FlowCollectorOptions {
  ring: FlowRing;
  nodeName: string;
  resolve(ip: string): AddressInfo | undefined;
  /** How long a kernel decision waits for ztunnel's record (ms). */
  joinWindowMs?: number;
  /** How long a flow with an end the model cannot name yet waits for it (ms); 0: not at all.
   * A pod that calls as soon as it starts is faster than its Workload's way to the node. */
  nameWaitMs?: number;
  /** At most this many flows wait for names; beyond it the oldest goes out as it is. */
  nameWaitMax?: number;
}

/** Defaults for a collector that follows a model (the agent's config stream): long enough for a
 * Workload to reach a loaded node (the e2e tests waited 3 s before this existed), short enough
 * that a flow to an address no model will ever name (outside the cluster, host network) is still
 * shown promptly; a Workload that arrives releases the flows waiting for it at once. */
export const NAME_WAIT_MS = 3000;
export const NAME_WAIT_MAX = 4096;

/** Bounded insertion-ordered map: the oldest entries go first when full or expired. */
class Pending<V extends { atMs: number }> {
  private readonly m = new Map<string, V>();
  private readonly max: number;
  private readonly ttlMs: number;
  constructor(max: number, ttlMs: number) {
    this.max = max;
    this.ttlMs = ttlMs;
  }
  set(k: string, v: V): void {
    this.m.delete(k);
    this.m.set(k, v);
    if (this.m.size <= this.max) return;
    // Full: the oldest eighth goes in one pass. V8 keeps a deleted entry's slot until the Map
    // rehashes, and an iterator walks those slots: taking the oldest one at a time re-walked every
    // slot freed before it, ~6 µs an insert at 65,536 (CAPTURED events that ztunnel never joins).
    let n = this.m.size - this.max + (this.max >> 3);
    for (const key of this.m.keys()) {
      if (n-- <= 0) break;
      this.m.delete(key);
    }
  }
  get(k: string): V | undefined {
    return this.m.get(k);
  }
  take(k: string): V | undefined {
    const v = this.m.get(k);
    this.m.delete(k);
    return v;
  }
  /** Removes and returns the entries older than the TTL. */
  expire(nowMs: number): V[] {
    const out: V[] = [];
    for (const [k, v] of this.m) {
      if (v.atMs > nowMs - this.ttlMs) break;
      this.m.delete(k);
      out.push(v);
    }
    return out;
  }
  get size(): number {
    return this.m.size;
  }
}

type Held = { ev: DatapathEvent; atMs: number };

const strip = (ip: string) => (ip.startsWith('::ffff:') ? ip.slice(7) : ip);

/** "ip:port" / "[ip]:port" → [ip, port]; anything else → [it, 0]. Four calls per ztunnel record:
 * sliced at the last colon, not matched with a backtracking regex (~3 µs a call, 5% of the
 * agent's CPU under connection churn). */
export function splitAddr(a: string): [string, number] {
  const colon = a.lastIndexOf(':');
  const port = colon < 0 ? NaN : digits(a, colon + 1);
  if (Number.isNaN(port)) return [strip(a), 0];
  const host = a.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) return [strip(host.slice(1, -1)), port];
  // A bare IPv6 address ("fd00::1") has colons but no port.
  if (host.includes(':') && !host.startsWith('::ffff:')) return [strip(a), 0];
  return [strip(host), port];
}

/** The decimal number that a[from..] is, or NaN (empty, or not all digits). */
function digits(a: string, from: number): number {
  if (from >= a.length) return NaN;
  let n = 0;
  for (let i = from; i < a.length; i++) {
    const c = a.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return NaN;
    n = n * 10 + c;
  }
  return n;
}

function tupleKey(src: string, sport: number, dst: string, dport: number): string {
  return `${strip(src)}|${sport}|${strip(dst)}|${dport}`;
}

/**
 * Why a plaintext connection the kernel only observed was not captured: the model says why the
 * pod is outside the mesh, or that it is in the mesh but not enrolled on its node yet.
 */
export function notCapturedReason(info: AddressInfo | undefined, ip: string): string {
  if (!info?.podName) return `${ip} is not a pod the mesh knows (host network, or a pod younger than the agent's config)`;
  if (info.inMesh) return `${info.namespace}/${info.podName} is in the mesh but not enrolled on its node yet (its network namespace has not been found)`;
  return info.notCapturedReason || `${info.namespace}/${info.podName} is not in the mesh`;
}

export class FlowCollector {
  private readonly o: FlowCollectorOptions;
  /** CAPTURED, by app socket cookie, until ztunnel's outbound record arrives. */
  private readonly captured: Pending<Held>;
  /** STEERED, by tuple; HBONE outer connections stay for the streams that follow. */
  private readonly steered: Pending<Held>;
  /** CLOCK_MONOTONIC → wall clock, in ns. */
  private readonly monoToWallNs: bigint;
  /** Flows waiting for the model to name an end, oldest first (untilMs ascending). */
  private held: { f: Flow; untilMs: number }[] = [];
  private heldTimer: NodeJS.Timeout | undefined;
  private nameWaitMs: number;
  private expiredAtMs = 0;
  kernelEvents = 0;
  records = 0;
  l7Records = 0;

  constructor(o: FlowCollectorOptions) {
    this.o = o;
    this.captured = new Pending(65_536, o.joinWindowMs ?? 60_000);
    this.steered = new Pending(65_536, 10 * 60_000);
    this.nameWaitMs = o.nameWaitMs ?? 0;
    this.monoToWallNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  }

  private wallNs(tsNs: bigint): number {
    return Number(tsNs + this.monoToWallNs);
  }

  /** What the model says about `ip` for a connection that began at `atMs` (wall clock): an
   * address that left the model before then is someone else's now, or nobody's. */
  private resolveAt(ip: string, atMs: number): AddressInfo | undefined {
    const info = this.o.resolve(strip(ip));
    return info && (info.goneAtMs === undefined || atMs < info.goneAtMs) ? info : undefined;
  }

  private endpoint(ip: string, from?: { workload?: string | undefined; namespace?: string | undefined; identity?: string | undefined }, atMs = Date.now()): Endpoint {
    return this.endpointOf(this.resolveAt(ip, atMs), from);
  }

  private endpointOf(info: AddressInfo | undefined, from?: { workload?: string | undefined; namespace?: string | undefined; identity?: string | undefined }): Endpoint {
    return {
      namespace: from?.namespace && from.namespace !== 'unknown' ? from.namespace : (info?.namespace ?? ''),
      podName: info?.podName ?? (from?.workload && from.workload !== 'unknown' ? from.workload : ''),
      identity: from?.identity ?? '',
      serviceAccount: info?.serviceAccount ?? '',
      workload: info?.workload ?? '',
      nodeName: info?.nodeName ?? '',
      labels: info?.labels ?? [],
    };
  }

  private kernel(ev: DatapathEvent | undefined): KernelDecision | null {
    if (!ev) return null;
    return { decision: ev.kind, reason: ev.reason, socketCookie: Number(ev.sockCookie), redirectPort: ev.newPort, timeUnixNano: this.wallNs(ev.tsNs) };
  }

  onKernelEvents(evs: DatapathEvent[]): void {
    const now = Date.now();
    for (const ev of evs) {
      this.kernelEvents++;
      switch (ev.kind) {
        case 'CAPTURED':
          this.captured.set(String(ev.sockCookie), { ev, atMs: now });
          break;
        case 'STEERED':
          this.steered.set(tupleKey(ev.src, ev.sport, ev.dst, ev.dport), { ev, atMs: now });
          break;
        case 'OBSERVED':
          this.emit(this.plaintextFlow(ev));
          break;
        case 'REFUSED':
          this.emit(this.refusedFlow(ev));
          break;
        default:
          break; // PASSED: the connection is the pod's own business (loopback, excluded, ...)
      }
    }
    // Expiry walks from the oldest entry, over the slots of the entries taken since the Map last
    // rehashed: once a second is enough for TTLs of a minute and more.
    if (now - this.expiredAtMs >= 1000) {
      this.expiredAtMs = now;
      this.captured.expire(now);
      this.steered.expire(now);
    }
  }

  /** A flow between two addresses, each end named once (from `ends`, or from the model). */
  private base(ev: { timeUnixNano: number; src: string; sport: number; dst: string; dport: number }, ends?: { source: Endpoint; destination: Endpoint }): Flow {
    const v6 = ev.src.includes(':') && !ev.src.startsWith('::ffff:');
    const atMs = ev.timeUnixNano / 1e6;
    return {
      timeUnixNano: ev.timeUnixNano,
      uuid: randomUUID(),
      nodeName: this.o.nodeName,
      verdict: 'FORWARDED',
      dropReasonDesc: '',
      ip: { source: strip(ev.src), destination: strip(ev.dst), ipVersion: v6 ? 6 : 4, encrypted: false },
      tcp: { sourcePort: ev.sport, destinationPort: ev.dport },
      source: ends?.source ?? this.endpoint(ev.src, undefined, atMs),
      destination: ends?.destination ?? this.endpoint(ev.dst, undefined, atMs),
      type: 'L3_L4',
      trafficDirection: 'EGRESS',
      destinationService: '',
      reporter: 'kernel',
      protocol: 'TCP',
      bytesSent: 0,
      bytesReceived: 0,
      durationMs: 0,
      responseFlags: '-',
      summary: '',
      kernel: null,
      l7: null,
      sourceService: this.resolveAt(ev.src, atMs)?.backs?.[0] ?? '',
      ingressAllowedBy: [],
      ingressDeniedBy: [],
      egressAllowedBy: [],
      egressDeniedBy: [],
      notCapturedReason: '',
      traceId: '',
    };
  }

  /** An OBSERVED connection (reported at its close): the flow starts when it was established. */
  private plaintextFlow(ev: DatapathEvent): Flow {
    const startNs = ev.startNs || ev.tsNs;
    const timeUnixNano = this.wallNs(startNs);
    const atMs = timeUnixNano / 1e6;
    const dst = this.resolveAt(ev.dst, atMs);
    const f = this.base({ timeUnixNano, src: ev.src, sport: ev.sport, dst: ev.dst, dport: ev.dport }, { source: this.endpoint(ev.src, undefined, atMs), destination: this.endpointOf(dst) });
    if (dst?.service) f.destinationService = dst.service;
    f.bytesSent = Number(ev.bytesSent);
    f.bytesReceived = Number(ev.bytesRecv);
    f.durationMs = Math.round(Number(ev.tsNs - startNs) / 1e6);
    f.summary = 'TCP plaintext (not in the mesh)';
    f.kernel = { ...this.kernel(ev)!, timeUnixNano };
    f.notCapturedReason = notCapturedReason(this.resolveAt(ev.src, atMs), strip(ev.src));
    return f;
  }

  private refusedFlow(ev: DatapathEvent): Flow {
    const f = this.base({ timeUnixNano: this.wallNs(ev.tsNs), src: ev.src, sport: ev.sport, dst: ev.dst, dport: ev.dport });
    f.verdict = 'DROPPED';
    f.trafficDirection = 'INGRESS';
    // An unknown address names no pod (the kernel could not tell whose netns it is): the
    // destination stays as the model resolves the address, usually unnamed.
    f.dropReasonDesc =
      ev.reason === 'unknown-address'
        ? `${strip(ev.dst)} is an address of an enrolled pod that the mesh does not know (link-local, added after enrolment, or its pod leaving the mesh): refused, so that nothing reaches the app around ztunnel (fail closed)`
        : 'ztunnel is not listening for this pod: refused (fail closed)';
    f.summary = 'TCP refused by the datapath, fail closed';
    f.responseFlags = 'UF';
    f.kernel = this.kernel(ev);
    return f;
  }

  /** One of ztunnel's connection records: joined with its kernel decision and pushed. */
  onRecord(r: ConnectionRecord): void {
    this.records++;
    const outbound = r.direction === 'outbound';
    const [srcIp, srcPort] = splitAddr(r.src.addr);
    const [dstIp, dstPort] = splitAddr(r.dst.hboneAddr ?? r.dst.addr);
    let ev: DatapathEvent | undefined;
    if (outbound && r.sockCookie) ev = this.captured.take(r.sockCookie)?.ev;
    else if (!outbound && r.outer) {
      const [os, osp] = splitAddr(r.outer.src);
      const [od, odp] = splitAddr(r.outer.dst);
      const key = tupleKey(os, osp, od, odp);
      // HBONE's outer connection carries many streams: keep its event; a plaintext one is done.
      ev = odp === HBONE_PORT ? this.steered.get(key)?.ev : this.steered.take(key)?.ev;
    }
    const f = this.base({ timeUnixNano: r.startMs * 1e6, src: srcIp, sport: srcPort, dst: dstIp, dport: dstPort }, { source: this.endpoint(srcIp, r.src, r.startMs), destination: this.endpoint(dstIp, r.dst, r.startMs) });
    f.trafficDirection = outbound ? 'EGRESS' : 'INGRESS';
    f.reporter = outbound ? 'ztunnel-source' : 'ztunnel-destination';
    f.ip.encrypted = r.mtls;
    f.protocol = r.mtls ? 'HBONE' : 'TCP';
    f.destinationService = r.dst.service && r.dst.service !== 'unknown' ? r.dst.service : '';
    f.bytesSent = r.bytesSent;
    f.bytesReceived = r.bytesRecv;
    f.durationMs = Math.round(r.durationMs);
    f.responseFlags = r.flags;
    f.kernel = this.kernel(ev);
    // Refused before it was set up (no healthy endpoint, waypoint missing, …) is a drop with its
    // reason, as a policy denial is; a connection that failed on the way is an error.
    const verdict: Verdict = r.flags === 'DENY' || r.refused ? 'DROPPED' : r.error ? 'ERROR' : 'FORWARDED';
    f.verdict = verdict;
    if (verdict !== 'FORWARDED') f.dropReasonDesc = r.flags === 'DENY' && !r.refused ? `Policy denied: ${r.error ?? ''}`.trim() : (r.error ?? '');
    const sec = r.mtls ? 'HBONE mTLS' : 'TCP plaintext';
    f.summary = r.refused ? 'TCP refused by ztunnel before it was set up' : verdict === 'DROPPED' ? `${sec}, policy denied` : verdict === 'ERROR' ? `${sec}, ${r.flags === '-' ? 'error' : r.flags}` : sec;
    if (r.policy) {
      // ztunnel decides at the destination: ingress in Hubble's terms.
      const ref = { name: r.policy.name, namespace: r.policy.namespace, kind: r.policy.kind };
      if (r.policy.allowed) f.ingressAllowedBy = [ref];
      else f.ingressDeniedBy = [ref];
    }
    this.emit(f);
  }

  /**
   * One HTTP request a waypoint on this node proxied: an L7 flow with the client's own address and
   * port, so it sits beside the L4 flow of its connection. A request the waypoint refused by
   * policy is DROPPED; one it could not deliver (no upstream, timeout, overflow) is ERROR.
   */
  onL7(r: L7Record): void {
    this.l7Records++;
    const f = this.base({ timeUnixNano: r.startMs * 1e6, src: r.src.ip, sport: r.src.port, dst: r.dst.ip, dport: r.dst.port }, { source: this.endpoint(r.src.ip, { identity: r.src.identity }, r.startMs), destination: this.endpoint(r.upstream?.ip ?? r.dst.ip, undefined, r.startMs) });
    f.type = 'L7';
    f.trafficDirection = 'EGRESS';
    f.reporter = r.reporter;
    f.ip.encrypted = true;
    f.protocol = r.protocol;
    f.destinationService = r.dst.service.split('/')[1] ?? '';
    f.durationMs = Math.round(r.latencyMs);
    f.responseFlags = r.flags;
    const denied = r.flags === 'RBAC';
    // A request refused by policy never went anywhere (Hubble's http-request DROPPED); every
    // other one is reported once answered, with its code and latency (http-response).
    f.l7 = { latencyNs: Math.round(r.latencyMs * 1e6), http: { code: r.status, method: r.method, url: r.url, protocol: r.protocol }, type: denied ? 'REQUEST' : 'RESPONSE' };
    f.traceId = r.traceId ?? '';
    if (r.policy) {
      const i = r.policy.indexOf('/');
      const ref = { namespace: i < 0 ? '' : r.policy.slice(0, i), name: i < 0 ? r.policy : r.policy.slice(i + 1), kind: 'AuthorizationPolicy' };
      if (denied) f.ingressDeniedBy = [ref];
      else f.ingressAllowedBy = [ref];
    }
    const failed = !denied && r.flags !== '-' && r.status >= 500;
    f.verdict = denied ? 'DROPPED' : failed ? 'ERROR' : 'FORWARDED';
    if (denied) f.dropReasonDesc = 'Policy denied (L7 authorization at the waypoint)';
    else if (failed) f.dropReasonDesc = `${r.status} ${r.flags}`;
    f.summary = `${r.protocol} ${r.method} ${r.url} → ${r.status}${r.flags !== '-' ? ` ${r.flags}` : ''} (${r.latencyMs.toFixed(1)} ms)`;
    this.emit(f);
  }

  /** Names ends that were unknown when the flow was made (a pod younger than its config). */
  enrich(f: Flow): void {
    for (const [ep, ip] of [[f.source, f.ip.source], [f.destination, f.ip.destination]] as const) {
      if (ep.podName || f.destinationService === ip) continue;
      const info = this.resolveAt(ip, f.timeUnixNano / 1e6);
      if (!info) continue;
      if (info.service && ep === f.destination && !f.destinationService) f.destinationService = info.service;
      if (!info.podName) continue;
      if (!ep.labels?.length) ep.labels = info.labels ?? [];
      if (ep === f.source && !f.sourceService) f.sourceService = info.backs?.[0] ?? '';
      // A bystander's connection closed before the model named its pod: say why now that it can.
      if (ep === f.source && f.notCapturedReason) f.notCapturedReason = notCapturedReason(info, ip);
      ep.namespace ||= info.namespace;
      ep.podName = info.podName;
      ep.serviceAccount ||= info.serviceAccount ?? '';
      ep.workload ||= info.workload ?? '';
      ep.nodeName ||= info.nodeName ?? '';
    }
  }

  /** Ends of `f` that should name a pod or a Service and name nothing yet. */
  private unnamed(f: Flow): boolean {
    const atMs = f.timeUnixNano / 1e6;
    for (const [ep, ip] of [[f.source, f.ip.source], [f.destination, f.ip.destination]] as const) {
      if (ep.podName || !ip || f.destinationService === ip) continue;
      if (!this.resolveAt(ip, atMs)) return true;
    }
    return false;
  }

  /**
   * Into the ring, once both ends are named: a flow the model cannot name yet (its pod started
   * and called before the pod's Workload reached this node) waits, bounded in time and count,
   * for names() to say the model changed — so the first flow of a new pod names it, for readers
   * that follow the ring as much as for those who read it later.
   */
  private emit(f: Flow): void {
    const waitMs = this.nameWaitMs;
    if (waitMs <= 0 || !this.unnamed(f)) {
      this.o.ring.push(f);
      return;
    }
    this.held.push({ f, untilMs: Date.now() + waitMs });
    if (this.held.length > (this.o.nameWaitMax ?? NAME_WAIT_MAX)) this.release(this.held.splice(0, 1));
    this.armHeld();
  }

  /** From now on, flows wait up to `ms` for names (once a model is followed; see NAME_WAIT_MS). */
  waitForNames(ms = NAME_WAIT_MS): void {
    this.nameWaitMs = ms;
  }

  /** The model changed: flows waiting for names that it now has go into the ring. */
  names(): void {
    if (this.held.length === 0) return;
    const ready = new Set(this.held.filter((h) => !this.unnamed(h.f)));
    if (ready.size === 0) return;
    this.held = this.held.filter((h) => !ready.has(h));
    this.release([...ready]);
  }

  /** Flows that waited long enough go as they are (enrich-on-read may still name them). */
  private expireHeld(): void {
    this.heldTimer = undefined;
    const now = Date.now();
    const i = this.held.findIndex((h) => h.untilMs > now);
    this.release(this.held.splice(0, i < 0 ? this.held.length : i));
    this.armHeld();
  }

  private release(hs: { f: Flow }[]): void {
    for (const { f } of hs) {
      this.enrich(f);
      this.o.ring.push(f);
    }
  }

  private armHeld(): void {
    if (this.heldTimer || this.held.length === 0) return;
    this.heldTimer = setTimeout(() => this.expireHeld(), Math.max(0, this.held[0]!.untilMs - Date.now()));
    this.heldTimer.unref();
  }

  /** Flows waiting for names now. */
  get waitingForNames(): number {
    return this.held.length;
  }

  onZtunnelLost(n: number): void {
    const lost: LostEvent = { source: 'ZTUNNEL_RECORDS', numEventsLost: n, detail: `ztunnel could not hand over ${n} connection records (agent away or too slow)` };
    this.o.ring.pushLost(lost, Date.now() * 1e6);
  }

  onKernelLost(n: number): void {
    const lost: LostEvent = { source: 'KERNEL_RING_BUFFER', numEventsLost: n, detail: `the kernel's ring buffer was full: ${n} datapath decisions were dropped` };
    this.o.ring.pushLost(lost, Date.now() * 1e6);
  }

  pending(): { captured: number; steered: number } {
    return { captured: this.captured.size, steered: this.steered.size };
  }
}
