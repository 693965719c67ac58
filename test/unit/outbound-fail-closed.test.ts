// Outbound from a served pod to a mesh destination goes over HBONE or nowhere: a source pod whose
// workload ztunnel does not know (removed, or not sent yet) is refused, never passed through in
// plain TCP. The connection is real (loopback); the pod's datapath and netns are stand-ins, and a
// dial from the pod's netns — the plaintext path — is recorded as the failure it would be.
import net from 'node:net';
import test from 'ava';
import type { ZtunnelMaps } from '../../src/datapath/index.ts';
import type { HbonePool } from '../../src/hbone/index.ts';
import { spiffeId } from '../../src/identity/index.ts';
import { MeshState } from '../../src/state/index.ts';
import { AUTHORIZATION, SERVICE, WORKLOAD, type Workload } from '../../src/xds/index.ts';
import { ConnectionManager } from '../../src/ztunnel/connection-manager.ts';
import type { ProxyContext, ZtunnelConfig } from '../../src/ztunnel/context.ts';
import { outbound } from '../../src/ztunnel/outbound.ts';
import type { PodProxy } from '../../src/ztunnel/pod.ts';
import { type ConnectionRecord, Telemetry } from '../../src/ztunnel/telemetry/index.ts';

const server: Workload = {
  uid: 'Kubernetes//v1/Pod/shop/server',
  name: 'server',
  namespace: 'shop',
  addresses: [Uint8Array.of(10, 244, 1, 7)],
  hostname: '',
  network: '',
  trustDomain: 'cluster.local',
  serviceAccount: 'default',
  node: 'node1',
  tunnelProtocol: 'HBONE',
  waypoint: null,
  canonicalName: 'server',
  canonicalRevision: '',
  workloadType: 'POD',
  workloadName: 'server',
  status: 'HEALTHY',
  services: {},
  authorizationPolicies: [],
  clusterId: '',
  podUid: 'server-uid',
};

test('a served pod whose workload ztunnel does not know is refused a mesh destination, not passed through in plaintext', async (t) => {
  const state = new MeshState();
  state.replace(WORKLOAD, [[server.uid, server]], true);
  state.replace(SERVICE, [], true);
  state.replace(AUTHORIZATION, [], true);
  const records: ConnectionRecord[] = [];
  const telemetry = new Telemetry({ onClose: (r) => records.push(r) });
  const dials: number[] = [];
  const pod = {
    uid: 'opener-uid',
    netnsCookie: 7n,
    addresses: ['10.244.2.9'],
    provisional: undefined,
    dialSocket: (family: 4 | 6) => {
      dials.push(family);
      throw new Error('dialled from the pod in plain TCP');
    },
  } as unknown as PodProxy;
  const pool = {
    connect: () => {
      throw new Error('no HBONE without a source identity');
    },
  } as unknown as HbonePool;
  const ctx: ProxyContext = {
    cfg: { trustDomain: 'cluster.local' } as ZtunnelConfig,
    state,
    telemetry,
    secrets: undefined as never,
    maps: { takeOrigDst: () => ({ address: '10.244.1.7', port: 9002 }) } as unknown as ZtunnelMaps,
    connections: new ConnectionManager(),
    policy: () => undefined,
    configSynced: () => true,
    whenSynced: () => Promise.resolve(true),
    workloadOf: () => undefined,
    identityOf: (w) => spiffeId('cluster.local', w.namespace, w.serviceAccount),
  };

  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const app = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  const appClosed = new Promise<string>((r) => {
    app.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? e.message));
    app.on('close', () => r('closed'));
  });
  await outbound(ctx, pod, await accepted, pool);

  t.is(await appClosed, 'ECONNRESET', 'the app sees its connection reset');
  t.deepEqual(dials, [], 'nothing was dialled from the pod in plain TCP');
  t.is(records.length, 1);
  t.regex(String(records[0]?.error), /does not know pod opener-uid's workload.*fail closed/);
});
