// The mesh model: Kubernetes objects → the Workloads, Services and Authorizations of the config
// stream (Istio ambient's workload.proto / authorization.proto shapes), plus the status of our
// policy CRDs. A pure library: the controller feeds it informer caches and writes what it returns.
export { buildModel } from './model.ts';
export { IncrementalModel, MODEL_KINDS, type ModelChanges, type ModelKind } from './incremental.ts';
export { ACCEPTED, ENFORCED, mergeConditions, REASON } from './status.ts';
export { STATIC_STRICT } from './peerauthn.ts';
export { appProtocol } from './services.ts';
export { buildRoutes, ROUTE_CONTROLLER, ROUTE_REASON, type ParentRef, type RouteParentStatus, type RouteStatus } from './routes.ts';
export { REASON_UNSUPPORTED_IN_WAYPOINT } from './l7authz.ts';
export { DATAPLANE_MODES, inMesh, isWorkloadPod, notCapturedReason, workloadOwner } from './workloads.ts';
export { readyServices, Waypoints } from './waypoints.ts';
export {
  ANNOTATION_DRY_RUN,
  ANNOTATION_SUBJECT_ALT_NAMES,
  DEFAULT_MODEL_OPTIONS,
  HBONE_PORT,
  LABEL_DATAPLANE_MODE,
  LABEL_GATEWAY_NAME,
  LABEL_USE_WAYPOINT,
  LABEL_USE_WAYPOINT_NAMESPACE,
  WAYPOINT_CLASS,
  type ClusterSnapshot,
  type Condition,
  type KubeObject,
  type MeshModel,
  type ModelOptions,
  type PolicyStatus,
  type WaypointUse,
} from './types.ts';
