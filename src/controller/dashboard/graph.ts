// The service map's model: workloads and services as nodes, and edges built from the flows the
// relay streams — who called whom, how often, how many failed, how slow (p99), over mTLS or in
// plaintext, how many were denied by policy, and through which waypoint. Pure: flows and the
// cluster's inventory in, a JSON snapshot out; the server (server.ts) feeds it and ships it.
import type { Flow } from '../../flows/types.ts';

/** Defaults with their reasons. */
export interface GraphOptions {
  windowMs: number;
  keepMs: number;
  maxSamplesPerEdge: number;
}

export const GRAPH_DEFAULTS: Readonly<GraphOptions> = Object.freeze({
  /** Rates, error rates and p99 are over the last minute: Kiali's default graph window. */
  windowMs: 60_000,
  /** An edge stays drawn (idle) this long after its last flow, so a call that stopped is still seen. */
  keepMs: 10 * 60_000,
  /** Samples kept per edge: bounds memory under a flood (a minute of 1,000 connections/s is 60k). */
  maxSamplesPerEdge: 20_000,
});

export type NodeKind = 'workload' | 'service' | 'external';

/** What the controller's model knows, so that nodes appear before (or without) traffic. */
export interface Inventory {
  workloads: { namespace: string; name: string; serviceAccount: string; inMesh: boolean }[];
  services: { namespace: string; name: string; hostname: string; waypoint: string }[];
}

export interface GraphNode {
  id: string;
  kind: NodeKind;
  namespace: string;
  name: string;
  /** Workloads: captured by the mesh. Services: always true. */
  inMesh: boolean;
  /** Services: the waypoint ("ns/name") their traffic goes through, if any. */
  waypoint: string;
  /** The flows filter (meshctl flows flag → value) that shows this node's traffic. */
  filter: Record<string, string>;
}

export interface EdgeStats {
  /** Requests per second when a waypoint saw them (L7 flows, when they outnumber the connections), else connections per second. */
  rate: number;
  unit: 'req/s' | 'conn/s';
  /** Share of the window's flows that failed (ERROR verdict, or an HTTP 5xx), 0..1. */
  errorRate: number;
  /** p99 of request latency (L7) or connection duration (L4), ms; null with no sample. */
  p99Ms: number | null;
  /** Flows DROPPED in the window (policy denials and fail-closed refusals). */
  denied: number;
  /** 'mtls', 'plaintext' or 'mixed' over the window (or over the edge's life when idle). */
  security: 'mtls' | 'plaintext' | 'mixed';
  flows: number;
}

export interface GraphEdge extends EdgeStats {
  id: string;
  source: string;
  target: string;
  /** The waypoint on the path ("ns/name"): from the service's binding or a waypoint's L7 flows. */
  waypoint: string;
  /** A policy denied one of its flows in the window. */
  deniedNow: boolean;
  /** When the last denial was seen (ms since the epoch), 0 if never. */
  lastDeniedMs: number;
  lastSeenMs: number;
  filter: Record<string, string>;
}

export interface GraphSnapshot {
  timeMs: number;
  windowMs: number;
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** Flows folded in since the start, and flows we could not place on an edge. */
  flowsSeen: number;
  flowsUnplaced: number;
}

interface Sample {
  t: number;
  l7: boolean;
  reporter: string;
  failed: boolean;
  denied: boolean;
  encrypted: boolean;
  ms: number;
}

interface EdgeState {
  source: string;
  target: string;
  waypoint: string;
  samples: Sample[];
  lastSeenMs: number;
  lastDeniedMs: number;
  everEncrypted: boolean;
  everPlain: boolean;
}

/** "catalog.shop.svc.cluster.local" → { name: catalog, namespace: shop }. */
export function serviceOf(hostname: string, fallbackNs: string): { namespace: string; name: string } {
  const [name = hostname, ns] = hostname.split('.');
  return { name, namespace: ns ?? fallbackNs };
}

const wlId = (ns: string, name: string) => `wl:${ns}/${name}`;
const svcId = (ns: string, name: string) => `svc:${ns}/${name}`;

function endpointNode(ep: Flow['source'], ip: string): { id: string; node: GraphNode } {
  if (ep.podName) {
    const name = ep.workload || ep.podName;
    return { id: wlId(ep.namespace, name), node: { id: wlId(ep.namespace, name), kind: 'workload', namespace: ep.namespace, name, inMesh: false, waypoint: '', filter: { pod: `${ep.namespace}/${name}` } } };
  }
  return { id: `ip:${ip}`, node: { id: `ip:${ip}`, kind: 'external', namespace: '', name: ip, inMesh: false, waypoint: '', filter: { ip } } };
}

function p99(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
}

export class ServiceGraph {
  private readonly o: GraphOptions;
  private readonly edges = new Map<string, EdgeState>();
  /** Nodes first met in flows (pods and addresses the inventory does not list). */
  private readonly seenNodes = new Map<string, GraphNode>();
  private flowsSeen = 0;
  private flowsUnplaced = 0;

  constructor(o: Partial<GraphOptions> = {}) {
    this.o = { ...GRAPH_DEFAULTS, ...o };
  }

  /**
   * Folds one flow in. Reporters are counted apart and an edge's rate is the busiest reporter's,
   * so a connection two of them saw is not counted twice.
   */
  add(f: Flow): void {
    this.flowsSeen++;
    // Over HBONE the source's ztunnel reports the connection too, with the Service it was
    // addressed to (the destination only sees the pod): its flow stands for both, denials
    // included (the 401 comes back to it).
    if (f.reporter === 'ztunnel-destination' && f.ip.encrypted) return;
    const src = endpointNode(f.source, f.ip.source);
    let dst = endpointNode(f.destination, f.ip.destination);
    if (!f.source.podName && !f.ip.source) {
      this.flowsUnplaced++;
      return;
    }
    this.seenNodes.set(src.id, this.seenNodes.get(src.id) ?? src.node);
    const waypoint = f.reporter.startsWith('waypoint ') ? f.reporter.slice('waypoint '.length) : '';
    if (f.destinationService) {
      // Addressed to a Service: client → service, and service → the workload that answered.
      const s = serviceOf(f.destinationService, f.destination.namespace || f.source.namespace);
      const sid = svcId(s.namespace, s.name);
      if (!this.seenNodes.has(sid)) this.seenNodes.set(sid, { id: sid, kind: 'service', namespace: s.namespace, name: s.name, inMesh: true, waypoint: '', filter: { 'to-service': f.destinationService } });
      this.fold(src.id, sid, f, waypoint);
      // The waypoint pod itself is a hop, not the service's backend.
      // Only a pod is a backend: a plaintext flow seen before the Service's NAT names the VIP.
      if (f.destination.podName && !waypoint) {
        this.seenNodes.set(dst.id, this.seenNodes.get(dst.id) ?? dst.node);
        this.fold(sid, dst.id, f, waypoint);
      }
      return;
    }
    if (!f.destination.podName && !f.ip.destination) {
      this.flowsUnplaced++;
      return;
    }
    dst = endpointNode(f.destination, f.ip.destination);
    this.seenNodes.set(dst.id, this.seenNodes.get(dst.id) ?? dst.node);
    this.fold(src.id, dst.id, f, waypoint);
  }

  private fold(source: string, target: string, f: Flow, waypoint: string): void {
    const id = `${source}->${target}`;
    let e = this.edges.get(id);
    if (!e) {
      e = { source, target, waypoint: '', samples: [], lastSeenMs: 0, lastDeniedMs: 0, everEncrypted: false, everPlain: false };
      this.edges.set(id, e);
    }
    const t = Math.floor(f.timeUnixNano / 1e6);
    const l7 = f.type === 'L7';
    const denied = f.verdict === 'DROPPED';
    const failed = f.verdict === 'ERROR' || (l7 && (f.l7?.http?.code ?? 0) >= 500);
    const ms = l7 && f.l7 ? f.l7.latencyNs / 1e6 : f.durationMs;
    e.samples.push({ t, l7, reporter: f.reporter, failed, denied, encrypted: f.ip.encrypted, ms });
    if (e.samples.length > this.o.maxSamplesPerEdge) e.samples.splice(0, e.samples.length - this.o.maxSamplesPerEdge);
    e.lastSeenMs = Math.max(e.lastSeenMs, t);
    if (denied) e.lastDeniedMs = Math.max(e.lastDeniedMs, t);
    if (f.ip.encrypted) e.everEncrypted = true;
    else e.everPlain = true;
    if (waypoint) e.waypoint = waypoint;
  }

  /** The map now: inventory nodes, nodes met in flows, and the edges seen within keepMs. */
  snapshot(inventory: Inventory, now = Date.now()): GraphSnapshot {
    // "ns/name" of the waypoints' workloads (a waypoint's Deployment is named after its Gateway).
    const waypoints = new Set(inventory.services.filter((s) => s.waypoint).map((s) => `wl:${s.waypoint}`));
    const nodes = new Map<string, GraphNode>();
    for (const w of inventory.workloads) {
      const id = wlId(w.namespace, w.name);
      nodes.set(id, { id, kind: 'workload', namespace: w.namespace, name: w.name, inMesh: w.inMesh, waypoint: '', filter: { pod: `${w.namespace}/${w.name}` } });
    }
    const serviceWaypoint = new Map<string, string>();
    for (const s of inventory.services) {
      const id = svcId(s.namespace, s.name);
      serviceWaypoint.set(id, s.waypoint);
      nodes.set(id, { id, kind: 'service', namespace: s.namespace, name: s.name, inMesh: true, waypoint: s.waypoint, filter: { 'to-service': s.hostname } });
    }
    const edges: GraphEdge[] = [];
    const since = now - this.o.windowMs;
    for (const [id, e] of this.edges) {
      if (e.lastSeenMs < now - this.o.keepMs) {
        this.edges.delete(id);
        continue;
      }
      // The source ztunnel's flow to a waypoint goes to the waypoint's pod: a hop on the path,
      // drawn as the edge's waypoint, not as the service's backend.
      if (e.source.startsWith('svc:') && waypoints.has(e.target)) continue;
      const first = e.samples.findIndex((s) => s.t >= since);
      if (first > 0) e.samples.splice(0, first);
      else if (first < 0) e.samples.length = 0;
      for (const end of [e.source, e.target]) if (!nodes.has(end)) nodes.set(end, this.seenNodes.get(end)!);
      const src = nodes.get(e.source)!;
      const dst = nodes.get(e.target)!;
      edges.push({
        id,
        source: e.source,
        target: e.target,
        waypoint: e.waypoint || (dst.kind === 'service' ? (serviceWaypoint.get(dst.id) ?? '') : ''),
        ...this.stats(e),
        deniedNow: e.samples.some((s) => s.denied),
        lastDeniedMs: e.lastDeniedMs,
        lastSeenMs: e.lastSeenMs,
        // service → backend: the flows addressed to the service that this workload answered.
        filter: { ...(src.kind === 'service' ? toFilter(src) : fromFilter(src)), ...toFilter(dst) },
      });
    }
    for (const n of nodes.values()) if (n.kind === 'workload' && !n.inMesh) n.inMesh = this.seenNodes.get(n.id)?.inMesh ?? n.inMesh;
    return { timeMs: now, windowMs: this.o.windowMs, nodes: [...nodes.values()], edges, flowsSeen: this.flowsSeen, flowsUnplaced: this.flowsUnplaced };
  }

  private stats(e: EdgeState): EdgeStats {
    const s = e.samples;
    const l7 = s.filter((x) => x.l7);
    // The busiest reporter's flows stand for the edge's connections (see add()).
    const byReporter = new Map<string, Sample[]>();
    for (const x of s) if (!x.l7) byReporter.set(x.reporter, [...(byReporter.get(x.reporter) ?? []), x]);
    const l4 = [...byReporter.values()].sort((a, b) => b.length - a.length)[0] ?? [];
    // Requests when the waypoint's L7 flows are the larger count (keep-alive carries many requests
    // per connection); connections otherwise, e.g. in the minute after a waypoint is put on the path.
    const useL7 = l7.length > 0 && l7.length >= l4.length;
    const basis = useL7 ? l7 : l4;
    // Denials are counted from every reporter but once per reporter kind: the destination refuses
    // the connection; the source's flow of the same connection says DROPPED too.
    const deniedBy = new Map<string, number>();
    for (const x of s) if (x.denied) deniedBy.set(x.reporter, (deniedBy.get(x.reporter) ?? 0) + 1);
    const enc = s.filter((x) => x.encrypted).length;
    const security = s.length === 0 ? (e.everEncrypted && e.everPlain ? 'mixed' : e.everEncrypted ? 'mtls' : 'plaintext') : enc === s.length ? 'mtls' : enc === 0 ? 'plaintext' : 'mixed';
    return {
      rate: basis.length / (this.o.windowMs / 1000),
      unit: useL7 ? 'req/s' : 'conn/s',
      errorRate: basis.length ? basis.filter((x) => x.failed).length / basis.length : 0,
      p99Ms: p99(basis.filter((x) => !x.denied).map((x) => x.ms)),
      denied: Math.max(0, ...deniedBy.values()),
      security,
      flows: s.length,
    };
  }
}

/** The meshctl flows filter for traffic from `n`. */
function fromFilter(n: GraphNode): Record<string, string> {
  if (n.kind === 'workload') return { 'from-pod': `${n.namespace}/${n.name}` };
  if (n.kind === 'external') return { 'from-ip': n.name };
  return {};
}

/** The meshctl flows filter for traffic to `n`. */
function toFilter(n: GraphNode): Record<string, string> {
  if (n.kind === 'workload') return { 'to-pod': `${n.namespace}/${n.name}` };
  if (n.kind === 'external') return { 'to-ip': n.name };
  return { 'to-service': n.filter['to-service'] ?? n.name };
}
