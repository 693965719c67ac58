// Cluster snapshots for the mesh model's tests and benchmarks: namespaces, pods, services,
// policies and waypoints as the informers hold them, with defaults that make a meshed pod.
import type * as k8s from '@kubernetes/client-node';
import type { ClusterSnapshot, KubeObject, ModelOptions } from '../../src/controller/model/index.ts';

export const OPTS: ModelOptions = { trustDomain: 'cluster.local', clusterId: 'Kubernetes', rootNamespace: 'mesh-system' };
export const AMBIENT = { 'mesh.io/dataplane-mode': 'ambient' };

let ipCounter = 0;
export const nextIp = (): string => `10.244.${Math.floor(++ipCounter / 250)}.${(ipCounter % 250) + 1}`;

export function snapshot(parts: Partial<ClusterSnapshot>): ClusterSnapshot {
  return { namespaces: [], pods: [], services: [], endpointSlices: [], nodes: [], gateways: [], httpRoutes: [], authorizationPolicies: [], peerAuthentications: [], ...parts };
}

export function ns(name: string, labels: Record<string, string> = {}): k8s.V1Namespace {
  return { metadata: { name, labels } };
}

export interface PodOpts {
  labels?: Record<string, string>;
  ip?: string | null;
  ips?: string[];
  hostNetwork?: boolean;
  phase?: string;
  deleting?: boolean;
  ready?: boolean;
  sa?: string;
  owner?: { kind: string; name: string };
  ports?: { name: string; containerPort: number }[];
}

export function pod(namespace: string, name: string, o: PodOpts = {}): k8s.V1Pod {
  const ips = o.ips ?? (o.ip === null ? [] : [o.ip ?? nextIp()]);
  return {
    metadata: {
      name,
      namespace,
      uid: `uid-${namespace}-${name}`,
      labels: o.labels ?? {},
      ...(o.deleting ? { deletionTimestamp: new Date('2026-01-01T00:00:00Z') } : {}),
      ...(o.owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: o.owner.kind, name: o.owner.name, uid: 'x', controller: true }] } : {}),
    },
    spec: {
      nodeName: 'node-a',
      hostNetwork: o.hostNetwork ?? false,
      ...(o.sa ? { serviceAccountName: o.sa } : {}),
      containers: [{ name: 'app', ports: o.ports ?? [] }],
    },
    status: {
      phase: o.phase ?? 'Running',
      podIPs: ips.map((ip) => ({ ip })),
      ...(ips[0] ? { podIP: ips[0] } : {}),
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
    },
  };
}

export function svc(namespace: string, name: string, spec: k8s.V1ServiceSpec, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): k8s.V1Service {
  return { metadata: { name, namespace, labels, annotations }, spec };
}

export function policy(kind: 'AuthorizationPolicy' | 'PeerAuthentication', namespace: string, name: string, spec: unknown, created = '2026-01-01T00:00:00Z'): KubeObject {
  return { apiVersion: 'security.mesh.io/v1', kind, metadata: { name, namespace, generation: 3, creationTimestamp: new Date(created) }, spec };
}
export const ap = (namespace: string, name: string, spec: unknown): KubeObject => policy('AuthorizationPolicy', namespace, name, spec);
export const pa = (namespace: string, name: string, spec: unknown, created?: string): KubeObject => policy('PeerAuthentication', namespace, name, spec, created);

/** A waypoint Gateway; `programmed` is its Programmed condition ('none': no status yet). */
export function waypointGateway(namespace: string, name: string, cls = 'mesh-waypoint', programmed: 'True' | 'False' | 'none' = 'True', forType: string | null = 'all'): KubeObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace, ...(forType ? { labels: { 'mesh.io/waypoint-for': forType } } : {}) },
    spec: { gatewayClassName: cls, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    ...(programmed !== 'none' ? { status: { conditions: [{ type: 'Programmed', status: programmed, reason: 'Programmed', message: '' }] } } : {}),
  };
}

/** The EndpointSlice of a waypoint's Service with one endpoint, ready or not. */
export function waypointSlice(namespace: string, name: string, ready = true): k8s.V1EndpointSlice {
  return {
    metadata: { name: `${name}-abc`, namespace, labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.101.0.99'], conditions: { ready } }],
    ports: [{ name: 'mesh', port: 15008, protocol: 'TCP' }],
  };
}


export function bigSnapshot(pods: number, services: number, policies: number): ClusterSnapshot {
  const namespaces = Array.from({ length: 20 }, (_, i) => ns(`ns${i}`, i % 4 === 3 ? {} : { ...AMBIENT, ...(i % 5 === 0 ? { 'mesh.io/use-waypoint': 'wp' } : {}) }));
  namespaces.push(ns('mesh-system'));
  const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return snapshot({
    namespaces,
    gateways: namespaces.filter((_, i) => i % 5 === 0).map((n) => waypointGateway(n.metadata!.name!, 'wp')),
    pods: Array.from({ length: pods }, (_, i) =>
      pod(`ns${i % 20}`, `app${i % services}-5f6b7c8d9-${i}`, {
        ip: ip(i + 1),
        labels: { app: `app${i % services}`, 'pod-template-hash': '5f6b7c8d9' },
        owner: { kind: 'ReplicaSet', name: `app${i % services}-5f6b7c8d9` },
        ports: [{ name: 'http', containerPort: 8080 }],
      }),
    ),
    services: Array.from({ length: services }, (_, i) =>
      svc(`ns${i % 20}`, `app${i}`, { selector: { app: `app${i}` }, clusterIP: ip(0x600000 + i), ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'grpc', port: 9000 }] }),
    ),
    authorizationPolicies: Array.from({ length: policies }, (_, i) =>
      ap(`ns${i % 20}`, `p${i}`, {
        ...(i % 2 ? { selector: { matchLabels: { app: `app${i}` } } } : {}),
        action: i % 3 ? 'ALLOW' : 'DENY',
        rules: [{ from: [{ source: { principals: [`cluster.local/ns/ns${i % 20}/sa/default`] } }], to: [{ operation: { ports: ['8080'], ...(i % 7 ? {} : { methods: ['GET'] }) } }] }],
      }),
    ),
    peerAuthentications: [pa('mesh-system', 'default', { mtls: { mode: 'STRICT' } }), pa('ns1', 'default', { mtls: { mode: 'PERMISSIVE' } })],
  });
}
