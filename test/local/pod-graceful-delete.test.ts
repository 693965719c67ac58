// Graceful deletion of pods in the local API server, driven by the real kubectl: a pod bound to a
// node is marked (deletionTimestamp, deletionGracePeriodSeconds) and stays until its kubelet
// removes it with grace 0; a later delete may only shorten the period; `--force --grace-period=0`
// and an unscheduled or finished pod go at once. The kubelet side is test/e2e/pod-lifecycle.test.ts.
import test from 'ava';
import { call, harness, kubectl, type Harness } from '../helpers/apiserver.ts';

const pod = (name: string, grace?: number) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default' },
  spec: { ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}), containers: [{ name: 'app', image: 'busybox', command: ['sleep', '1000'] }] },
});

async function bound(h: Harness, name: string, grace?: number): Promise<void> {
  await call(h.server, 'POST', '/api/v1/namespaces/default/pods', pod(name, grace));
  const r = await call(h.server, 'POST', `/api/v1/namespaces/default/pods/${name}/binding`, { apiVersion: 'v1', kind: 'Binding', metadata: { name }, target: { kind: 'Node', name: 'node1' } });
  if (r.status !== 201) throw new Error(`binding: ${r.status}`);
}

const get = (h: Harness, name: string) => call(h.server, 'GET', `/api/v1/namespaces/default/pods/${name}`);

test('pod-delete-is-graceful: a bound pod stays Terminating with the spec grace period until deleted with grace 0', async (t) => {
  const h = await harness(t);
  await bound(h, 'web', 20);
  const t0 = Date.now();
  const r = await kubectl(h, ['delete', 'pod', 'web', '--wait=false']);
  t.is(r.code, 0, r.stderr);
  const p = (await get(h, 'web')).body;
  t.is(p.metadata.deletionGracePeriodSeconds, 20);
  const at = Date.parse(p.metadata.deletionTimestamp);
  t.true(at >= Math.floor(t0 / 1000) * 1000 + 19_000 && at <= Date.now() + 21_000, p.metadata.deletionTimestamp);
  t.regex((await kubectl(h, ['get', 'pod', 'web'])).stdout, /\nweb\s+\S+\s+Terminating\s/);
  // A status write (the kubelet's) does not complete the delete; a longer period changes nothing.
  p.status = { phase: 'Running' };
  t.is((await call(h.server, 'PUT', '/api/v1/namespaces/default/pods/web/status', p)).status, 200);
  t.is((await call(h.server, 'DELETE', '/api/v1/namespaces/default/pods/web', { gracePeriodSeconds: 60 })).status, 202);
  t.is((await get(h, 'web')).body.metadata.deletionGracePeriodSeconds, 20);
  // A shorter one moves deletionTimestamp earlier by the difference.
  await call(h.server, 'DELETE', '/api/v1/namespaces/default/pods/web?gracePeriodSeconds=5');
  const shorter = (await get(h, 'web')).body;
  t.is(shorter.metadata.deletionGracePeriodSeconds, 5);
  t.is(Date.parse(shorter.metadata.deletionTimestamp), at - 15_000);
  // The kubelet's final delete (grace 0, uid precondition) removes it.
  const done = await call(h.server, 'DELETE', '/api/v1/namespaces/default/pods/web', { gracePeriodSeconds: 0, preconditions: { uid: p.metadata.uid } });
  t.is(done.status, 200);
  t.is((await get(h, 'web')).status, 404);
});

test('pod-delete-defaults: 30 s without terminationGracePeriodSeconds; the request grace wins over the spec', async (t) => {
  const h = await harness(t);
  await bound(h, 'a');
  await bound(h, 'b', 10);
  t.is((await kubectl(h, ['delete', 'pod', 'a', '--wait=false'])).code, 0);
  t.is((await get(h, 'a')).body.metadata.deletionGracePeriodSeconds, 30);
  t.is((await kubectl(h, ['delete', 'pod', 'b', '--grace-period=3', '--wait=false'])).code, 0);
  t.is((await get(h, 'b')).body.metadata.deletionGracePeriodSeconds, 3);
});

test('pod-delete-force: --force --grace-period=0 removes a pod at once, also one already terminating', async (t) => {
  const h = await harness(t);
  await bound(h, 'web', 30);
  await bound(h, 'stuck', 30);
  t.is((await kubectl(h, ['delete', 'pod', 'stuck', '--wait=false'])).code, 0);
  t.truthy((await get(h, 'stuck')).body.metadata.deletionTimestamp);
  for (const name of ['web', 'stuck']) {
    const r = await kubectl(h, ['delete', 'pod', name, '--force', '--grace-period=0']);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, /Immediate deletion does not wait/);
    t.is((await get(h, name)).status, 404);
  }
});

test('pod-delete-immediate: an unscheduled pod and a finished pod go at once', async (t) => {
  const h = await harness(t);
  await call(h.server, 'POST', '/api/v1/namespaces/default/pods', pod('pending'));
  t.is((await kubectl(h, ['delete', 'pod', 'pending'])).code, 0);
  t.is((await get(h, 'pending')).status, 404);
  await bound(h, 'done');
  const p = (await get(h, 'done')).body;
  p.status = { phase: 'Succeeded' };
  await call(h.server, 'PUT', '/api/v1/namespaces/default/pods/done/status', p);
  t.is((await kubectl(h, ['delete', 'pod', 'done'])).code, 0);
  t.is((await get(h, 'done')).status, 404);
});
