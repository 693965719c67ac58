// What the controller writes into the cluster on its own — the CA's self-signed root Secret, the
// trust bundle ConfigMap in every namespace, its Leases, the mesh-waypoint GatewayClass — carries an
// ownerReference to the chart's ClusterRole (MESH_OWNER_CLUSTER_ROLE), so that `helm uninstall`,
// which deletes that ClusterRole, has the garbage collector delete them too: nothing the mesh made
// outlives it, and no hook Job has to race the controller's own shutdown. A namespaced object may
// have a cluster-scoped owner (apimachinery's ownerReferences rules); the reverse is not allowed.
// Set once, before the controller writes anything; unset (tests, the local mesh without the
// chart) the objects are written without an owner, as before.
import * as k8s from '@kubernetes/client-node';
import { logger } from '../common/log.ts';

const log = logger('controller');
let owner: k8s.V1OwnerReference | undefined;

/** Reads the ClusterRole `name` (its uid); without it (403/404) the objects get no owner. */
export async function resolveInstallOwner(kc: k8s.KubeConfig, name: string): Promise<void> {
  try {
    const role = await kc.makeApiClient(k8s.RbacAuthorizationV1Api).readClusterRole({ name });
    owner = { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', name, uid: role.metadata!.uid! };
    log.info({ clusterRole: name, uid: owner.uid }, "the objects the controller makes are owned by the chart's ClusterRole: helm uninstall removes them");
  } catch (e) {
    owner = undefined;
    log.warn({ clusterRole: name, err: (e as Error).message }, 'cannot read the owner ClusterRole (MESH_OWNER_CLUSTER_ROLE): the objects the controller makes will outlive an uninstall');
  }
}

/** `{ ownerReferences }` for an object's metadata, or nothing when no owner is set. */
export function installOwner(): { ownerReferences?: k8s.V1OwnerReference[] } {
  return owner ? { ownerReferences: [{ ...owner }] } : {};
}
