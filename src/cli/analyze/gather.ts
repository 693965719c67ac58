// What `meshctl analyze` reads: every object the controller's model is built from (through the
// kubeconfig, as kubectl would), the flows the controller's relay keeps, and each ztunnel's
// certificates from its admin server. Flows and certificates are best effort: when they cannot be
// read the analysis says so as a finding instead of failing.
import type * as k8s from '@kubernetes/client-node';
import { buildModel, type ClusterSnapshot, type KubeObject } from '../../controller/model/index.ts';
import type { Flow, GetFlowsResponse } from '../../flows/types.ts';
import { fetchDump } from '../commands/ztunnel-config.ts';
import { apiError, httpStatus } from '../kube.ts';
import { relayAccess } from '../relay.ts';
import { ztunnelAccess } from '../ztunnels.ts';
import type { AnalyzeInput } from './rules.ts';

/** Custom kinds, each read as empty while its CRD is not installed. */
const CUSTOM = [
  { key: 'gateways', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways' },
  { key: 'httpRoutes', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes' },
  { key: 'grpcRoutes', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes' },
  { key: 'referenceGrants', group: 'gateway.networking.k8s.io', version: 'v1beta1', plural: 'referencegrants' },
  { key: 'trafficPolicies', group: 'networking.mesh.io', version: 'v1alpha1', plural: 'trafficpolicies' },
  { key: 'authorizationPolicies', group: 'security.mesh.io', version: 'v1', plural: 'authorizationpolicies' },
  { key: 'peerAuthentications', group: 'security.mesh.io', version: 'v1', plural: 'peerauthentications' },
] as const;

export async function readSnapshot(kc: k8s.KubeConfig): Promise<ClusterSnapshot> {
  const k = await import('@kubernetes/client-node');
  const core = kc.makeApiClient(k.CoreV1Api);
  const discovery = kc.makeApiClient(k.DiscoveryV1Api);
  const custom = kc.makeApiClient(k.CustomObjectsApi);
  const [namespaces, pods, services, slices, nodes] = await Promise.all([
    core.listNamespace(),
    core.listPodForAllNamespaces(),
    core.listServiceForAllNamespaces(),
    discovery.listEndpointSliceForAllNamespaces(),
    // Nodes are cluster-scoped and often not readable by namespace users; no rule needs them.
    core.listNode().catch(() => ({ items: [] as k8s.V1Node[] })),
  ]).catch((err: unknown) => {
    throw apiError('reading namespaces, pods, services and endpoint slices', kc, err);
  });
  const customs = await Promise.all(
    CUSTOM.map(async (c) => {
      try {
        const list = (await custom.listClusterCustomObject({ group: c.group, version: c.version, plural: c.plural })) as { items?: KubeObject[] };
        return [c.key, list.items ?? []] as const;
      } catch (err) {
        // A CRD that is not installed: nothing of that kind to analyze.
        if (httpStatus(err) === 404) return [c.key, []] as const;
        throw apiError(`listing ${c.plural}.${c.group}`, kc, err);
      }
    }),
  );
  const byKey = Object.fromEntries(customs) as Record<(typeof CUSTOM)[number]['key'], KubeObject[]>;
  return {
    namespaces: namespaces.items,
    pods: pods.items,
    services: services.items,
    endpointSlices: slices.items,
    nodes: nodes.items,
    ...byKey,
  };
}

/** The DROPPED flows the relay still keeps (since `sinceNs` when given). */
export async function readDroppedFlows(kc: k8s.KubeConfig, o: { server?: string | undefined; stateDir: string; sinceNs?: number | undefined }): Promise<Flow[]> {
  // --server, else the local cluster's mesh.json, else a port-forward to the controller pod.
  const access = await relayAccess({ server: o.server, stateDir: o.stateDir, kc });
  const address = access.address;
  const { credentials } = await import('@grpc/grpc-js');
  const { observerClient } = await import('../../flows/server.ts');
  const client = observerClient(address, credentials.createInsecure());
  try {
    return await new Promise<Flow[]>((resolve, reject) => {
      client.waitForReady(Date.now() + 5000, (err) => {
        if (err) return reject(new Error(`cannot reach the flow relay at ${address}: ${err.message}`));
        const out: Flow[] = [];
        const stream = client.GetFlows({ number: 0, whitelist: [{ verdict: ['DROPPED'] }], ...(o.sinceNs ? { sinceUnixNano: o.sinceNs } : {}) }, { deadline: Date.now() + 20_000 });
        stream.on('data', (r: GetFlowsResponse) => {
          if (r.responseTypes === 'flow') out.push(r.flow);
        });
        stream.on('error', (e: Error & { details?: string }) => reject(new Error(`flow relay at ${address}: ${e.details || e.message}`)));
        stream.on('end', () => resolve(out));
      });
    });
  } finally {
    client.close();
    access.close();
  }
}

/** Each ztunnel's certificates: --admin addresses, else every node of the local cluster's mesh.json,
 *  else every node pod of the cluster (through port-forwards). */
export async function readCertificates(kc: k8s.KubeConfig, o: { admin: string[]; stateDir: string }): Promise<{ node: string; certificates: NonNullable<Awaited<ReturnType<typeof fetchDump>>['dump']['certificates']> }[]> {
  const access = o.admin.length ? undefined : await ztunnelAccess({ stateDir: o.stateDir, kc });
  const ts = access?.serving ?? o.admin.map((admin) => ({ node: undefined, admin }));
  try {
    const dumps = await Promise.all(ts.map((t) => fetchDump(t)));
    return dumps.map((d, i) => ({ node: d.node ?? ts[i]!.admin, certificates: d.dump.certificates }));
  } finally {
    access?.close();
  }
}

export interface GatherOptions {
  stateDir: string;
  server?: string | undefined;
  admin: string[];
  sinceNs?: number | undefined;
  now?: Date;
}

export async function gather(kc: k8s.KubeConfig, o: GatherOptions): Promise<AnalyzeInput> {
  const [snapshot, flows, certificates] = await Promise.all([
    readSnapshot(kc),
    readDroppedFlows(kc, o).catch((e: Error) => ({ error: e.message })),
    readCertificates(kc, o).catch((e: Error) => ({ error: e.message })),
  ]);
  return { snapshot, model: buildModel(snapshot), flows, certificates, now: o.now ?? new Date() };
}
