// Deletion with dependents through the real kubectl: ownerReferences followed by the garbage
// collector (background, `--cascade=orphan`, `--cascade=foreground`), finalizers holding an
// object until they are removed, and dependents whose owner no longer exists.
import test from 'ava';
import { call, harness, type Harness, kubectl } from '../helpers/apiserver.ts';

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
`;

/** A Deployment owning a ReplicaSet owning a Pod, as the controllers would leave them. */
async function chain(h: Harness, podFinalizer?: string): Promise<void> {
  const apply = async (yaml: string) => {
    const r = await kubectl(h, ['apply', '-f', '-'], { input: yaml });
    if (r.code !== 0) throw new Error(r.stderr);
  };
  const uid = async (kind: string, name: string) => (await kubectl(h, ['get', kind, name, '-o', 'jsonpath={.metadata.uid}'])).stdout;
  await apply(DEPLOYMENT);
  await apply(`apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-1
  namespace: default
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: ${await uid('deployment', 'web')}, controller: true, blockOwnerDeletion: true}]
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
`);
  await apply(`apiVersion: v1
kind: Pod
metadata:
  name: web-1-a
  namespace: default
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-1, uid: ${await uid('rs', 'web-1')}, controller: true, blockOwnerDeletion: true}]
  ${podFinalizer ? `finalizers: [${podFinalizer}]` : ''}
spec: {containers: [{name: web, image: nginx:1.27}]}
`);
}

const exists = async (h: Harness, kind: string, name: string) => (await kubectl(h, ['get', kind, name, '--ignore-not-found', '-o', 'name'])).stdout.trim() !== '';

async function eventually(check: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

test('deleting an owner removes its dependents in the background, through every level', async (t) => {
  const h = await harness(t);
  await chain(h);
  const r = await kubectl(h, ['delete', 'deployment', 'web']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /deployment.apps "web" deleted/);
  t.true(await eventually(async () => !(await exists(h, 'rs', 'web-1')) && !(await exists(h, 'pod', 'web-1-a'))), 'the ReplicaSet and its Pod are collected');
});

test('kubectl delete --cascade=orphan keeps the dependents and drops their ownerReferences', async (t) => {
  const h = await harness(t);
  await chain(h);
  const r = await kubectl(h, ['delete', 'deployment', 'web', '--cascade=orphan']);
  t.is(r.code, 0, r.stderr);
  t.false(await exists(h, 'deployment', 'web'));
  t.true(await exists(h, 'rs', 'web-1'));
  t.is((await kubectl(h, ['get', 'rs', 'web-1', '-o', 'jsonpath={.metadata.ownerReferences}'])).stdout, '', 'the orphan lost its owner reference');
  t.true(await exists(h, 'pod', 'web-1-a'), 'grandchildren stay with their own owner');
});

test('foreground deletion keeps the owner until its dependents are gone, held by a dependent finalizer', async (t) => {
  const h = await harness(t);
  await chain(h, 'example.com/hold');
  const r = await kubectl(h, ['delete', 'deployment', 'web', '--cascade=foreground', '--wait=false']);
  t.is(r.code, 0, r.stderr);
  const dep = await call(h.server, 'GET', '/apis/apps/v1/namespaces/default/deployments/web');
  t.truthy(dep.body.metadata.deletionTimestamp);
  t.deepEqual(dep.body.metadata.finalizers, ['foregroundDeletion']);
  const pod = await kubectl(h, ['get', 'pod', 'web-1-a']);
  t.regex(pod.stdout, /web-1-a\s+0\/1\s+Terminating/, 'the held pod shows Terminating');
  await new Promise((res) => setTimeout(res, 300));
  t.true(await exists(h, 'deployment', 'web'), 'the owner waits for its dependents');
  t.true(await exists(h, 'rs', 'web-1'), 'the ReplicaSet waits for its pod (foreground all the way down)');
  const removed = await kubectl(h, ['patch', 'pod', 'web-1-a', '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]']);
  t.is(removed.code, 0, removed.stderr);
  t.true(await eventually(async () => !(await exists(h, 'deployment', 'web'))), 'the owner goes once the last dependent is gone');
  t.false(await exists(h, 'rs', 'web-1'));
  t.false(await exists(h, 'pod', 'web-1-a'));
});

test('kubectl delete --cascade=foreground waits and returns once dependents and owner are gone', async (t) => {
  const h = await harness(t);
  await chain(h);
  const r = await kubectl(h, ['delete', 'deployment', 'web', '--cascade=foreground', '--timeout=10s']);
  t.is(r.code, 0, r.stderr);
  t.false(await exists(h, 'deployment', 'web'));
  t.false(await exists(h, 'rs', 'web-1'));
  t.false(await exists(h, 'pod', 'web-1-a'));
});

test('a finalizer holds a deleted object until a client removes it', async (t) => {
  const h = await harness(t);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: default, finalizers: [example.com/cleanup]}\ndata: {a: b}\n' })).code, 0);
  const del = await call(h.server, 'DELETE', '/api/v1/namespaces/default/configmaps/held', { propagationPolicy: 'Background' });
  t.is(del.status, 202, 'accepted, not yet deleted');
  t.truthy(del.body.metadata.deletionTimestamp);
  t.true(await exists(h, 'cm', 'held'));
  t.regex((await kubectl(h, ['get', 'cm', 'held', '-o', 'jsonpath={.metadata.deletionTimestamp}'])).stdout, /^\d{4}-\d\d-\d\dT/);
  const again = await kubectl(h, ['delete', 'cm', 'held', '--wait=false']);
  t.is(again.code, 0, again.stderr);
  const r = await kubectl(h, ['patch', 'cm', 'held', '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
  t.is(r.code, 0, r.stderr);
  t.false(await exists(h, 'cm', 'held'), 'removing the last finalizer completes the delete');
});

test('a dependent whose owner no longer exists is collected', async (t) => {
  const h = await harness(t);
  const r = await kubectl(h, ['apply', '-f', '-'], {
    input: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stray\n  namespace: default\n  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: gone, uid: 00000000-0000-0000-0000-000000000000}]\n',
  });
  t.is(r.code, 0, r.stderr);
  t.true(await eventually(async () => !(await exists(h, 'cm', 'stray'))));
});

test('an unknown propagationPolicy is a 400 naming the supported values', async (t) => {
  const h = await harness(t);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: DEPLOYMENT })).code, 0);
  const r = await call(h.server, 'DELETE', '/apis/apps/v1/namespaces/default/deployments/web', { propagationPolicy: 'Sideways' });
  t.is(r.status, 400);
  t.is(r.body.message, 'propagationPolicy: Unsupported value: "Sideways": supported values: "Background", "Foreground", "Orphan"');
});

test('an ownerReference without a uid is refused naming the field', async (t) => {
  const h = await harness(t);
  const r = await kubectl(h, ['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dep\n  namespace: default\n  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner}]\n' });
  t.not(r.code, 0);
  t.regex(r.stderr, /The ConfigMap "dep" is invalid: metadata.ownerReferences.uid: Invalid value: "": uid must not be empty/);
});
