// The part of the cluster meshctl needs to say who uses which waypoint and whether it can take
// their traffic: one list of each kind, fed to the controller's own model (buildModel), so that
// `meshctl waypoint status` and `meshctl check --post-install` give the controller's verdict.
import type * as k8s from '@kubernetes/client-node';
import { buildModel, type ClusterSnapshot, type KubeObject, LABEL_USE_WAYPOINT, type MeshModel, readyServices, Waypoints } from '../controller/model/index.ts';
import { apiError, GATEWAY_API_INSTALL, httpStatus, KubeCommandError } from './kube.ts';
import { GATEWAY_GROUP, GATEWAY_PLURAL, GATEWAY_VERSION } from './waypoint.ts';

export interface WaypointView {
  snapshot: ClusterSnapshot;
  model: MeshModel;
  /** The Gateway API CRDs are installed (gateways are served). */
  gatewayApi: boolean;
}

/** Whether gateway.networking.k8s.io/v1 serves gateways (discovery, as kubectl asks). */
export async function gatewayApiServed(kc: k8s.KubeConfig): Promise<boolean> {
  const { CustomObjectsApi } = await import('@kubernetes/client-node');
  try {
    const list = await kc.makeApiClient(CustomObjectsApi).getAPIResources({ group: GATEWAY_GROUP, version: GATEWAY_VERSION });
    return list.resources.some((r) => r.name === GATEWAY_PLURAL);
  } catch (err) {
    if (httpStatus(err) === 404) return false;
    throw apiError(`reading the API group ${GATEWAY_GROUP}/${GATEWAY_VERSION}`, kc, err);
  }
}

/** Fails with the install command when the Gateway API CRDs are missing. */
export async function requireGatewayApi(kc: k8s.KubeConfig): Promise<void> {
  if (!(await gatewayApiServed(kc))) {
    throw new KubeCommandError('MESH_ERR_GATEWAY_API_MISSING', `the cluster does not serve ${GATEWAY_GROUP}/${GATEWAY_VERSION} Gateways, which declare waypoints: ${GATEWAY_API_INSTALL}`);
  }
}

/** Gateways in `namespace`, or in every namespace when it is undefined. */
export async function listGateways(kc: k8s.KubeConfig, namespace?: string): Promise<KubeObject[]> {
  const { CustomObjectsApi } = await import('@kubernetes/client-node');
  const api = kc.makeApiClient(CustomObjectsApi);
  const base = { group: GATEWAY_GROUP, version: GATEWAY_VERSION, plural: GATEWAY_PLURAL };
  try {
    const list = (namespace === undefined ? await api.listClusterCustomObject(base) : await api.listNamespacedCustomObject({ ...base, namespace })) as { items?: KubeObject[] };
    return list.items ?? [];
  } catch (err) {
    throw apiError(`listing Gateways${namespace === undefined ? '' : ` in namespace ${namespace}`}`, kc, err);
  }
}

/** Every object the waypoint verdicts depend on, and the controller's model of them. */
export async function readWaypointView(kc: k8s.KubeConfig): Promise<WaypointView> {
  const k = await import('@kubernetes/client-node');
  const core = kc.makeApiClient(k.CoreV1Api);
  const discovery = kc.makeApiClient(k.DiscoveryV1Api);
  const gatewayApi = await gatewayApiServed(kc);
  const [namespaces, pods, services, slices, gateways] = await Promise.all([
    core.listNamespace(),
    core.listPodForAllNamespaces(),
    core.listServiceForAllNamespaces(),
    discovery.listEndpointSliceForAllNamespaces(),
    gatewayApi ? listGateways(kc) : Promise.resolve([]),
  ]).catch((err: unknown) => {
    throw apiError('reading namespaces, pods, services and endpoint slices', kc, err);
  });
  const snapshot: ClusterSnapshot = {
    namespaces: namespaces.items,
    pods: pods.items,
    services: services.items,
    endpointSlices: slices.items,
    nodes: [],
    gateways,
    // Routes and policies do not change who uses a waypoint or whether it is ready.
    httpRoutes: [],
    authorizationPolicies: [],
    peerAuthentications: [],
  };
  return { snapshot, model: buildModel(snapshot), gatewayApi };
}

/** Why waypoint `namespace/name` cannot take traffic ("" when it can), as the controller decides it, whether or not anything uses it. */
export function waypointProblem(snapshot: ClusterSnapshot, namespace: string, name: string): string {
  const w = new Waypoints(snapshot.gateways, 'cluster.local', readyServices(snapshot.endpointSlices));
  const ref = w.resolve('', namespace, { [LABEL_USE_WAYPOINT]: name }, {});
  return ref ? w.problem(ref.key) : '';
}
