// How meshctl reaches the controller's flow relay (status, flows, check --post-install): the
// address given with --server; else the one the local cluster's daemon recorded in mesh.json
// (`meshctl dev up`); else, for a mesh installed with the chart, through the Kubernetes API: the
// controller pod in mesh-system (by its chart labels) and a port-forward to its relay port (the
// relay listens on the pod's loopback by default, as hubble-relay's users reach it), with
// client-node's PortForward — what `kubectl -n mesh-system port-forward deploy/mesh-controller
// 4245` does, without asking the user to run it.
import { existsSync } from 'node:fs';
import { endpointsPath, loadEndpoints } from './endpoints.ts';
import { KubeCommandError, loadKubeConfig } from './kube.ts';
import { forwardPort } from './port-forward.ts';

/** The relay's port in the controller pod (MESH_RELAY_PORT's default, the chart's `relay` port). */
export const RELAY_PORT = 4245;
export const MESH_NAMESPACE = 'mesh-system';
const CONTROLLER_SELECTOR = 'app.kubernetes.io/name=mesh,app.kubernetes.io/component=controller';

export interface RelayAccess {
  /** host:port to dial. */
  address: string;
  /** How it was found, for messages ("mesh.json", "port-forward to mesh-system/…"). */
  via: string;
  /** Ends the port-forward, if one was opened. */
  close(): void;
}

export interface RelayOptions {
  server?: string;
  stateDir: string;
  kubeconfig?: string | undefined;
  context?: string | undefined;
  /** The cluster's kubeconfig when the caller has it loaded already. */
  kc?: import('@kubernetes/client-node').KubeConfig;
}

export async function relayAccess(o: RelayOptions): Promise<RelayAccess> {
  if (o.server) return { address: o.server, via: '--server', close: () => {} };
  if (existsSync(endpointsPath(o.stateDir))) {
    const relay = loadEndpoints(o.stateDir).relay;
    if (!relay) throw new Error(`the mesh recorded in ${endpointsPath(o.stateDir)} has no flow relay address; pass --server host:port`);
    return { address: relay, via: endpointsPath(o.stateDir), close: () => {} };
  }
  return forwardToController(o);
}

/** A local port forwarded to the relay port of a ready controller pod. */
async function forwardToController(o: RelayOptions): Promise<RelayAccess> {
  const kc = o.kc ?? await loadKubeConfig({ stateDir: o.stateDir, ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}), ...(o.context ? { context: o.context } : {}) });
  const k8s = await import('@kubernetes/client-node');
  const core = kc.makeApiClient(k8s.CoreV1Api);
  let pods: import('@kubernetes/client-node').V1Pod[];
  try {
    pods = (await core.listNamespacedPod({ namespace: MESH_NAMESPACE, labelSelector: CONTROLLER_SELECTOR })).items;
  } catch (e) {
    throw new KubeCommandError('MESH_ERR_KUBE_API', `cannot list the controller pods in ${MESH_NAMESPACE} (${kc.getCurrentCluster()?.server ?? 'no server'}): ${(e as Error).message}`, { cause: e });
  }
  const ready = pods.find((p) => !p.metadata?.deletionTimestamp && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
  if (!ready) {
    const seen = pods.map((p) => `${p.metadata?.name} (${p.status?.phase ?? 'unknown'})`).join(', ');
    throw new Error(
      `no mesh found: no local cluster state in ${o.stateDir} and ${seen ? `no ready controller pod in ${MESH_NAMESPACE} (${seen})` : `no controller pod in ${MESH_NAMESPACE}`} — ` +
        'install it with `helm install mesh daemonset/chart -n mesh-system --create-namespace`, start the local cluster with `meshctl dev up`, or pass --server host:port',
    );
  }
  const name = ready.metadata!.name!;
  const forward = await forwardPort(kc, MESH_NAMESPACE, name, RELAY_PORT);
  return {
    address: forward.address,
    via: `port-forward to ${MESH_NAMESPACE}/${name}:${RELAY_PORT}`,
    close: forward.close,
  };
}
