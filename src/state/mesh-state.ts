// ztunnel's view of the mesh, fed by the config stream: workloads by address and by pod UID,
// services by VIP, and which workloads back each service.
import { isIPv4 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { type CompiledPolicies, compilePolicies } from '../authz/index.ts';
import { type Authorization, AUTHORIZATION, type GatewayAddress, type Service, SERVICE, WORKLOAD, type Workload } from '../xds/index.ts';

export type MeshTypes = { [WORKLOAD]: Workload; [SERVICE]: Service; [AUTHORIZATION]: Authorization };

export function ipText(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  return b.length === 16 ? ipaddr.fromByteArray([...b]).toString() : '';
}

/** Canonical text for an address, so that "::ffff:10.0.0.1" and "10.0.0.1" meet. */
export function canonicalIp(ip: string): string {
  // The common cases skip ipaddr.js (it ran on every connection): a dotted quad as Node's sockets
  // report it, bare or v4-mapped.
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  if (isIPv4(v4) && !/(^|\.)0\d/.test(v4)) return v4;
  return ipaddr.process(ip).toString();
}

export interface Destination {
  workload: Workload | undefined;
  /** The address and port to reach it on (a pod IP and target port after service resolution). */
  ip: string;
  port: number;
  service: Service | undefined;
}

/** A healthy workload backing a Service port, and where to reach it (its pod IP and target port). */
export interface ServiceEndpoint {
  workload: Workload;
  ip: string;
  port: number;
  /** The service port's appProtocol ("http", "http2", "grpc", …; '' when unsaid). */
  appProtocol: string;
}

/** A waypoint as ztunnel finds it: the Service of its hostname and the identities behind it. */
export interface WaypointStatus {
  /** "namespace/hostname", as GatewayAddress.hostname names it. */
  readonly hostname: string;
  /** Why it cannot carry traffic, or undefined when it can. */
  readonly problem: string | undefined;
  /** The SPIFFE IDs (URIs) of its healthy endpoints: the only peers a workload behind it accepts. */
  readonly identities: readonly string[];
  /** Its healthy endpoints' addresses, where clients open HBONE to it. */
  readonly addresses: readonly string[];
}

export class MeshState {
  readonly workloads = new Map<string, Workload>();
  readonly services = new Map<string, Service>();
  readonly authorizations = new Map<string, Authorization>();
  private byIp = new Map<string, Workload>();
  private byPodUid = new Map<string, Workload>();
  private byVip = new Map<string, Service>();
  private backends = new Map<string, Workload[]>();
  /** endpoints()' answers until the next change: the waypoint asks on every request. */
  private endpointCache = new Map<string, readonly ServiceEndpoint[]>();
  private compiled: CompiledPolicies | undefined;
  /** The types whose full state has arrived at least once (the config stream's "synced"). */
  private readonly syncedTypes = new Set<keyof MeshTypes>();

  /**
   * Replaces one type's contents and rebuilds the indexes. `complete`: these entries are the
   * type's full state (the config stream said so); until every type has been complete once,
   * `synced` is false and inbound policy fails closed.
   */
  replace<T extends keyof MeshTypes>(type: T, entries: Iterable<[string, MeshTypes[T]]>, complete: boolean): void {
    const target = (type === WORKLOAD ? this.workloads : type === SERVICE ? this.services : this.authorizations) as Map<string, MeshTypes[T]>;
    target.clear();
    for (const [k, v] of entries) target.set(k, v);
    if (complete) this.syncedTypes.add(type);
    this.reindex();
  }

  /**
   * Every type has arrived in full. Workloads come before Authorizations on a (re)started
   * ztunnel: judging a connection in between would skip STRICT and DENY policies not yet here.
   */
  get synced(): boolean {
    return this.syncedTypes.size === 3;
  }

  /** The authorizations compiled for evaluation, once per change of the set. */
  policies(): CompiledPolicies {
    this.compiled ??= compilePolicies({ byKey: this.authorizations });
    return this.compiled;
  }

  private reindex(): void {
    this.compiled = undefined;
    this.byIp = new Map();
    this.byPodUid = new Map();
    this.backends = new Map();
    this.endpointCache = new Map();
    for (const w of this.workloads.values()) {
      for (const a of w.addresses) this.byIp.set(ipText(a), w);
      if (w.podUid) this.byPodUid.set(w.podUid, w);
      for (const key of Object.keys(w.services)) {
        const list = this.backends.get(key) ?? [];
        list.push(w);
        this.backends.set(key, list);
      }
    }
    this.byVip = new Map();
    for (const s of this.services.values()) for (const a of s.addresses) this.byVip.set(ipText(a.address), s);
  }

  /**
   * The waypoint a GatewayAddress names, and whether it can carry traffic: its Service is known
   * and has a healthy endpoint. The controller points users of a missing waypoint at the hostname
   * its Service would have, so "unknown" is the usual answer for a missing one.
   */
  waypoint(addr: GatewayAddress, trustDomain: string): WaypointStatus {
    const hostname = addr.hostname ?? (addr.address ? ipText(addr.address.address) : '');
    const svc = addr.hostname ? this.services.get(addr.hostname) : addr.address ? this.byVip.get(ipText(addr.address.address)) : undefined;
    if (!svc) return { hostname, problem: `waypoint ${hostname} is missing (no such Service)`, identities: [], addresses: [] };
    // A waypoint runs as the service account named after its Gateway (as Istio's do): only those
    // endpoints count, so a pod that merely matches the Service's selector cannot speak for it.
    const healthy = (this.backends.get(`${svc.namespace}/${svc.hostname}`) ?? []).filter((w) => w.status === 'HEALTHY' && w.serviceAccount === svc.name);
    if (healthy.length === 0) return { hostname, problem: `waypoint ${hostname} has no ready endpoint running as service account ${svc.namespace}/${svc.name}`, identities: [], addresses: [] };
    const ids = [...new Set(healthy.map((w) => `spiffe://${w.trustDomain || trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`))].sort();
    const addresses = healthy.flatMap((w) => (w.addresses[0] ? [ipText(w.addresses[0])] : []));
    return { hostname, problem: undefined, identities: ids, addresses };
  }

  /**
   * The waypoints a connection to `w` on `port` must go through: its own (captured workloads
   * only), and those of the Services it backs on that target port — reaching the pod by its IP
   * does not skip a Service's waypoint.
   */
  waypointsOf(w: Workload, port: number): { via: string; address: GatewayAddress }[] {
    const out: { via: string; address: GatewayAddress }[] = [];
    if (w.tunnelProtocol === 'HBONE' && w.waypoint) out.push({ via: `workload ${w.namespace}/${w.name}`, address: w.waypoint });
    for (const [key, list] of Object.entries(w.services)) {
      const svc = this.services.get(key);
      if (svc?.waypoint && (list.ports.length === 0 || list.ports.some((p) => (p.targetPort || p.servicePort) === port))) {
        out.push({ via: `service ${svc.namespace}/${svc.hostname}`, address: svc.waypoint });
      }
    }
    return out;
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.byIp.get(canonicalIp(ip));
  }

  workloadByPodUid(uid: string): Workload | undefined {
    return this.byPodUid.get(uid);
  }

  /**
   * Where a connection for ip:port goes: a service VIP picks a healthy backend at random and maps
   * the service port to its target port; a pod IP is itself; anything else is outside the mesh.
   */
  resolve(ip: string, port: number): Destination | { error: string } {
    const svc = this.byVip.get(canonicalIp(ip));
    if (svc) {
      const usable = this.endpoints(`${svc.namespace}/${svc.hostname}`, port);
      if (usable.length === 0) return { error: `service ${svc.hostname} has no healthy endpoint for port ${port}` };
      const pick = usable[Math.floor(Math.random() * usable.length)]!;
      return { workload: pick.workload, ip: pick.ip, port: pick.port, service: svc };
    }
    return { workload: this.workloadByIp(ip), ip: canonicalIp(ip), port, service: undefined };
  }

  /** The Service whose VIP this is. */
  serviceByVip(ip: string): Service | undefined {
    return this.byVip.get(canonicalIp(ip));
  }

  /**
   * The healthy workloads backing a Service ("namespace/hostname") on one of its ports, each with
   * its address and the target port the service port maps to on it.
   */
  endpoints(service: string, servicePort: number): readonly ServiceEndpoint[] {
    const key = `${service}\u0000${servicePort}`;
    const cached = this.endpointCache.get(key);
    if (cached) return cached;
    const list = this.#endpoints(service, servicePort);
    // Bounded: a client may dial any port of a Service.
    if (this.endpointCache.size >= 4096) this.endpointCache.clear();
    this.endpointCache.set(key, list);
    return list;
  }

  #endpoints(service: string, servicePort: number): readonly ServiceEndpoint[] {
    return (this.backends.get(service) ?? []).flatMap((w) => {
      if (w.status !== 'HEALTHY') return [];
      const p = w.services[service]?.ports.find((x) => x.servicePort === servicePort);
      const addr = w.addresses[0];
      return p && addr ? [{ workload: w, ip: ipText(addr), port: p.targetPort || servicePort, appProtocol: p.appProtocol }] : [];
    });
  }
}
