// @kubernetes/client-node 2.x informers against the local API server: list then watch, recovery
// after an API server restart (with changes made while it was down) and after 410 Gone, counting
// every add/update/delete callback against what we changed — nothing missed, nothing doubled.
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import test, { type ExecutionContext } from 'ava';
import { startApiServer } from '../../src/local/apiserver/index.ts';
import { call, harness, type Harness } from '../helpers/apiserver.ts';

interface Seen {
  add: string[];
  update: string[];
  delete: string[];
  lists: number;
  errors: number;
}

/** A configmap informer on `default` that restarts itself on errors, as client-node apps must. */
async function configMapInformer(t: ExecutionContext, h: Harness): Promise<{ informer: k8s.Informer<k8s.V1ConfigMap> & k8s.ObjectCache<k8s.V1ConfigMap>; seen: Seen }> {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(h.kubeconfig);
  const api = kc.makeApiClient(k8s.CoreV1Api);
  const seen: Seen = { add: [], update: [], delete: [], lists: 0, errors: 0 };
  const informer = k8s.makeInformer(kc, '/api/v1/namespaces/default/configmaps', () => {
    seen.lists++;
    return api.listNamespacedConfigMap({ namespace: 'default' });
  });
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  informer.on('add', (o) => seen.add.push(o.metadata!.name!));
  informer.on('update', (o) => seen.update.push(o.metadata!.name!));
  informer.on('delete', (o) => seen.delete.push(o.metadata!.name!));
  informer.on('error', () => {
    seen.errors++;
    if (!stopped) retry = setTimeout(() => void informer.start().catch(() => {}), 200);
  });
  t.teardown(async () => {
    stopped = true;
    clearTimeout(retry);
    await informer.stop();
  });
  await informer.start();
  return { informer, seen };
}

async function eventually(t: ExecutionContext, what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  t.true(check(), `timed out waiting for ${what}`);
}

const cm = (name: string, v = '1') => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { v } });
const CMS = '/api/v1/namespaces/default/configmaps';

async function serverNames(h: Harness): Promise<string[]> {
  return (await call(h.server, 'GET', CMS)).body.items.map((o: { metadata: { name: string } }) => o.metadata.name).sort();
}

const sorted = (xs: string[]) => [...xs].sort();

test('informer lists, watches, and recovers after a restart with changes made while it was down', async (t) => {
  const h = await harness(t);
  for (const n of ['a', 'b', 'c']) t.is((await call(h.server, 'POST', CMS, cm(n))).status, 201);
  const { informer, seen } = await configMapInformer(t, h);
  await eventually(t, 'initial adds', () => seen.add.length === 3);

  // Live watch: an update and a delete.
  const a = (await call(h.server, 'GET', `${CMS}/a`)).body;
  a.data.v = '2';
  t.is((await call(h.server, 'PUT', `${CMS}/a`, a)).status, 200);
  await eventually(t, 'live update', () => seen.update.length === 1);

  // Down: another instance on the same data dir (another port) changes things the informer
  // cannot see; then the server comes back on the original port.
  const port = h.server.port;
  await h.server.stop();
  const other = await startApiServer({ dataDir: join(h.dir, 'data') });
  t.is((await call(other, 'POST', CMS, cm('d'))).status, 201);
  t.is((await call(other, 'PATCH', `${CMS}/a`, { data: { v: '3' } }, { contentType: 'application/merge-patch+json' })).status, 200);
  t.is((await call(other, 'DELETE', `${CMS}/b`)).status, 200);
  await other.stop();
  h.server = await startApiServer({ dataDir: join(h.dir, 'data'), port });

  await eventually(t, 'relist after restart', () => seen.add.includes('d') && seen.delete.includes('b') && seen.update.length === 2);
  t.is((await call(h.server, 'POST', CMS, cm('e'))).status, 201);
  await eventually(t, 'add after restart', () => seen.add.includes('e'));
  await new Promise((r) => setTimeout(r, 300)); // let any duplicate arrive before counting

  t.deepEqual(sorted(seen.add), ['a', 'b', 'c', 'd', 'e']);
  t.deepEqual(seen.update, ['a', 'a']);
  t.deepEqual(seen.delete, ['b']);
  t.deepEqual(sorted(informer.list('default').map((o) => o.metadata!.name!)), await serverNames(h));
  t.is(informer.get('a', 'default')?.data?.v, '3');
});

test('informer relists after 410 Gone when its resourceVersion has left the event window', async (t) => {
  // A 5-event window and watches that end after ~1 s force a re-watch from an expired version.
  const h = await harness(t, { eventWindow: 5, maxWatchSeconds: 1 });
  t.is((await call(h.server, 'POST', CMS, cm('a'))).status, 201);
  const { informer, seen } = await configMapInformer(t, h);
  await eventually(t, 'initial add', () => seen.add.length === 1);
  const listsBefore = seen.lists;

  // Other kinds' writes push the informer's last version out of the window.
  for (let i = 0; i < 10; i++) {
    t.is((await call(h.server, 'POST', '/api/v1/namespaces/default/secrets', { metadata: { name: `s${i}` }, stringData: { k: 'v' } })).status, 201);
  }
  await eventually(t, 'a relist caused by 410', () => seen.lists > listsBefore, 5000);

  t.is((await call(h.server, 'POST', CMS, cm('b'))).status, 201);
  t.is((await call(h.server, 'PATCH', `${CMS}/a`, { data: { v: '2' } }, { contentType: 'application/merge-patch+json' })).status, 200);
  t.is((await call(h.server, 'DELETE', `${CMS}/b`)).status, 200);
  await eventually(t, 'changes after the relist', () => seen.delete.length === 1 && seen.update.length === 1);
  await new Promise((r) => setTimeout(r, 300));

  t.deepEqual(sorted(seen.add), ['a', 'b']);
  t.deepEqual(seen.update, ['a']);
  t.deepEqual(seen.delete, ['b']);
  t.is(seen.errors, 0, '410 is handled by relisting, not reported as an error');
  t.deepEqual(sorted(informer.list('default').map((o) => o.metadata!.name!)), await serverNames(h));
});
