// A controller rollout drops nothing (issue 15 §2): two controller replicas behind their Service
// elect a leader on the Lease mesh-system/mesh-controller; while a client in node2 sends a new
// request every 100 ms to a server in node1 (through both ztunnels over HBONE), the replicas are
// replaced one at a time, and a policy and a new pod appear in the middle of it. Every ztunnel
// applies both, no request fails, and the Lease moves to a new replica. Then the leader is
// SIGKILLed: the other replica takes the Lease once its duration has run out after the dead
// leader's last renewal (within one poll), and still no request fails.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor } from '../helpers/mesh.ts';
import { HTTP_LOOP, HTTP_OK_SERVER, loopResults } from '../helpers/scripts.ts';
import { requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const run = promisify(execFile);
/** Short Lease timings, so that a killed leader's successor shows within the test. */
const LEASE = { MESH_LEASE_DURATION: '4s', MESH_LEASE_RENEW_DEADLINE: '3s', MESH_LEASE_RETRY_PERIOD: '500ms' };
const LEASE_DURATION_MS = 4000;

interface Dump {
  workloads: { uid: string; name: string; namespace: string }[];
  policies: { name: string; namespace: string }[];
}

test('controller-rollout-drops-nothing: two replicas rolled under traffic, config applied mid-rollout reaches every ztunnel, 0 failed requests; the Lease of a SIGKILLed leader is taken once its duration has run out (within one poll)', async (t) => {
  if (!(await requireRoot(t))) return;
  const mesh = await startMesh(t, { ztunnel: true, controllerReplicas: 2, controllerSettings: LEASE });
  const replicas = mesh.local.replicas!;
  t.is(replicas.replicas.length, 2);
  const core = mesh.core;
  const leases = mesh.cluster.kc.makeApiClient(k8s.CoordinationV1Api);
  const holder = async () => (await leases.readNamespacedLease({ name: 'mesh-controller', namespace: 'mesh-system' })).spec?.holderIdentity ?? '';
  const dump = async (node: string): Promise<Dump> => (await (await fetch(`http://127.0.0.1:${mesh.ztunnelPort(node, 'admin')}/config_dump`)).json()) as Dump;

  await core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  const mk = (name: string, node: string, command: string[]) =>
    core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'local', command }] } } as k8s.V1Pod });
  await mk('server', 'node1', [NODE, '-e', HTTP_OK_SERVER]);
  const server = await waitFor('server running', async () => {
    const p = await core.readNamespacedPod({ name: 'server', namespace: 'shop' });
    return p.status?.podIP && p.status.phase === 'Running' ? p : undefined;
  });
  await mk('client', 'node2', [NODE, '-e', HTTP_LOOP, server.status!.podIP!]);
  const lines = () => loopResults(`${mesh.stateDir}/logs/shop_client_main.log`, (f) => readFileSync(f, 'utf8'));
  await waitFor('the first successful request', () => (lines().some(([, r]) => r === 'ok') ? true : undefined), 20_000);
  const start = Date.now();

  const first = await waitFor('a leader', async () => (await holder()) || undefined);
  t.truthy(replicas.byIdentity(first), `the Lease is held by a running replica (${first})`);
  const before = replicas.replicas.map((r) => r.name);

  // The rollout; config changes land while it runs: a policy while the first old replica leaves,
  // a new pod while the second replacement starts.
  const custom = mesh.cluster.kc.makeApiClient(k8s.CustomObjectsApi);
  const changes: Promise<unknown>[] = [];
  const rolledAt = Date.now();
  const rolled = await replicas.rollout((m) => {
    if (m.includes(`stopping ${before[0]}`)) {
      changes.push(
        custom.createNamespacedCustomObject({
          group: 'security.mesh.io',
          version: 'v1',
          namespace: 'shop',
          plural: 'authorizationpolicies',
          body: { apiVersion: 'security.mesh.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-elsewhere', namespace: 'shop' }, spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['elsewhere'] } }] }] } },
        }),
      );
    }
    if (m.includes(`to replace ${before[1]}`)) changes.push(mk('fresh', 'node1', ['sleep', '600']));
  });
  t.log(`rollout: ${rolled.map((r) => `${r.from} → ${r.to}`).join(', ')} in ${Date.now() - rolledAt} ms`);
  t.deepEqual(
    rolled.map((r) => r.from),
    before,
  );
  t.is(changes.length, 2, 'both changes were made during the rollout');
  const [, fresh] = (await Promise.all(changes)) as [unknown, k8s.V1Pod];

  // Nothing lost: both ztunnels hold the policy and the new pod, and node1 serves the pod.
  const appliedAt = await waitFor(
    'every ztunnel to apply the policy and the new pod',
    async () => {
      for (const node of ['node1', 'node2']) {
        const d = await dump(node);
        if (!d.policies.some((p) => p.name === 'deny-elsewhere' && p.namespace === 'shop')) return undefined;
        if (!d.workloads.some((w) => w.uid.includes(fresh.metadata!.uid!) || (w.name === 'fresh' && w.namespace === 'shop'))) return undefined;
      }
      return Date.now();
    },
    10_000,
  );
  t.log(`both changes on both ztunnels ${appliedAt - rolledAt} ms after the rollout began`);
  await waitFor('the new pod enrolled on node1', () => (mesh.enrolledUids('node1').includes(fresh.metadata!.uid!) ? true : undefined), 10_000);

  // The Lease moved to one of the new replicas, and that leader writes: the policy's status.
  const second = await waitFor('a new leader', async () => {
    const h = await holder();
    return h && h !== first && rolled.some((r) => replicas.byIdentity(h)?.name === r.to) ? h : undefined;
  });
  t.log(`leader: ${first} → ${second}`);
  const status = await waitFor('the policy status', async () => {
    const p = (await custom.getNamespacedCustomObject({ group: 'security.mesh.io', version: 'v1', namespace: 'shop', plural: 'authorizationpolicies', name: 'deny-elsewhere' })) as { status?: { conditions?: unknown[] } };
    return p.status?.conditions?.length ? p.status.conditions : undefined;
  });
  t.truthy(status);

  // SIGKILL the leader: no release; the other replica waits out the Lease, then takes it.
  const leader = replicas.byIdentity(second)!;
  const killedAt = performance.now();
  replicas.kill(leader.name, 'SIGKILL');
  const lastRenewal = Date.parse(String((await leases.readNamespacedLease({ name: 'mesh-controller', namespace: 'mesh-system' })).spec?.renewTime));
  const third = await waitFor(
    'the other replica to take the Lease',
    async () => {
      const h = await holder();
      return h && h !== second ? h : undefined;
    },
    LEASE_DURATION_MS * 3,
  );
  const takeoverMs = Math.round(performance.now() - killedAt);
  // The dead leader's last renewal is what the others count the duration from.
  const lease = await leases.readNamespacedLease({ name: 'mesh-controller', namespace: 'mesh-system' });
  const sinceRenewal = Date.parse(String(lease.spec?.acquireTime)) - lastRenewal;
  t.log(`leader ${leader.name} SIGKILLed; ${third} took the Lease ${takeoverMs} ms after the kill, ${sinceRenewal} ms after the dead leader's last renewal (lease duration ${LEASE_DURATION_MS} ms, retry period 500 ms)`);
  // A Lease is the holder's for its duration after the follower saw its last renewal, which it
  // sees on a poll (≤ 1.2 retry periods late); it tries again right at the expiry. So: the
  // duration, one poll, and the API's latency on a loaded host.
  t.true(sinceRenewal <= LEASE_DURATION_MS + 600 + 400, `took ${sinceRenewal} ms after the last renewal`);
  t.true(takeoverMs <= LEASE_DURATION_MS + 600 + 400, `took ${takeoverMs} ms after the kill`);
  t.not(replicas.byIdentity(third)?.name, leader.name);

  // Traffic ran on through all of it; the nodes are back in sync through the Service.
  await new Promise((r) => setTimeout(r, 1500));
  const end = Date.now();
  const window = lines().filter(([ts]) => ts >= start && ts <= end);
  const failed = window.filter(([, r]) => r !== 'ok');
  t.log(`${window.length} requests over ${((end - start) / 1000).toFixed(1)} s (rollout and leader kill), ${failed.length} failed`);
  t.true(window.length > (end - start) / 200, `the client kept going: ${window.length} requests`);
  t.deepEqual(failed, [], 'no request failed');
  // Every replica's relay sees both nodes, whichever replica their streams landed on: meshctl
  // status through the Service (round robin over the replicas), once settled, four times running.
  const meshStatus = async () => (await run(MESHCTL, ['status', '--state-dir', mesh.stateDir], { timeout: 30_000 }).catch((e: { stdout: string }) => e)).stdout;
  await waitFor('meshctl status to show both nodes', async () => (/Connected nodes:\s+2\/2/.test(await meshStatus()) ? true : undefined), 10_000);
  for (let i = 0; i < 4; i++) t.regex(await meshStatus(), /Connected nodes:\s+2\/2/, `call ${i + 1}`);
  // A change after the kill still reaches every ztunnel.
  await custom.deleteNamespacedCustomObject({ group: 'security.mesh.io', version: 'v1', namespace: 'shop', plural: 'authorizationpolicies', name: 'deny-elsewhere' });
  await waitFor('the policy removed on every ztunnel', async () => ((await Promise.all(['node1', 'node2'].map(dump))).every((d) => !d.policies.some((p) => p.name === 'deny-elsewhere')) ? true : undefined), 10_000);
});
