// The resources carried by the config stream, as TypeScript sees them: the messages of
// proto/mesh/config.proto decoded by @grpc/proto-loader with camelCase field names, enums as
// strings, every field present (proto3 defaults filled in), bytes as Buffers and an unset message
// field as null. Values handed to ConfigServer.set() may be Uint8Arrays for bytes; a field left at
// its default encodes the same as one omitted, so both get the same version.

import type { L7Authorization, Route } from './routes.ts';

export const TYPE_URL_PREFIX = 'type.googleapis.com/mesh.config.v1.';
export const WORKLOAD = 'type.googleapis.com/mesh.config.v1.Workload';
export const SERVICE = 'type.googleapis.com/mesh.config.v1.Service';
export const AUTHORIZATION = 'type.googleapis.com/mesh.config.v1.Authorization';

export type TunnelProtocol = 'NONE' | 'HBONE';
export type WorkloadStatus = 'HEALTHY' | 'UNHEALTHY';
export type WorkloadType = 'DEPLOYMENT' | 'CRONJOB' | 'POD' | 'JOB';

export interface Port {
  servicePort: number;
  targetPort: number;
  appProtocol: string;
}

export interface PortList {
  ports: Port[];
}

export interface NetworkAddress {
  network: string;
  address: Uint8Array;
}

/** Where a waypoint is reached: by service ("namespace/hostname") or by address. */
export interface GatewayAddress {
  hostname?: string;
  address?: NetworkAddress | null;
  hboneMtlsPort: number;
  /** Set on decoded values: which of hostname / address is used. */
  destination?: 'hostname' | 'address';
}

export interface Workload {
  /** "<cluster>//v1/Pod/<namespace>/<name>" */
  uid: string;
  name: string;
  namespace: string;
  addresses: Uint8Array[];
  hostname: string;
  network: string;
  trustDomain: string;
  serviceAccount: string;
  node: string;
  tunnelProtocol: TunnelProtocol;
  waypoint: GatewayAddress | null;
  canonicalName: string;
  canonicalRevision: string;
  workloadType: WorkloadType;
  workloadName: string;
  status: WorkloadStatus;
  /** "namespace/hostname" → ports (target ports resolved for this pod). */
  services: Record<string, PortList>;
  /** "namespace/name" of the WORKLOAD_SELECTOR Authorizations that select this workload. */
  authorizationPolicies: string[];
  clusterId: string;
  /** The pod's Kubernetes metadata.uid: the node agent finds its cgroup and netns by it. */
  podUid: string;
  /** The pod's labels (decoded values always have them; literals may leave them out). */
  labels?: Record<string, string>;
  /** Why the workload is outside the mesh ('' when it is in it). */
  notCapturedReason?: string;
}

export interface Service {
  name: string;
  namespace: string;
  hostname: string;
  addresses: NetworkAddress[];
  ports: Port[];
  subjectAltNames: string[];
  waypoint: GatewayAddress | null;
}

export type Scope = 'GLOBAL' | 'NAMESPACE' | 'WORKLOAD_SELECTOR';
export type Action = 'ALLOW' | 'DENY';
export type PolicyOrigin = 'AUTHORIZATION_POLICY' | 'PEER_AUTHENTICATION';

/** Exactly one of exact / prefix / suffix / presence. */
export interface StringMatch {
  exact?: string;
  prefix?: string;
  suffix?: string;
  presence?: Record<string, never> | null;
  matchType?: 'exact' | 'prefix' | 'suffix' | 'presence';
}

export interface ServiceAccountMatch {
  namespace: string;
  serviceAccount: string;
}

export interface Cidr {
  address: Uint8Array;
  length: number;
}

export interface Match {
  namespaces: StringMatch[];
  notNamespaces: StringMatch[];
  serviceAccounts: ServiceAccountMatch[];
  notServiceAccounts: ServiceAccountMatch[];
  principals: StringMatch[];
  notPrincipals: StringMatch[];
  sourceIps: Cidr[];
  notSourceIps: Cidr[];
  destinationIps: Cidr[];
  notDestinationIps: Cidr[];
  destinationPorts: number[];
  notDestinationPorts: number[];
}

/** A Match with every list empty (proto3's default); spread over it to set the fields you need. */
export function emptyMatch(): Match {
  return {
    namespaces: [],
    notNamespaces: [],
    serviceAccounts: [],
    notServiceAccounts: [],
    principals: [],
    notPrincipals: [],
    sourceIps: [],
    notSourceIps: [],
    destinationIps: [],
    notDestinationIps: [],
    destinationPorts: [],
    notDestinationPorts: [],
  };
}

/** OR-ed matches. */
export interface Clause {
  matches: Match[];
}

/** AND-ed clauses. */
export interface Rule {
  clauses: Clause[];
}

export interface Authorization {
  name: string;
  namespace: string;
  scope: Scope;
  action: Action;
  /** OR-ed rules. */
  rules: Rule[];
  dryRun: boolean;
  /** PEER_AUTHENTICATION for the DENY policies the controller compiles from STRICT mTLS. */
  origin: PolicyOrigin;
}

/** Type URL → value: the resource types of the mesh config stream. */
export interface MeshTypes {
  [WORKLOAD]: Workload;
  [SERVICE]: Service;
  [AUTHORIZATION]: Authorization;
  // routes.ts's ROUTE and L7_AUTHORIZATION (written out: routes.ts imports this module). Waypoints
  // subscribe to these; ztunnels do not.
  'type.googleapis.com/mesh.config.v1.Route': Route;
  'type.googleapis.com/mesh.config.v1.L7Authorization': L7Authorization;
}

/** Any type URL → value map the generic server and client can carry (e.g. MeshTypes). */
export type ResourceMap = object;

/** The type URLs of a resource map. */
export type TypeUrl<M extends ResourceMap> = keyof M & string;

/** The resource name a value is stored under, by type (the proto's Resource.name contract). */
export function workloadName(w: Pick<Workload, 'uid'>): string {
  return w.uid;
}
export function serviceName(s: Pick<Service, 'namespace' | 'hostname'>): string {
  return `${s.namespace}/${s.hostname}`;
}
