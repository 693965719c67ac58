// The label set of Istio's L4 metrics, as ztunnel fills it (istio/ztunnel src/proxy/metrics.rs,
// CommonTrafficLabels), so that Istio's dashboards and PromQL work unchanged. A value nobody knows
// is "unknown" (ztunnel's DefaultedUnknown). ztunnel also emits source_/destination_
// canonical_service and canonical_revision (Kiali groups by them); we do too.
//
// Istio's request metrics (istio_requests_total, …) carry the same set plus response_code and
// grpc_response_status (istio/proxy istio_stats.cc, all_tags_): requestLabels() builds on
// trafficLabels() for the waypoint.
import { formatSpiffeId, type SpiffeId } from '../identity/index.ts';
import type { Service, Workload } from '../xds/index.ts';

export const LABEL_NAMES = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

export type LabelName = (typeof LABEL_NAMES)[number];
export type TrafficLabels = Record<LabelName, string>;

/** "waypoint" is what Istio's waypoints report (istio_stats.cc, waypoint_). */
export type Reporter = 'source' | 'destination' | 'waypoint';
/**
 * response_flags values. ztunnel emits "-" (none), DENY (authorization policy) and CONNECT (the
 * upstream connection failed); TLS_FAILURE is ours for a failed mTLS handshake (Envoy's name for
 * it, "UF,URX"-style short codes are not used by ztunnel).
 */
export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'TLS_FAILURE';
export const RESPONSE_FLAGS: readonly ResponseFlag[] = ['-', 'DENY', 'CONNECT', 'TLS_FAILURE'];
export type SecurityPolicy = 'mutual_tls' | 'unknown';

export const UNKNOWN = 'unknown';

/** What ztunnel learned about the peer from the connection itself (HBONE baggage + mTLS
 * identity), used when the source is not in its workload state (ztunnel's DerivedWorkload). */
export interface DerivedSource {
  workloadName?: string;
  app?: string;
  revision?: string;
  namespace?: string;
  cluster?: string;
}

export interface TrafficLabelInput {
  reporter: Reporter;
  /** The source workload, when ztunnel knows it (by address). */
  source?: Workload | undefined;
  /** The peer's verified identity; the only source of source_principal (ztunnel does not trust
   * the workload state for it). */
  sourceIdentity?: SpiffeId | undefined;
  derivedSource?: DerivedSource | undefined;
  destination?: Workload | undefined;
  /** The service the client addressed (by VIP), if any. */
  destinationService?: Pick<Service, 'hostname' | 'name' | 'namespace'> | undefined;
  mtls: boolean;
}

const v = (s: string | undefined): string => (s ? s : UNKNOWN);

export function workloadPrincipal(w: Pick<Workload, 'trustDomain' | 'namespace' | 'serviceAccount'>): string | undefined {
  return w.trustDomain && w.namespace && w.serviceAccount ? `spiffe://${w.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}` : undefined;
}

/** Builds the label set like ztunnel's From<ConnectionOpen>: derived source first, then the
 * known source workload over it, then destination and service. */
export function trafficLabels(i: TrafficLabelInput): TrafficLabels {
  const l = emptyLabels(i.reporter);
  l.connection_security_policy = i.mtls ? 'mutual_tls' : 'unknown';
  const d = i.derivedSource;
  if (d) {
    l.source_workload = v(d.workloadName);
    l.source_canonical_service = v(d.app);
    l.source_canonical_revision = v(d.revision);
    l.source_workload_namespace = v(d.namespace);
    l.source_app = v(d.workloadName);
    l.source_version = v(d.revision);
    l.source_cluster = v(d.cluster);
  }
  if (i.sourceIdentity) l.source_principal = formatSpiffeId(i.sourceIdentity);
  const s = i.source;
  if (s) {
    l.source_workload = v(s.workloadName);
    l.source_canonical_service = v(s.canonicalName);
    l.source_canonical_revision = v(s.canonicalRevision);
    l.source_workload_namespace = v(s.namespace);
    l.source_app = v(s.canonicalName);
    l.source_version = v(s.canonicalRevision);
    l.source_cluster = v(s.clusterId);
  }
  const w = i.destination;
  if (w) {
    l.destination_workload = v(w.workloadName);
    l.destination_canonical_service = v(w.canonicalName);
    l.destination_canonical_revision = v(w.canonicalRevision);
    l.destination_workload_namespace = v(w.namespace);
    l.destination_principal = v(workloadPrincipal(w));
    l.destination_app = v(w.canonicalName);
    l.destination_version = v(w.canonicalRevision);
    l.destination_cluster = v(w.clusterId);
  }
  const svc = i.destinationService;
  if (svc) {
    l.destination_service = v(svc.hostname);
    l.destination_service_name = v(svc.name);
    l.destination_service_namespace = v(svc.namespace);
  }
  return l;
}

const TEMPLATE: Readonly<TrafficLabels> = Object.freeze({ ...(Object.fromEntries(LABEL_NAMES.map((n) => [n, UNKNOWN])) as TrafficLabels), request_protocol: 'tcp', response_flags: '-' });

/** Every label "unknown" but the reporter, request_protocol "tcp" and response_flags "-". */
export function emptyLabels(reporter: Reporter): TrafficLabels {
  return { ...TEMPLATE, reporter };
}

/** The request metrics' labels: the L4 set plus the response's code and gRPC status. */
export const REQUEST_LABEL_NAMES = [...LABEL_NAMES, 'response_code', 'grpc_response_status'] as const;
export type RequestLabelName = (typeof REQUEST_LABEL_NAMES)[number];
export type RequestLabels = Record<RequestLabelName, string>;

export interface RequestLabelInput extends TrafficLabelInput {
  /** request_protocol: "grpc" for application/grpc*, else "http". */
  protocol: 'http' | 'grpc';
  /** response_code; 0 when no response was sent (the client went away), as Envoy reports it. */
  responseCode: number;
  /** grpc_response_status: the grpc-status code as text, '' for a request that is not gRPC
   * (Istio leaves the label empty then). */
  grpcStatus: string;
  /** response_flags: Envoy's short codes ("-", "UH", "RBAC", "UO,URX"…). */
  flags: string;
}

export function requestLabels(i: RequestLabelInput): RequestLabels {
  const l = trafficLabels(i) as RequestLabels;
  l.request_protocol = i.protocol;
  l.response_flags = i.flags || '-';
  l.response_code = String(i.responseCode);
  l.grpc_response_status = i.grpcStatus;
  return l;
}

/** The value of workload-level labels in a series folded because a family reached its series
 * limit. */
export const OVERFLOW = 'overflow';
/** Labels kept exact on overflow: bounded by the cluster's namespaces and clusters and by the
 * protocol, never by workloads. */
const KEPT_ON_OVERFLOW: ReadonlySet<string> = new Set([
  'reporter',
  'source_workload_namespace',
  'destination_workload_namespace',
  'destination_service_namespace',
  'source_cluster',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
  'response_code',
  'grpc_response_status',
]);

/** The label set a series folds into past the limit: workload-level labels read "overflow". */
export function overflowLabels<L extends Partial<RequestLabels>>(l: L): L {
  return Object.fromEntries(Object.entries(l).map(([k, v]) => [k, KEPT_ON_OVERFLOW.has(k) ? v : OVERFLOW])) as L;
}

/** A series' identity: its values in `names` order. */
export function seriesKey(l: Partial<Record<RequestLabelName, string>>, names: readonly RequestLabelName[]): string {
  let k = '';
  for (const n of names) k += `${l[n]}\u0000`;
  return k;
}
