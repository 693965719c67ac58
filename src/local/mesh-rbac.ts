// The mesh's RBAC in the local cluster: daemonset/chart/files/rbac.yaml (what the Helm chart ships, through templates/rbac.yaml) applied
// with the admin's rights, and the controller's credential — a TokenRequest token of
// mesh-system/mesh-controller in a file, read the way an in-cluster client reads its projected
// token — so the controller runs with exactly the rights the chart grants it.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import * as yaml from 'js-yaml';

export const MESH_RBAC_MANIFEST = fileURLToPath(new URL('../../daemonset/chart/files/rbac.yaml', import.meta.url));
/** The Lease rights of leader election, which the chart adds when controller.replicas > 1. */
export const LEADER_ELECTION_MANIFEST = fileURLToPath(new URL('../../daemonset/chart/files/leader-election.yaml', import.meta.url));
export const CONTROLLER_SA = { namespace: 'mesh-system', name: 'mesh-controller' };
/** As kubelet's projected tokens; the caller rewrites the file well before this. */
const TOKEN_SECONDS = 24 * 3600;

/** Creates, or replaces, every object of the manifest (needs mesh-system to exist). */
export async function applyMeshRbac(adminKc: k8s.KubeConfig, manifest = MESH_RBAC_MANIFEST): Promise<void> {
  const api = k8s.KubernetesObjectApi.makeApiClient(adminKc);
  for (const doc of yaml.loadAll(readFileSync(manifest, 'utf8'))) {
    if (!doc) continue;
    const obj = doc as k8s.KubernetesObject;
    try {
      await api.create(obj);
    } catch (e) {
      if ((e as { code?: number }).code !== 409) throw e;
      await api.replace(obj);
    }
  }
}

/** Writes a fresh controller token to `path` (aside, then renamed: readers never see half). */
export async function writeControllerToken(adminKc: k8s.KubeConfig, path: string): Promise<void> {
  const core = adminKc.makeApiClient(k8s.CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({ ...CONTROLLER_SA, body: { spec: { expirationSeconds: TOKEN_SECONDS } } });
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.new`, tr.status!.token!, { mode: 0o600 });
  renameSync(`${path}.new`, path);
}

/** A KubeConfig for the API server at `server` that authenticates with the token in `tokenFile`
 * (client-node re-reads it every minute, as for an in-cluster service account). */
export function tokenFileKubeConfig(server: string, caCertPem: string, tokenFile: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'mesh-local', server, caData: Buffer.from(caCertPem).toString('base64'), skipTLSVerify: false }],
    users: [{ name: 'mesh-controller', authProvider: { name: 'tokenFile', config: { tokenFile } } }],
    contexts: [{ name: 'mesh-controller', cluster: 'mesh-local', user: 'mesh-controller' }],
    currentContext: 'mesh-controller',
  });
  return kc;
}
