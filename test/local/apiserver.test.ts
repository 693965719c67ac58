// The local API server over HTTPS: semantics a Kubernetes client relies on, checked request by
// request (Status codes and reasons, resource versions, patches, selectors, watches, tokens).
import test from 'ava';
import { applyCrds, call, harness, watchFor } from '../helpers/apiserver.ts';

const PODS = '/api/v1/namespaces/default/pods';
const pod = (name: string, labels: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, labels },
  spec: { containers: [{ name: 'app', image: 'busybox', ports: [{ containerPort: 80 }], env: [{ name: 'A', value: '1' }] }] },
});
const AP = '/apis/security.mesh.io/v1/namespaces/default/authorizationpolicies';

test('requests without a valid bearer token get 401; /version and /healthz are public', async (t) => {
  const h = await harness(t);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces', undefined, { token: null })).status, 401);
  const forged = await call(h.server, 'GET', '/api/v1/namespaces', undefined, { token: 'not-a-token' });
  t.is(forged.status, 401);
  t.is(forged.body.reason, 'Unauthorized');
  const v = await call(h.server, 'GET', '/version', undefined, { token: null });
  t.is(v.body.minor, '32');
  t.regex(v.body.gitVersion, /^v1\.32\./);
  t.is((await call(h.server, 'GET', '/healthz', undefined, { token: null })).text, 'ok');
});

test('discovery lists kinds with short names and subresources', async (t) => {
  const h = await harness(t);
  await applyCrds(h.server);
  const core = (await call(h.server, 'GET', '/api/v1')).body;
  const byName = new Map(core.resources.map((r: { name: string }) => [r.name, r]));
  t.deepEqual((byName.get('namespaces') as { shortNames: string[] }).shortNames, ['ns']);
  t.truthy(byName.get('pods/status'));
  t.truthy(byName.get('pods/binding'));
  t.truthy(byName.get('serviceaccounts/token'));
  const groups = (await call(h.server, 'GET', '/apis')).body.groups.map((g: { name: string }) => g.name);
  t.true(groups.includes('security.mesh.io') && groups.includes('apiextensions.k8s.io') && groups.includes('discovery.k8s.io'));
  t.false(groups.includes('gateway.networking.k8s.io'), 'Gateway API is served only once its CRDs are applied');
  const sec = (await call(h.server, 'GET', '/apis/security.mesh.io/v1')).body;
  t.deepEqual(sec.resources.map((r: { name: string }) => r.name).sort(), [
    'authorizationpolicies',
    'authorizationpolicies/status',
    'peerauthentications',
    'peerauthentications/status',
  ]);
  const root = (await call(h.server, 'GET', '/openapi/v3')).body;
  const url = root.paths['apis/security.mesh.io/v1'].serverRelativeURL as string;
  const doc = (await call(h.server, 'GET', url)).body;
  const patch = doc.paths['/apis/security.mesh.io/v1/namespaces/{namespace}/authorizationpolicies/{name}'].patch;
  t.true(patch.parameters.some((p: { name: string }) => p.name === 'fieldValidation'));
  t.is(patch['x-kubernetes-group-version-kind'].kind, 'AuthorizationPolicy');
});

test('create sets uid, timestamps, generation and increasing resourceVersions; 409 on duplicates and stale updates', async (t) => {
  const h = await harness(t);
  const a = await call(h.server, 'POST', PODS, pod('a'));
  t.is(a.status, 201);
  t.truthy(a.body.metadata.uid);
  t.truthy(a.body.metadata.creationTimestamp);
  t.is(a.body.metadata.generation, 1);
  t.is(a.body.status.phase, 'Pending');
  const dup = await call(h.server, 'POST', PODS, pod('a'));
  t.is(dup.status, 409);
  t.is(dup.body.reason, 'AlreadyExists');
  t.deepEqual(dup.body.details, { name: 'a', group: '', kind: 'pods' });

  const gen = await call(h.server, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { generateName: 'cfg-' }, data: { k: 'v' } });
  t.is(gen.status, 201);
  t.regex(gen.body.metadata.name, /^cfg-[a-z0-9]{5}$/);

  const cmPath = `/api/v1/namespaces/default/configmaps/${gen.body.metadata.name}`;
  const fresh = { ...gen.body, data: { k: 'v2' } };
  const ok = await call(h.server, 'PUT', cmPath, fresh);
  t.is(ok.status, 200);
  t.true(Number(ok.body.metadata.resourceVersion) > Number(gen.body.metadata.resourceVersion));
  const stale = await call(h.server, 'PUT', cmPath, { ...gen.body, data: { k: 'v3' } });
  t.is(stale.status, 409);
  t.is(stale.body.reason, 'Conflict');
  t.regex(stale.body.message, /the object has been modified/);
  t.is((await call(h.server, 'GET', cmPath)).body.data.k, 'v2');

  const rvs = [a, gen, ok].map((r) => Number(r.body.metadata.resourceVersion));
  t.deepEqual(rvs, [...rvs].sort((x, y) => x - y));
  t.true(rvs[0]! < rvs[1]! && rvs[1]! < rvs[2]!);
});

test('a namespaced object in a missing namespace is 404 NotFound for the namespace', async (t) => {
  const h = await harness(t);
  const r = await call(h.server, 'POST', '/api/v1/namespaces/nope/pods', pod('a'));
  t.is(r.status, 404);
  t.is(r.body.reason, 'NotFound');
  t.is(r.body.message, 'namespaces "nope" not found');
  t.deepEqual(r.body.details, { name: 'nope', group: '', kind: 'namespaces' });
});

test('invalid objects get 422 naming the field, and nothing stored changes', async (t) => {
  const h = await harness(t);
  await applyCrds(h.server);
  const good = { apiVersion: 'security.mesh.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p' }, spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['x'] } }] }] } };
  const created = await call(h.server, 'POST', AP, good);
  t.is(created.status, 201, created.text);
  const bad = await call(h.server, 'PATCH', `${AP}/p`, { spec: { action: 'PERMIT' } }, { contentType: 'application/merge-patch+json' });
  t.is(bad.status, 422);
  t.is(bad.body.reason, 'Invalid');
  t.deepEqual(bad.body.details.causes, [{ reason: 'FieldValueNotSupported', field: 'spec.action', message: 'Unsupported value: "PERMIT": supported values: "ALLOW", "DENY", "AUDIT", "CUSTOM"' }]);
  t.regex(bad.body.message, /^AuthorizationPolicy\.security\.mesh\.io "p" is invalid: spec\.action: Unsupported value/);
  const after = await call(h.server, 'GET', `${AP}/p`);
  t.deepEqual(after.body, created.body);

  const cases: [string, unknown, string][] = [
    [AP, { metadata: { name: 'q' }, spec: { selector: { matchLabels: { app: 7 } } } }, 'spec.selector.matchLabels.app'],
    [AP, { metadata: { name: 'q' }, spec: { rules: [{ to: [{ operation: { ports: ['http'] } }] }] } }, 'spec.rules[0].to[0].operation.ports[0]'],
    [AP, { metadata: { name: 'q' }, spec: { rules: [{ when: [{ values: ['x'] }] }] } }, 'spec.rules[0].when[0].key'],
    ['/apis/security.mesh.io/v1/namespaces/default/peerauthentications', { metadata: { name: 'q' }, spec: { mtls: { mode: 'ON' } } }, 'spec.mtls.mode'],
    [PODS, { metadata: { name: 'Bad_Name' }, spec: { containers: [{ name: 'a', image: 'x' }] } }, 'metadata.name'],
    [PODS, { metadata: { name: 'q' }, spec: { containers: [] } }, 'spec.containers'],
    ['/api/v1/namespaces/default/services', { metadata: { name: 'q' }, spec: { ports: [{ port: 70000 }] } }, 'spec.ports[0].port'],
    ['/api/v1/namespaces', { metadata: { name: 'a.b' } }, 'metadata.name'],
  ];
  for (const [path, body, field] of cases) {
    const r = await call(h.server, 'POST', path, body);
    t.is(r.status, 422, `${field}: ${r.text}`);
    t.true(r.body.details.causes.some((c: { field: string }) => c.field === field), `${field} in ${r.text}`);
  }
  t.deepEqual((await call(h.server, 'GET', AP)).body.items.map((o: { metadata: { name: string } }) => o.metadata.name), ['p']);
});

test('malformed bodies get 400 naming the problem', async (t) => {
  const h = await harness(t);
  const r = await call(h.server, 'POST', PODS, '{"metadata": ', { contentType: 'application/json' });
  t.is(r.status, 400);
  t.is(r.body.reason, 'BadRequest');
  t.regex(r.body.message, /not valid JSON/);
  const y = await call(h.server, 'PATCH', `${PODS}/x`, 'a: [1', { contentType: 'application/apply-patch+yaml' });
  t.is(y.status, 400);
  t.regex(y.body.message, /not valid YAML/);
  const pb = await call(h.server, 'POST', '/api/v1/namespaces', 'k8s\u0000', { contentType: 'application/vnd.kubernetes.protobuf' });
  t.is(pb.status, 400);
  t.regex(pb.body.message, /protobuf request body is malformed: its envelope names no apiVersion and kind/);
});

test('merge, strategic, json and apply patches', async (t) => {
  const h = await harness(t);
  await applyCrds(h.server);
  t.is((await call(h.server, 'POST', PODS, pod('p', { app: 'x' }))).status, 201);
  const merge = await call(h.server, 'PATCH', `${PODS}/p`, { metadata: { labels: { app: null, tier: 'web' } } }, { contentType: 'application/merge-patch+json' });
  t.deepEqual(merge.body.metadata.labels, { tier: 'web' });

  // Strategic: containers merge by name (a pod may change only images), ports by containerPort.
  const smp = await call(
    h.server,
    'PATCH',
    `${PODS}/p`,
    { spec: { containers: [{ name: 'app', image: 'busybox:2' }], '$setElementOrder/containers': [{ name: 'app' }] } },
    { contentType: 'application/strategic-merge-patch+json' },
  );
  t.is(smp.status, 200, smp.text);
  t.is(smp.body.spec.containers.length, 1);
  t.is(smp.body.spec.containers[0].image, 'busybox:2');
  t.deepEqual(smp.body.spec.containers[0].env, [{ name: 'A', value: '1' }]);
  t.deepEqual(smp.body.spec.containers[0].ports, [{ containerPort: 80, protocol: 'TCP' }]);
  // Service ports merge by port; `$patch: delete` removes one.
  const SVC = '/api/v1/namespaces/default/services';
  t.is((await call(h.server, 'POST', SVC, { metadata: { name: 's' }, spec: { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }] } })).status, 201);
  const svc = await call(h.server, 'PATCH', `${SVC}/s`, { spec: { ports: [{ port: 80, $patch: 'delete' }, { name: 'c', port: 82 }, { port: 81, targetPort: 8081 }] } }, { contentType: 'application/strategic-merge-patch+json' });
  t.is(svc.status, 200, svc.text);
  t.deepEqual(svc.body.spec.ports.map((p: { port: number; targetPort: number }) => `${p.port}->${p.targetPort}`), ['81->8081', '82->undefined']);

  const jp = await call(h.server, 'PATCH', `${PODS}/p`, [{ op: 'add', path: '/metadata/annotations', value: { a: 'b' } }], { contentType: 'application/json-patch+json' });
  t.is(jp.body.metadata.annotations.a, 'b');
  const failed = await call(h.server, 'PATCH', `${PODS}/p`, [{ op: 'test', path: '/metadata/name', value: 'other' }], { contentType: 'application/json-patch+json' });
  t.is(failed.status, 422);

  // Server-side apply creates when absent (201), merges when present, and is a no-op when unchanged.
  const body = { apiVersion: 'security.mesh.io/v1', kind: 'PeerAuthentication', metadata: { name: 'strict' }, spec: { mtls: { mode: 'STRICT' } } };
  const created = await call(h.server, 'PATCH', '/apis/security.mesh.io/v1/namespaces/default/peerauthentications/strict?fieldManager=kubectl&force=false', body, { contentType: 'application/apply-patch+yaml' });
  t.is(created.status, 201);
  const same = await call(h.server, 'PATCH', '/apis/security.mesh.io/v1/namespaces/default/peerauthentications/strict?fieldManager=kubectl', body, { contentType: 'application/apply-patch+yaml' });
  t.is(same.status, 200);
  t.is(same.body.metadata.resourceVersion, created.body.metadata.resourceVersion);
  const missing = await call(h.server, 'PATCH', `${PODS}/nope`, { metadata: { labels: { a: 'b' } } }, { contentType: 'application/merge-patch+json' });
  t.is(missing.status, 404);
});

test('status subresource: main resource ignores status, status endpoint ignores spec; binding sets nodeName once', async (t) => {
  const h = await harness(t);
  const created = (await call(h.server, 'POST', PODS, pod('s'))).body;
  const viaMain = await call(h.server, 'PATCH', `${PODS}/s`, { status: { phase: 'Running' }, metadata: { labels: { l: 'v' } } }, { contentType: 'application/merge-patch+json' });
  t.is(viaMain.body.status.phase, 'Pending');
  t.is(viaMain.body.metadata.labels.l, 'v');
  const viaStatus = await call(h.server, 'PATCH', `${PODS}/s/status`, { status: { phase: 'Running', podIP: '10.244.0.5' }, spec: { nodeName: 'sneaky' } }, { contentType: 'application/merge-patch+json' });
  t.is(viaStatus.body.status.phase, 'Running');
  t.is(viaStatus.body.spec.nodeName, undefined);
  t.is(viaStatus.body.metadata.generation, created.metadata.generation);

  const bind = await call(h.server, 'POST', `${PODS}/s/binding`, { apiVersion: 'v1', kind: 'Binding', metadata: { name: 's' }, target: { kind: 'Node', name: 'node-a' } });
  t.is(bind.status, 201);
  const bound = (await call(h.server, 'GET', `${PODS}/s`)).body;
  t.is(bound.spec.nodeName, 'node-a');
  t.true(bound.status.conditions.some((c: { type: string; status: string }) => c.type === 'PodScheduled' && c.status === 'True'));
  t.is((await call(h.server, 'POST', `${PODS}/s/binding`, { target: { name: 'node-b' } })).status, 409);
});

test('services get a ClusterIP from 10.96.0.0/16 unless headless; a taken IP is refused', async (t) => {
  const h = await harness(t);
  const SVC = '/api/v1/namespaces/default/services';
  const a = await call(h.server, 'POST', SVC, { metadata: { name: 'a' }, spec: { selector: { app: 'a' }, ports: [{ port: 80 }] } });
  t.is(a.status, 201);
  t.regex(a.body.spec.clusterIP, /^10\.96\.\d+\.\d+$/);
  t.deepEqual(a.body.spec.clusterIPs, [a.body.spec.clusterIP]);
  t.is(a.body.spec.ports[0].targetPort, 80);
  const headless = await call(h.server, 'POST', SVC, { metadata: { name: 'b' }, spec: { clusterIP: 'None', selector: { app: 'b' } } });
  t.is(headless.body.spec.clusterIP, 'None');
  const taken = await call(h.server, 'POST', SVC, { metadata: { name: 'c' }, spec: { clusterIP: a.body.spec.clusterIP, ports: [{ port: 80 }] } });
  t.is(taken.status, 422);
  // A PUT without clusterIP keeps the allocated one.
  const { clusterIP: _, clusterIPs: __, ...spec } = a.body.spec;
  const put = await call(h.server, 'PUT', `${SVC}/a`, { ...a.body, spec: { ...spec, ports: [{ port: 81, targetPort: 81, protocol: 'TCP' }] } });
  t.is(put.status, 200, put.text);
  t.is(put.body.spec.clusterIP, a.body.spec.clusterIP);
  t.is(put.body.metadata.generation, 2);
});

test('label and field selectors on lists, including cluster-wide lists', async (t) => {
  const h = await harness(t);
  t.is((await call(h.server, 'POST', '/api/v1/namespaces', { metadata: { name: 'other' } })).status, 201);
  await call(h.server, 'POST', PODS, pod('a', { app: 'web', tier: 'fe' }));
  await call(h.server, 'POST', PODS, pod('b', { app: 'db' }));
  await call(h.server, 'POST', '/api/v1/namespaces/other/pods', pod('c', { app: 'web' }));
  await call(h.server, 'POST', `${PODS}/b/binding`, { target: { name: 'n1' } });
  const names = async (q: string) => (await call(h.server, 'GET', `/api/v1/pods?${q}`)).body.items.map((o: { metadata: { name: string } }) => o.metadata.name);
  const sel = (s: string) => `labelSelector=${encodeURIComponent(s)}`;
  t.deepEqual(await names(sel('app=web')), ['a', 'c']);
  t.deepEqual(await names(sel('app==web,tier')), ['a']);
  t.deepEqual(await names(sel('app!=web')), ['b']);
  t.deepEqual(await names(sel('app in (db, web),!tier')), ['b', 'c']);
  t.deepEqual(await names(sel('app notin (web)')), ['b']);
  t.deepEqual(await names(`fieldSelector=${encodeURIComponent('metadata.namespace=other')}`), ['c']);
  t.deepEqual(await names(`fieldSelector=${encodeURIComponent('spec.nodeName=n1')}`), ['b']);
  t.deepEqual(await names(`fieldSelector=${encodeURIComponent('metadata.name!=a,status.phase=Pending')}`), ['b', 'c']);
  const bad = await call(h.server, 'GET', `/api/v1/pods?fieldSelector=${encodeURIComponent('spec.bogus=1')}`);
  t.is(bad.status, 400);
  const list = await call(h.server, 'GET', '/api/v1/pods?limit=2');
  t.is(list.body.items.length, 2);
  const rest = await call(h.server, 'GET', `/api/v1/pods?limit=2&continue=${list.body.metadata.continue}`);
  t.is(rest.body.items.length, 1);
  t.truthy(list.body.metadata.resourceVersion);
});

test('watch: ADDED for rv 0, later events only otherwise, selector transitions, 410 when too old, bookmarks', async (t) => {
  const h = await harness(t, { eventWindow: 3, bookmarkIntervalMs: 200 });
  const a = (await call(h.server, 'POST', PODS, pod('a', { app: 'web' }))).body;
  const from0 = await watchFor(h.server, `${PODS}?watch=1&resourceVersion=0`, 200);
  t.deepEqual(from0.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED a']);

  const rv = a.metadata.resourceVersion;
  const later = await watchFor(h.server, `${PODS}?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true&labelSelector=app%3Dweb`, 500, async () => {
    await call(h.server, 'PATCH', `${PODS}/a`, { metadata: { labels: { app: 'web', v: '2' } } }, { contentType: 'application/merge-patch+json' });
    await call(h.server, 'PATCH', `${PODS}/a`, { metadata: { labels: { app: 'other' } } }, { contentType: 'application/merge-patch+json' });
  });
  t.deepEqual(later.events.filter((e) => e.type !== 'BOOKMARK').map((e) => e.type), ['MODIFIED', 'DELETED']);
  t.true(later.events.some((e) => e.type === 'BOOKMARK' && Number(e.object.metadata.resourceVersion) >= Number(rv)));

  for (let i = 0; i < 5; i++) await call(h.server, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: `c${i}` } });
  const gone = await watchFor(h.server, `${PODS}?watch=true&resourceVersion=${rv}`, 200);
  t.is(gone.status, 200);
  t.is(gone.events.length, 1);
  t.is(gone.events[0]!.type, 'ERROR');
  t.is(gone.events[0]!.object.code, 410);
  t.is(gone.events[0]!.object.reason, 'Expired');

  const timed = Date.now();
  await watchFor(h.server, `${PODS}?watch=true&timeoutSeconds=1`, 1500);
  t.true(Date.now() - timed >= 1000);
});

test('watch with sendInitialEvents (streaming list): the objects as ADDED, then a bookmark marking their end, then changes', async (t) => {
  const h = await harness(t, { bookmarkIntervalMs: 60_000 });
  await call(h.server, 'POST', PODS, pod('a', { app: 'web' }));
  await call(h.server, 'POST', PODS, pod('b', { app: 'web' }));
  // As client-go's reflector asks (helm 4's status watcher, kubectl 1.35).
  const q = 'watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true';
  const w = await watchFor(h.server, `${PODS}?${q}`, 300, async () => {
    await call(h.server, 'DELETE', `${PODS}/a`);
  });
  t.deepEqual(w.events.map((e) => `${e.type} ${e.object.metadata.name ?? ''}`.trim()), ['ADDED a', 'ADDED b', 'BOOKMARK', 'DELETED a']);
  t.is(w.events[2]!.object.metadata.annotations['k8s.io/initial-events-end'], 'true');
  const bad = await call(h.server, 'GET', `${PODS}?watch=true&sendInitialEvents=true`);
  t.is(bad.status, 400);
});

test('deleting returns the object then 404; deleting a namespace deletes its objects', async (t) => {
  const h = await harness(t);
  await call(h.server, 'POST', '/api/v1/namespaces', { metadata: { name: 'team' } });
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/team/serviceaccounts/default')).status, 200);
  await call(h.server, 'POST', '/api/v1/namespaces/team/pods', pod('a'));
  await call(h.server, 'POST', '/api/v1/namespaces/team/configmaps', { metadata: { name: 'c' } });
  const del = await call(h.server, 'DELETE', '/api/v1/namespaces/team/pods/a', { propagationPolicy: 'Background' });
  t.is(del.status, 200);
  t.is(del.body.metadata.name, 'a');
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/team/pods/a')).status, 404);
  t.is((await call(h.server, 'DELETE', '/api/v1/namespaces/team/pods/a')).status, 404);
  t.is((await call(h.server, 'DELETE', '/api/v1/namespaces/team')).status, 200);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/team/configmaps/c')).status, 404);
  t.is((await call(h.server, 'GET', '/api/v1/serviceaccounts?fieldSelector=metadata.namespace%3Dteam')).body.items.length, 0);
  t.is((await call(h.server, 'DELETE', '/api/v1/namespaces/default')).status, 403);
});

test('Table output: pods have IP and Node as wide (priority 1) columns', async (t) => {
  const h = await harness(t);
  await call(h.server, 'POST', PODS, pod('a'));
  const r = await call(h.server, 'GET', PODS, undefined, { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' });
  t.is(r.body.kind, 'Table');
  const cols = r.body.columnDefinitions.map((c: { name: string; priority: number }) => `${c.name}:${c.priority}`);
  t.deepEqual(cols.slice(0, 7), ['Name:0', 'Ready:0', 'Status:0', 'Restarts:0', 'Age:0', 'IP:1', 'Node:1']);
  t.deepEqual(r.body.rows[0].cells.slice(0, 3), ['a', '0/1', 'Pending']);
  t.is(r.body.rows[0].object.metadata.name, 'a');
});

test('TokenRequest and TokenReview: valid, forged, and revoked by deleting the ServiceAccount', async (t) => {
  const h = await harness(t);
  await call(h.server, 'POST', '/api/v1/namespaces/default/serviceaccounts', { metadata: { name: 'agent' } });
  const tr = await call(h.server, 'POST', '/api/v1/namespaces/default/serviceaccounts/agent/token', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: ['mesh-ca'], expirationSeconds: 600 } });
  t.is(tr.status, 201);
  const token = tr.body.status.token as string;
  t.truthy(tr.body.status.expirationTimestamp);
  const review = (tok: string, audiences?: string[]) => call(h.server, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: tok, ...(audiences ? { audiences } : {}) } });

  const ok = await review(token, ['mesh-ca']);
  t.is(ok.status, 201);
  t.true(ok.body.status.authenticated);
  t.is(ok.body.status.user.username, 'system:serviceaccount:default:agent');
  t.deepEqual(ok.body.status.user.groups, ['system:serviceaccounts', 'system:serviceaccounts:default', 'system:authenticated']);
  t.false((await review(token, ['someone-else'])).body.status.authenticated);

  // The service-account token also authenticates API requests (and RBAC then decides: no role, 403).
  t.is((await call(h.server, 'GET', '/api', undefined, { token })).status, 200);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces', undefined, { token })).status, 403);

  const [head, body] = token.split('.');
  const claims = JSON.parse(Buffer.from(body!, 'base64url').toString());
  claims.sub = 'system:serviceaccount:kube-system:default';
  const forged = `${head}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${token.split('.')[2]}`;
  t.false((await review(forged)).body.status.authenticated);
  t.false((await review('garbage')).body.status.authenticated);

  // Tokens survive a restart (the signing key is persisted) ...
  await h.restart();
  t.true((await review(token, ['mesh-ca'])).body.status.authenticated);
  const inProcess = h.server.issueServiceAccountToken('default', 'agent');
  t.true((await review(inProcess)).body.status.authenticated);
  // ... and stop working once the ServiceAccount is gone, even if it is recreated.
  await call(h.server, 'DELETE', '/api/v1/namespaces/default/serviceaccounts/agent');
  t.false((await review(token, ['mesh-ca'])).body.status.authenticated);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces', undefined, { token })).status, 401);
  await call(h.server, 'POST', '/api/v1/namespaces/default/serviceaccounts', { metadata: { name: 'agent' } });
  t.false((await review(inProcess)).body.status.authenticated);
  t.is((await call(h.server, 'POST', '/api/v1/namespaces/default/serviceaccounts/ghost/token', { spec: {} })).status, 404);
});

test('objects, resourceVersions, CA and admin token persist across restarts', async (t) => {
  const h = await harness(t);
  const { caCertPem, adminToken } = h.server;
  const a = (await call(h.server, 'POST', PODS, pod('a'))).body;
  const b = (await call(h.server, 'POST', PODS, pod('b'))).body;
  const deleted = await call(h.server, 'DELETE', `${PODS}/b`);
  const lastRv = Number(deleted.body.metadata.resourceVersion);
  t.true(lastRv > Number(b.metadata.resourceVersion));
  await h.restart();
  t.is(h.server.caCertPem, caCertPem);
  t.is(h.server.adminToken, adminToken);
  t.deepEqual((await call(h.server, 'GET', `${PODS}/a`)).body, a);
  t.is((await call(h.server, 'GET', `${PODS}/b`)).status, 404);
  const c = (await call(h.server, 'POST', PODS, pod('c'))).body;
  t.true(Number(c.metadata.resourceVersion) > lastRv, 'resourceVersion keeps increasing after a restart, deletes included');
});

test('EndpointSlices follow services and their ready pods', async (t) => {
  const h = await harness(t);
  const SLICE = '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web';
  await call(h.server, 'POST', '/api/v1/namespaces/default/services', { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } });
  const p = pod('w1', { app: 'web' });
  p.spec.containers[0]!.ports = [{ name: 'http', containerPort: 8080 } as { containerPort: number }];
  await call(h.server, 'POST', PODS, p);
  await call(h.server, 'POST', PODS, pod('other', { app: 'db' }));
  const setStatus = (ready: boolean) =>
    call(h.server, 'PATCH', `${PODS}/w1/status`, { status: { podIP: '10.244.1.9', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } }, { contentType: 'application/merge-patch+json' });
  const slice = async (check: (s: Record<string, never> | undefined) => boolean) => {
    for (let i = 0; i < 100; i++) {
      const r = await call(h.server, 'GET', SLICE);
      if (check(r.status === 200 ? r.body : undefined)) return r.status === 200 ? r.body : undefined;
      await new Promise((res) => setTimeout(res, 20));
    }
    t.fail('the EndpointSlice never reached the expected state');
  };
  const empty = await slice((s) => s !== undefined);
  t.deepEqual(empty.endpoints, []);
  t.is(empty.metadata.labels['kubernetes.io/service-name'], 'web');
  await setStatus(true);
  const ready = await slice((s) => (s?.endpoints as unknown[] | undefined)?.length === 1);
  t.deepEqual(ready.endpoints[0].addresses, ['10.244.1.9']);
  t.true(ready.endpoints[0].conditions.ready);
  t.deepEqual(ready.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  await setStatus(false);
  await slice((s) => (s?.endpoints as { conditions: { ready: boolean } }[] | undefined)?.[0]?.conditions.ready === false);
  await call(h.server, 'DELETE', '/api/v1/namespaces/default/services/web');
  t.is(await slice((s) => s === undefined), undefined);
});
