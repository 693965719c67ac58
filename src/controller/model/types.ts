// The model's input (a snapshot of the Kubernetes objects the controller watches), its options
// and its output (the config stream's resources plus the status to write back on our CRDs).
import type * as k8s from '@kubernetes/client-node';
import type { Authorization, L7Authorization, Route, Service, Workload } from '../../xds/index.ts';
import type { RouteStatus } from './routes.ts';

/** Any Kubernetes object read as JSON (Gateway API and our CRDs have no generated types here). */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: k8s.V1ObjectMeta;
  spec?: unknown;
  status?: unknown;
}

/** Everything the model is built from; the controller's informer caches at one instant. */
export interface ClusterSnapshot {
  namespaces: k8s.V1Namespace[];
  pods: k8s.V1Pod[];
  services: k8s.V1Service[];
  endpointSlices: k8s.V1EndpointSlice[];
  nodes: k8s.V1Node[];
  /** gateway.networking.k8s.io/v1 */
  gateways: KubeObject[];
  httpRoutes: KubeObject[];
  grpcRoutes?: KubeObject[];
  /** gateway.networking.k8s.io/v1beta1: permits cross-namespace backendRefs. */
  referenceGrants?: KubeObject[];
  /** networking.mesh.io/v1alpha1 */
  trafficPolicies?: KubeObject[];
  /** security.mesh.io/v1, Istio's security/v1 schema. */
  authorizationPolicies: KubeObject[];
  peerAuthentications: KubeObject[];
}

export interface ModelOptions {
  /** The SPIFFE trust domain of workload identities; "cluster.local" as in Istio. */
  trustDomain: string;
  /** Istio's cluster_id, the first part of every workload uid; "Kubernetes" as in Istio. */
  clusterId: string;
  /** Policies here are mesh-wide (GLOBAL), as in istio-system. */
  rootNamespace: string;
  /** The cluster DNS domain of service hostnames; "cluster.local" unless the cluster was built otherwise. */
  clusterDomain?: string;
}

export const DEFAULT_MODEL_OPTIONS: Readonly<Required<ModelOptions>> = Object.freeze({
  trustDomain: 'cluster.local',
  clusterId: 'Kubernetes',
  rootNamespace: 'mesh-system',
  clusterDomain: 'cluster.local',
});

/** A metav1.Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration: number;
  /**
   * Left unset by the model, which is a pure function of the snapshot (a clock would make equal
   * snapshots give unequal statuses). mergeConditions() fills it when the status is written.
   */
  lastTransitionTime?: string;
}

/** What the controller writes to an AuthorizationPolicy's or PeerAuthentication's `.status`. */
export interface PolicyStatus {
  conditions: Condition[];
}

/**
 * One waypoint as its users reference it (label mesh.io/use-waypoint). A waypoint that is missing
 * is still set on its users' resources, by a hostname that resolves to no Service, so ztunnel
 * refuses their traffic instead of bypassing the waypoint (DESIGN.md "Policy": a missing waypoint
 * fails closed); this entry is how the controller and meshctl tell the operator why.
 */
export interface WaypointUse {
  /** "namespace/name" of the Gateway. */
  gateway: string;
  /** "namespace/hostname", the Service key used in GatewayAddress.hostname. */
  hostname: string;
  /** A Gateway of class mesh-waypoint with this name exists. */
  found: boolean;
  /** It exists, is Programmed and its Service has a ready endpoint: it carries its users' traffic. */
  ready: boolean;
  /** Why it cannot take traffic, when it cannot ("" when ready). */
  problem: string;
  /** Who references it: "Namespace/<ns>", "Service/<ns>/<name>", "Pod/<ns>/<name>", sorted. */
  users: string[];
  /** "kind/ns/name" of the policies handed to this waypoint for L7 enforcement, sorted. */
  policies: string[];
}

/** The whole model. Every map is in key order and every list sorted: equal input, equal output. */
export interface MeshModel {
  /** By uid ("<cluster>//v1/Pod/<ns>/<name>"). */
  workloads: Map<string, Workload>;
  /** By "namespace/hostname". */
  services: Map<string, Service>;
  /** By "namespace/name"; names compiled from PeerAuthentications contain "_" (never a Kubernetes name). */
  authorizations: Map<string, Authorization>;
  /** By "AuthorizationPolicy/ns/name" or "PeerAuthentication/ns/name": every input policy has one. */
  policyStatus: Map<string, PolicyStatus>;
  /** By "namespace/name" of the Gateway: every waypoint that something asks for. */
  waypoints: Map<string, WaypointUse>;
  /** By routeName() ("namespace/hostname"): every Service with an accepted route or a TrafficPolicy (routes.ts). */
  routes: Map<string, Route>;
  /** By "namespace/name": the AuthorizationPolicies waypoints enforce (l7authz.ts). */
  l7Authorizations: Map<string, L7Authorization>;
  /** By "HTTPRoute/ns/name" or "GRPCRoute/ns/name": our entries of each route's status.parents. */
  routeStatus: Map<string, RouteStatus>;
  /** By "TrafficPolicy/ns/name". */
  trafficPolicyStatus: Map<string, PolicyStatus>;
}

/** Labels and names the model reads. */
export const LABEL_DATAPLANE_MODE = 'mesh.io/dataplane-mode';
export const LABEL_USE_WAYPOINT = 'mesh.io/use-waypoint';
/** On a waypoint Gateway: the traffic it takes, service (default), workload, all or none. */
export const LABEL_WAYPOINT_FOR = 'mesh.io/waypoint-for';
/** Istio's istio.io/use-waypoint-namespace: the waypoint lives in another namespace. */
export const LABEL_USE_WAYPOINT_NAMESPACE = 'mesh.io/use-waypoint-namespace';
/** Comma-separated identities a Service's workloads may present besides their own (Istio: alpha.istio.io/kubernetes-serviceaccounts). */
export const ANNOTATION_SUBJECT_ALT_NAMES = 'mesh.io/subject-alt-names';
/** Istio's istio.io/dry-run: evaluate and log, do not enforce. */
export const ANNOTATION_DRY_RUN = 'mesh.io/dry-run';
export const WAYPOINT_CLASS = 'mesh-waypoint';
/** Set by the Gateway API deployer on the pods of a Gateway: a waypoint never routes through itself. */
export const LABEL_GATEWAY_NAME = 'gateway.networking.k8s.io/gateway-name';
/** A waypoint's HBONE port: ztunnel's (src/common/constants.ts). */
export { HBONE_PORT } from '../../common/constants.ts';
