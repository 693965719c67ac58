// Where meshctl finds the ztunnels' admin servers (/config_dump) for ztunnel-config, status and
// analyze: the address given with --admin; else every node of the local cluster's mesh.json
// (`meshctl dev up`); else, for a mesh installed with the chart, the node pods in mesh-system,
// each reached through a port-forward to its admin port — the admin server listens on the pod's
// loopback, as Istio's ztunnel's does, and istioctl ztunnel-config reaches it the same way. A
// node pod being deleted (the old pod of a DaemonSet rollout) is a ztunnel that is draining.
import { existsSync } from 'node:fs';
import type * as k8s from '@kubernetes/client-node';
import { endpointsPath, loadEndpoints } from './endpoints.ts';
import { KubeCommandError, loadKubeConfig } from './kube.ts';
import { type Forward, forwardPort } from './port-forward.ts';
import { MESH_NAMESPACE } from './relay.ts';

/** ztunnel's admin port in the node pod (MESH_ADMIN_PORT's default), on the pod's loopback. */
export const ZTUNNEL_ADMIN_PORT = 15000;
const NODE_SELECTOR = 'app.kubernetes.io/name=mesh,app.kubernetes.io/component=node';

export type ZtunnelConfigErrorCode =
  | 'MESH_ERR_ZTUNNEL_ADMIN_UNREACHABLE'
  | 'MESH_ERR_ZTUNNEL_ADMIN_STATUS'
  | 'MESH_ERR_ZTUNNEL_DUMP_INVALID'
  | 'MESH_ERR_UNKNOWN_NODE'
  | 'MESH_ERR_NO_ZTUNNEL';

/** Why a ztunnel's config could not be shown, with what to check. */
export class ZtunnelConfigError extends Error {
  readonly code: ZtunnelConfigErrorCode;
  override name = 'ZtunnelConfigError';

  constructor(code: ZtunnelConfigErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export interface Target {
  node: string | undefined;
  admin: string;
  /** A ztunnel a newer one replaced, serving its established connections until they end. */
  draining?: boolean;
  /** The node pod it runs in, when reached through the Kubernetes API. */
  pod?: string;
}

export interface ZtunnelAccess {
  /** The ztunnels serving their nodes (one per node, or --node's). */
  serving: Target[];
  /** Ztunnels a rollout replaced that are still draining. */
  draining: Target[];
  /** How they were found, for messages. */
  via: string;
  /** Ends the port-forwards, if any were opened. */
  close(): void;
}

export interface ZtunnelAccessOptions {
  stateDir: string;
  node?: string | undefined;
  admin?: string | undefined;
  kubeconfig?: string | undefined;
  context?: string | undefined;
  /** The cluster's kubeconfig when the caller has it loaded already. */
  kc?: k8s.KubeConfig;
  /** Only the draining ztunnels are wanted (no port-forwards to the serving ones). */
  drainingOnly?: boolean;
}

export async function ztunnelAccess(o: ZtunnelAccessOptions): Promise<ZtunnelAccess> {
  if (o.admin) return { serving: [{ node: o.node, admin: o.admin }], draining: [], via: '--admin', close: () => {} };
  if (existsSync(endpointsPath(o.stateDir))) return { ...localTargets(o.stateDir, o.node), via: endpointsPath(o.stateDir), close: () => {} };
  return forwardToNodePods(o);
}

/** The ztunnels the local cluster recorded in mesh.json. */
export function localTargets(stateDir: string, node?: string): { serving: Target[]; draining: Target[] } {
  const endpoints = loadEndpoints(stateDir);
  const file = endpointsPath(stateDir);
  const known = Object.keys(endpoints.nodes).sort();
  const adminOf = (n: string): string => {
    const a = endpoints.nodes[n]?.ztunnelAdmin;
    if (typeof a !== 'string' || a === '') throw new Error(`${file} records no ztunnelAdmin address for node ${n}: is its ztunnel running? (\`meshctl dev status\`)`);
    return a;
  };
  if (node !== undefined && !Object.hasOwn(endpoints.nodes, node)) {
    throw new ZtunnelConfigError(
      'MESH_ERR_UNKNOWN_NODE',
      known.length
        ? `no node "${node}" in ${file}; known nodes: ${known.join(', ')}`
        : `no node "${node}" in ${file}: it records no nodes (is the local cluster up? \`meshctl dev status\`)`,
    );
  }
  if (known.length === 0) throw new Error(`${file} records no nodes: is the local cluster up? (\`meshctl dev status\`)`);
  const nodes = node === undefined ? known : [node];
  return {
    serving: nodes.map((n) => ({ node: n, admin: adminOf(n) })),
    draining: nodes.flatMap((n) => (endpoints.nodes[n]?.ztunnelDraining ?? []).map((admin) => ({ node: n, admin, draining: true }))),
  };
}

/** Which node pods to ask: running ones, by node; a pod being deleted is a draining ztunnel. */
export function nodePodTargets(pods: readonly k8s.V1Pod[], node?: string): { serving: k8s.V1Pod[]; draining: k8s.V1Pod[] } {
  const running = pods.filter((p) => p.status?.phase === 'Running' && p.spec?.nodeName && (node === undefined || p.spec.nodeName === node));
  const byName = (a: k8s.V1Pod, b: k8s.V1Pod) => (a.spec!.nodeName! < b.spec!.nodeName! ? -1 : a.spec!.nodeName! > b.spec!.nodeName! ? 1 : 0);
  return {
    serving: running.filter((p) => !p.metadata?.deletionTimestamp).sort(byName),
    draining: running.filter((p) => p.metadata?.deletionTimestamp).sort(byName),
  };
}

async function forwardToNodePods(o: ZtunnelAccessOptions): Promise<ZtunnelAccess> {
  const kc = o.kc ?? await loadKubeConfig({ stateDir: o.stateDir, ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}), ...(o.context ? { context: o.context } : {}) });
  const { CoreV1Api } = await import('@kubernetes/client-node');
  let pods: k8s.V1Pod[];
  try {
    pods = (await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: MESH_NAMESPACE, labelSelector: NODE_SELECTOR })).items;
  } catch (e) {
    throw new KubeCommandError('MESH_ERR_KUBE_API', `cannot list the node pods in ${MESH_NAMESPACE} (${kc.getCurrentCluster()?.server ?? 'no server'}): ${(e as Error).message}`, { cause: e });
  }
  const chosen = nodePodTargets(pods, o.node);
  if (chosen.serving.length === 0 && chosen.draining.length === 0) {
    const where = o.node === undefined ? '' : ` on node ${o.node}`;
    const seen = pods.map((p) => `${p.metadata?.name} on ${p.spec?.nodeName ?? '?'} (${p.status?.phase ?? 'unknown'})`).join(', ');
    throw new ZtunnelConfigError(
      o.node !== undefined && pods.length ? 'MESH_ERR_UNKNOWN_NODE' : 'MESH_ERR_NO_ZTUNNEL',
      `no running mesh node pod${where} in ${MESH_NAMESPACE}${seen ? ` (${seen})` : ''} and no local cluster state in ${o.stateDir} — ` +
        'is the mesh installed (`helm install mesh daemonset/chart -n mesh-system --create-namespace`, or `meshctl dev up`)? Or pass --admin host:port',
    );
  }
  const forwards: Forward[] = [];
  const close = () => {
    for (const f of forwards) f.close();
  };
  try {
    const target = async (p: k8s.V1Pod, draining: boolean): Promise<Target> => {
      const f = await forwardPort(kc, MESH_NAMESPACE, p.metadata!.name!, ZTUNNEL_ADMIN_PORT);
      forwards.push(f);
      return { node: p.spec!.nodeName!, admin: f.address, pod: `${MESH_NAMESPACE}/${p.metadata!.name!}`, ...(draining ? { draining } : {}) };
    };
    return {
      serving: o.drainingOnly ? [] : await Promise.all(chosen.serving.map((p) => target(p, false))),
      draining: await Promise.all(chosen.draining.map((p) => target(p, true))),
      via: `port-forwards to the node pods in ${MESH_NAMESPACE}`,
      close,
    };
  } catch (e) {
    close();
    throw e;
  }
}
