// Kubernetes Services → mesh Services (hostname, VIPs, ports, waypoint), and per pod the
// services it backs with target ports resolved against that pod (Workload.services).
import type * as k8s from '@kubernetes/client-node';
import type { Port, PortList, Service } from '../../xds/index.ts';
import { compare, ipBytes, labelsOf, nameOf, namespaceOf, uniqSorted, type LabelIndex } from './kube.ts';
import { ANNOTATION_SUBJECT_ALT_NAMES } from './types.ts';
import type { WaypointRef } from './waypoints.ts';

/** Port-name prefixes Istio infers a protocol from ("<protocol>[-<suffix>]", Istio docs "Protocol Selection"). */
const NAMED_PROTOCOLS = ['grpc-web', 'http2', 'https', 'http', 'grpc', 'tcp', 'tls'];

/** The port's appProtocol, or the protocol its name announces, or "". */
export function appProtocol(p: k8s.V1ServicePort): string {
  if (p.appProtocol) {
    const a = p.appProtocol.toLowerCase();
    // Kubernetes-defined values (k8s.io/api ServicePort.appProtocol).
    if (a === 'kubernetes.io/h2c') return 'http2';
    if (a === 'kubernetes.io/ws') return 'http';
    if (a === 'kubernetes.io/wss') return 'https';
    return a;
  }
  const name = (p.name ?? '').toLowerCase();
  return NAMED_PROTOCOLS.find((proto) => name === proto || name.startsWith(`${proto}-`)) ?? '';
}

/** ztunnel carries TCP only; a UDP port of the same number must not look routable. */
export const tcpPorts = (svc: k8s.V1Service): k8s.V1ServicePort[] => (svc.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP');

const portOrder = (a: Port, b: Port): number => a.servicePort - b.servicePort || a.targetPort - b.targetPort || compare(a.appProtocol, b.appProtocol);

export function hostnameOf(name: string, ns: string, clusterDomain: string): string {
  return `${name}.${ns}.svc.${clusterDomain}`;
}

/** The mesh Service; `waypoint` as Waypoints.resolve() found it for this Service. Null for ExternalName. */
export function buildService(svc: k8s.V1Service, waypoint: WaypointRef | null, clusterDomain: string): Service | null {
  const spec = svc.spec ?? {};
  // An ExternalName service is a DNS alias: no VIP, no endpoints, nothing for ztunnel to route.
  if (spec.type === 'ExternalName') return null;
  const name = nameOf(svc);
  const ns = namespaceOf(svc);
  const ips = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  const addresses = ips.flatMap((ip) => {
    // "None" marks a headless service: it has no VIP but is still a Service (its endpoints are).
    const address = ip === 'None' ? null : ipBytes(ip);
    return address ? [{ network: '', address }] : [];
  });
  const ports = tcpPorts(svc)
    .map((p) => ({
      servicePort: p.port,
      // A named target port differs per pod: the number lives in each Workload.services entry.
      targetPort: p.targetPort === undefined ? p.port : typeof p.targetPort === 'number' ? p.targetPort : 0,
      appProtocol: appProtocol(p),
    }))
    .sort(portOrder);
  const sans = svc.metadata?.annotations?.[ANNOTATION_SUBJECT_ALT_NAMES];
  return {
    name,
    namespace: ns,
    hostname: hostnameOf(name, ns, clusterDomain),
    addresses,
    ports,
    subjectAltNames: sans
      ? uniqSorted(
          sans
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        )
      : [],
    waypoint: waypoint?.address ?? null,
  };
}

/** The number a (possibly named) target port has on this pod; null when the pod has no such port. */
function resolveTargetPort(p: k8s.V1ServicePort, pod: k8s.V1Pod): number | null {
  const t = p.targetPort;
  if (t === undefined || t === '') return p.port;
  if (typeof t === 'number') return t;
  // Kubernetes looks a named port up in every container (EndpointSlice controller, podutil.FindPort),
  // sidecar init containers included.
  for (const c of [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])]) {
    for (const cp of c.ports ?? []) if (cp.name === t && (cp.protocol ?? 'TCP') === 'TCP') return cp.containerPort;
  }
  return null;
}

/** A Service that picks its endpoints by label (the others take them from EndpointSlices that name pods). */
export function hasSelector(svc: k8s.V1Service): boolean {
  const sel = svc.spec?.selector;
  return !!sel && Object.keys(sel).length > 0;
}

/** The ports a selected pod serves for `svc`; null when it is no endpoint (none of the service's named ports). */
export function selectedPodPorts(svc: k8s.V1Service, pod: k8s.V1Pod): Port[] | null {
  const ports = tcpPorts(svc);
  const resolved = ports.flatMap((p) => {
    const target = resolveTargetPort(p, pod);
    return target === null ? [] : [{ servicePort: p.port, targetPort: target, appProtocol: appProtocol(p) }];
  });
  // A pod with none of the service's named ports is no endpoint of it (nor is it in Kubernetes).
  return resolved.length > 0 || ports.length === 0 ? resolved : null;
}

/** The ports of `svc` that an EndpointSlice of it gives its endpoints. */
export function slicePorts(svc: k8s.V1Service, slice: k8s.V1EndpointSlice): Port[] {
  return tcpPorts(svc).flatMap((p) => {
    const sp = (slice.ports ?? []).find((x) => (x.name ?? '') === (p.name ?? '') && (x.protocol ?? 'TCP') === 'TCP');
    return sp?.port === undefined ? [] : [{ servicePort: p.port, targetPort: sp.port, appProtocol: appProtocol(p) }];
  });
}

/** The pods (by name, in the slice's namespace) that an EndpointSlice names. */
export function slicePodNames(slice: k8s.V1EndpointSlice): string[] {
  const ns = namespaceOf(slice);
  const out: string[] = [];
  for (const ep of slice.endpoints ?? []) {
    const ref = ep.targetRef;
    if (ref?.kind !== 'Pod' || !ref.name || (ref.namespace ?? ns) !== ns) continue;
    out.push(ref.name);
  }
  return out;
}

/** The service an EndpointSlice belongs to (its kubernetes.io/service-name label), "ns/name"; null without one. */
export function sliceService(slice: k8s.V1EndpointSlice): string | null {
  const name = labelsOf(slice)['kubernetes.io/service-name'];
  return name ? `${namespaceOf(slice)}/${name}` : null;
}

/** Service key → the ports found for it → one Workload.services map: keys sorted, ports sorted and unique. */
export function portLists(found: Map<string, Port[]>): Record<string, PortList> {
  const rec: Record<string, PortList> = {};
  for (const key of [...found.keys()].sort(compare)) {
    const seen = new Set<string>();
    const ports = found.get(key)!.sort(portOrder).filter((p) => {
      const id = `${p.servicePort}/${p.targetPort}`;
      return seen.has(id) ? false : (seen.add(id), true);
    });
    rec[key] = { ports };
  }
  return rec;
}

/**
 * "ns/name" of each pod → its Workload.services map. Services with a selector select pods of their
 * namespace; services without one take their endpoints from EndpointSlices that name pods.
 */
export function servicesByPod(
  services: k8s.V1Service[],
  endpointSlices: k8s.V1EndpointSlice[],
  pods: LabelIndex<k8s.V1Pod>,
  clusterDomain: string,
): Map<string, Record<string, PortList>> {
  const out = new Map<string, Map<string, Port[]>>();
  const add = (pod: string, svcKey: string, ports: Port[]): void => {
    let m = out.get(pod);
    if (!m) out.set(pod, (m = new Map()));
    const list = m.get(svcKey);
    if (list) list.push(...ports);
    else m.set(svcKey, [...ports]);
  };
  const slicesByService = new Map<string, k8s.V1EndpointSlice[]>();
  for (const slice of endpointSlices) {
    const key = sliceService(slice);
    if (key) slicesByService.set(key, [...(slicesByService.get(key) ?? []), slice]);
  }
  for (const svc of services) {
    if (svc.spec?.type === 'ExternalName') continue;
    const ns = namespaceOf(svc);
    const name = nameOf(svc);
    const svcKey = `${ns}/${hostnameOf(name, ns, clusterDomain)}`;
    if (hasSelector(svc)) {
      for (const pod of pods.select(ns, svc.spec!.selector!)) {
        const ports = selectedPodPorts(svc, pod);
        if (ports) add(`${ns}/${nameOf(pod)}`, svcKey, ports);
      }
      continue;
    }
    for (const slice of slicesByService.get(`${ns}/${name}`) ?? []) {
      const ports = slicePorts(svc, slice);
      for (const pod of slicePodNames(slice)) add(`${ns}/${pod}`, svcKey, ports);
    }
  }
  const result = new Map<string, Record<string, PortList>>();
  for (const [pod, m] of out) result.set(pod, portLists(m));
  return result;
}
