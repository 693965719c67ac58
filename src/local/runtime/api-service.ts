// In-cluster access to the local API server, as pods on a real cluster have it: the `kubernetes`
// Service in default (ClusterIP 10.96.0.1:443, which kube-apiserver makes on a real cluster) has
// one endpoint, the "control-plane" node's address on port 6443, where a listener opened inside
// that node's netns relays each connection to the API server on the host's loopback. Pods reach it
// through the ClusterIP (the node's service DNAT, proxy.ts), so client-node's loadFromCluster()
// and kubectl in a pod work unchanged; TLS is end to end (the serving certificate names the
// ClusterIP, pki.ts). The CA is published in every namespace as ConfigMap kube-root-ca.crt
// (kube-controller-manager's root-ca-cert-publisher), which service-account volumes read.
// Nothing listens in the host's own network namespace beyond what the API server already does.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { socketInNetns } from '../../datapath/index.ts';
import { KUBERNETES_SERVICE_IP } from '../apiserver/index.ts';
import { logger } from '../../common/log.ts';
import type { NodeNet } from '../topology.ts';

const log = logger('api-service');

/** kube-apiserver's secure port, which the `kubernetes` Service targets. */
export const API_SERVICE_TARGET_PORT = 6443;
const SLICE = 'kubernetes';

/** What the kubelet gives every container so that in-cluster clients find the API server. */
export interface ApiServiceEnv {
  KUBERNETES_SERVICE_HOST: string;
  KUBERNETES_SERVICE_PORT: string;
  KUBERNETES_SERVICE_PORT_HTTPS: string;
  KUBERNETES_PORT: string;
}

export class ApiServiceRelay {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private publisher: { stop(): Promise<void> } | undefined;

  private constructor(server: Server) {
    this.server = server;
  }

  /**
   * Opens the relay in `node`'s netns and points the `kubernetes` Service's endpoints at it.
   * Returns the relay and the environment the kubelet gives containers.
   */
  static async start(kc: k8s.KubeConfig, node: NodeNet, apiPort: number, caCertPem: string): Promise<{ relay: ApiServiceRelay; env: ApiServiceEnv }> {
    const fd = socketInNetns(node.netnsPath, { host: node.ip4, port: API_SERVICE_TARGET_PORT, listen: true });
    const relay = new ApiServiceRelay(
      createServer((client) => {
        const upstream = createConnection({ host: '127.0.0.1', port: apiPort });
        for (const s of [client, upstream]) {
          relay.sockets.add(s);
          s.once('close', () => relay.sockets.delete(s));
          s.on('error', () => {
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream).pipe(client);
      }),
    );
    await new Promise<void>((resolve, reject) => {
      relay.server.once('error', reject);
      relay.server.listen({ fd }, () => resolve());
    });
    try {
      const core = kc.makeApiClient(k8s.CoreV1Api);
      const svc = await core
        .createNamespacedService({
          namespace: 'default',
          body: {
            metadata: { name: 'kubernetes', labels: { component: 'apiserver', provider: 'kubernetes' } },
            spec: { clusterIP: KUBERNETES_SERVICE_IP, ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: API_SERVICE_TARGET_PORT as unknown as k8s.IntOrString }] },
          },
        })
        .catch(async (e: { code?: number }) => {
          if (e.code !== 409) throw e;
          return core.readNamespacedService({ namespace: 'default', name: 'kubernetes' });
        });
      relay.publisher = await publishRootCa(kc, core, caCertPem);
      const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
      const body: k8s.V1EndpointSlice = {
        metadata: { name: SLICE, labels: { 'kubernetes.io/service-name': 'kubernetes', 'endpointslice.kubernetes.io/managed-by': 'mesh-local-cluster' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: [node.ip4], conditions: { ready: true }, nodeName: node.name }],
        ports: [{ name: 'https', port: API_SERVICE_TARGET_PORT, protocol: 'TCP' }],
      };
      await discovery.deleteNamespacedEndpointSlice({ namespace: 'default', name: SLICE }).catch(() => undefined);
      await discovery.createNamespacedEndpointSlice({ namespace: 'default', body });
      const host = svc.spec!.clusterIP!;
      const port = String(svc.spec!.ports!.find((p) => p.name === 'https')?.port ?? 443);
      log.info({ service: `${host}:${port}`, endpoint: `${node.ip4}:${API_SERVICE_TARGET_PORT}` }, 'the API server is reachable from pods');
      return { relay, env: { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: port, KUBERNETES_SERVICE_PORT_HTTPS: port, KUBERNETES_PORT: `tcp://${host}:${port}` } };
    } catch (e) {
      await relay.stop();
      throw e;
    }
  }

  async stop(): Promise<void> {
    await this.publisher?.stop();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

/** kube-root-ca.crt in every namespace, now and as namespaces are made (written when it differs). */
async function publishRootCa(kc: k8s.KubeConfig, core: k8s.CoreV1Api, ca: string): Promise<{ stop(): Promise<void> }> {
  let stopped = false;
  const publish = async (ns: k8s.V1Namespace) => {
    const namespace = ns.metadata?.name;
    if (!namespace || ns.metadata?.deletionTimestamp) return;
    const body = { metadata: { name: 'kube-root-ca.crt' }, data: { 'ca.crt': ca } };
    const have = await core.readNamespacedConfigMap({ namespace, name: 'kube-root-ca.crt' }).catch(() => undefined);
    if (!have) await core.createNamespacedConfigMap({ namespace, body });
    else if (have.data?.['ca.crt'] !== ca) await core.replaceNamespacedConfigMap({ namespace, name: 'kube-root-ca.crt', body: { ...body, metadata: { ...body.metadata, resourceVersion: have.metadata?.resourceVersion } } });
  };
  const informer = k8s.makeInformer(kc, '/api/v1/namespaces', () => core.listNamespace());
  const onNs = (ns: k8s.V1Namespace) => void publish(ns).catch((e: Error) => log.warn({ namespace: ns.metadata?.name, err: e.message }, 'publishing kube-root-ca.crt failed'));
  informer.on('add', onNs);
  // client-node stops an informer for good on a non-410 error: start it again, until stopped.
  informer.on('error', () => setTimeout(() => void (stopped ? undefined : informer.start().catch(() => {})), 1000));
  await informer.start();
  // Wait for the namespaces that exist now (the first node pods need theirs).
  for (const ns of (await core.listNamespace()).items) await publish(ns).catch(() => undefined);
  return {
    stop: async () => {
      stopped = true;
      await informer.stop();
    },
  };
}
