// Leader election on the Lease mesh-system/mesh-controller, against the local API server with the
// controller's own service-account token and the chart's rights (files/rbac.yaml and
// files/leader-election.yaml): one leader at a time, a released Lease is taken at once, an
// abandoned one only after its duration by the follower's own clock; and two controller replicas
// serve the same model and sign with the same root while only the leader writes.
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import test, { type ExecutionContext } from 'ava';
import { Controller } from '../../src/controller/controller.ts';
import { holderIdentity, LeaderElector, type LeaseSettings } from '../../src/controller/leader-election.ts';
import { ReplicaDirectory } from '../../src/controller/replica-directory.ts';
import { installChartCrds } from '../../src/local/chart-crds.ts';
import { applyMeshRbac, LEADER_ELECTION_MANIFEST, tokenFileKubeConfig, writeControllerToken } from '../../src/local/mesh-rbac.ts';
import { call, harness } from '../helpers/apiserver.ts';

const FAST = { namespace: 'mesh-system', name: 'mesh-controller', leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 200 };

async function setup(t: ExecutionContext, withLeaseRights = true): Promise<{ admin: k8s.KubeConfig; kc: k8s.KubeConfig; h: Awaited<ReturnType<typeof harness>> }> {
  const h = await harness(t);
  const admin = new k8s.KubeConfig();
  admin.loadFromFile(h.kubeconfig);
  await admin.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: 'mesh-system' } } });
  await applyMeshRbac(admin);
  if (withLeaseRights) await applyMeshRbac(admin, LEADER_ELECTION_MANIFEST);
  const tokenFile = join(h.dir, 'controller', 'token');
  await writeControllerToken(admin, tokenFile);
  return { admin, h, kc: tokenFileKubeConfig(h.server.url, h.server.caCertPem, tokenFile) };
}

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function elector(kc: k8s.KubeConfig, identity: string, events: string[], over: Partial<LeaseSettings> = {}): LeaderElector {
  return new LeaderElector(kc, { ...FAST, identity, ...over }, { onStartedLeading: () => events.push(`${identity} leads`), onStoppedLeading: () => events.push(`${identity} stops`) });
}

test('one of two candidates leads; stopping releases the Lease and the other takes it on its next poll', async (t) => {
  const { kc, admin } = await setup(t);
  const events: string[] = [];
  const a = elector(kc, 'a', events);
  const b = elector(kc, 'b', events);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  a.start();
  b.start();
  const first = await until('a leader', () => (a.isLeader ? a : b.isLeader ? b : undefined));
  const second = first === a ? b : a;
  // Several retry periods later, still one leader, and the follower saw who it is.
  await new Promise((r) => setTimeout(r, 1000));
  t.true(first.isLeader);
  t.false(second.isLeader);
  t.is(second.status().holder, first.settings.identity);
  const lease = await admin.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ name: 'mesh-controller', namespace: 'mesh-system' });
  t.is(lease.spec?.holderIdentity, first.settings.identity);
  t.is(lease.spec?.leaseDurationSeconds, 2);

  const stopped = performance.now();
  await first.stop();
  await until('the other to lead', () => (second.isLeader ? true : undefined));
  const took = performance.now() - stopped;
  // A released Lease is free at once: one poll (200 ms, jittered), not a lease duration (2 s).
  t.true(took < 1000, `took ${Math.round(took)} ms`);
  t.deepEqual(events, [`${first.settings.identity} leads`, `${first.settings.identity} stops`, `${second.settings.identity} leads`]);
  // Created by the first (0), released, taken by the second (1).
  t.is((await admin.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ name: 'mesh-controller', namespace: 'mesh-system' })).spec?.leaseTransitions, 1);
});

test("an abandoned Lease is taken only after its duration has passed on the follower's own clock", async (t) => {
  const { kc, admin } = await setup(t);
  const leases = admin.makeApiClient(k8s.CoordinationV1Api);
  // A holder that died without releasing: its renewTime is an hour ahead (a skewed clock), which
  // must not matter — only how long the record stays unchanged does.
  const future = new k8s.V1MicroTime(Date.now() + 3_600_000);
  await leases.createNamespacedLease({ namespace: 'mesh-system', body: { metadata: { name: 'mesh-controller' }, spec: { holderIdentity: 'dead_1', leaseDurationSeconds: 2, renewTime: future, acquireTime: future, leaseTransitions: 4 } } });
  const events: string[] = [];
  const b = elector(kc, holderIdentity('b'), events);
  t.teardown(() => b.stop());
  const started = performance.now();
  b.start();
  await until('b to lead', () => (b.isLeader ? true : undefined));
  const took = performance.now() - started;
  t.true(took >= 2000, `took ${Math.round(took)} ms, before the lease duration`);
  t.true(took < 2000 + 2 * 240 + 300, `took ${Math.round(took)} ms`);
  t.is((await leases.readNamespacedLease({ name: 'mesh-controller', namespace: 'mesh-system' })).spec?.leaseTransitions, 5);
});

test('without the Lease rights a candidate never leads, and says which Role is missing', async (t) => {
  const { kc } = await setup(t, false);
  const events: string[] = [];
  const a = elector(kc, 'a', events);
  t.teardown(() => a.stop());
  a.start();
  await new Promise((r) => setTimeout(r, 600));
  t.false(a.isLeader);
  t.deepEqual(events, []);
});

test('settings in the wrong order are refused with the reason', (t) => {
  const e = t.throws(() => new LeaderElector(new k8s.KubeConfig(), { ...FAST, identity: 'x', renewDeadlineMs: 5000 }, { onStartedLeading() {}, onStoppedLeading() {} }));
  t.regex(e!.message, /lease duration > renew deadline > retry period/);
});

test('two controller replicas: both serve the model and sign with one root; only the leader writes, and the follower takes over', async (t) => {
  const { kc, admin, h } = await setup(t);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  await installChartCrds(admin);
  await core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  const start = (id: string) => Controller.start(kc, { host: '127.0.0.1', xdsPort: 0, caPort: 0, relayPort: 0, lease: { ...FAST, identity: id } });
  // Started together, they race to create the CA Secret; both end up with the one root.
  const [a, b] = await Promise.all([start('a'), start('b')]);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  t.deepEqual(a.ca.authority.trustBundle, b.ca.authority.trustBundle);
  const leader = await until('a leader', () => (a.leading ? a : b.leading ? b : undefined));
  const follower = leader === a ? b : a;
  t.false(follower.leading);

  const policy = (name: string) => ({ apiVersion: 'security.mesh.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'shop' }, spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['x'] } }] }] } });
  const statusOf = async (name: string) => (await call(h.server, 'GET', `/apis/security.mesh.io/v1/namespaces/shop/authorizationpolicies/${name}`)).body.status?.conditions as unknown[] | undefined;
  await call(h.server, 'POST', '/apis/security.mesh.io/v1/namespaces/shop/authorizationpolicies', policy('deny-x'));
  // Both serve it; the leader wrote its status and published the root to the new namespace.
  await until('both models', () => (a.model?.authorizations.has('shop/deny-x') && b.model?.authorizations.has('shop/deny-x') ? true : undefined));
  t.truthy(await until('the status', () => statusOf('deny-x')));
  await until('the root ConfigMap in shop', async () => (await core.readNamespacedConfigMap({ name: 'mesh-ca-root-cert', namespace: 'shop' }).catch(() => undefined))?.data?.['root-cert.pem']);

  // The leader goes; the follower takes the Lease and does the writes from then on.
  await leader.stop();
  await until('the follower to lead', () => (follower.leading ? true : undefined), 3000);
  await call(h.server, 'POST', '/apis/security.mesh.io/v1/namespaces/shop/authorizationpolicies', policy('deny-y'));
  t.truthy(await until('the new status', () => statusOf('deny-y')));
  await core.createNamespace({ body: { metadata: { name: 'cart' } } });
  await until('the root ConfigMap in a new namespace', async () => (await core.readNamespacedConfigMap({ name: 'mesh-ca-root-cert', namespace: 'cart' }).catch(() => undefined))?.data?.['root-cert.pem']);
});

test('each replica learns the others\' config-stream clients through their Leases, and forgets a replica that stopped', async (t) => {
  const { kc, admin } = await setup(t);
  const record = (node: string) => ({ node, id: `agent~${node}`, observer: `127.0.0.1:${node === 'node1' ? 1111 : 2222}`, inSync: true, resources: 3, nacks: 0, connectedAt: new Date(0).toISOString() });
  const dir = (identity: string, node: string) => new ReplicaDirectory(kc, { namespace: 'mesh-system', leaseName: 'mesh-controller', identity, periodMs: 200 }, () => [record(node)], () => false);
  const a = dir('mesh-controller-1_aaaa1111', 'node1');
  const b = dir('mesh-controller-2_bbbb2222', 'node2');
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  a.start();
  b.start();
  await until('a to see node2', () => (a.others().some((r) => r.node === 'node2') ? true : undefined));
  await until('b to see node1', () => (b.others().some((r) => r.node === 'node1') ? true : undefined));
  t.deepEqual(b.others(), [record('node1')]);
  const names = (await admin.makeApiClient(k8s.CoordinationV1Api).listNamespacedLease({ namespace: 'mesh-system' })).items.map((l) => l.metadata!.name).sort();
  t.deepEqual(names, ['mesh-controller-mesh-controller-1-aaaa1111', 'mesh-controller-mesh-controller-2-bbbb2222']);
  await a.stop();
  await until('b to forget a', () => (b.others().length === 0 ? true : undefined), 3000);
});
