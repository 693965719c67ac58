// The local API server driven by the real kubectl (/usr/bin/kubectl dispatches to the bundled
// 1.32 client after GET /version): the commands issue 3 names, with the outputs a user reads.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import test from 'ava';
import { applyCrds, call, harness, kubectl } from '../helpers/apiserver.ts';

const POD = (image = 'busybox') => `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  containers:
  - name: web
    image: ${image}
    command: ["sleep", "1000"]
    ports: [{containerPort: 8080}]
`;

const POLICY = (action = 'ALLOW', method = 'GET') => `apiVersion: security.mesh.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  action: ${action}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]
    to: [{operation: {ports: ["8080"], methods: ["${method}"]}}]
`;

test('kubectl get ns lists the bootstrap namespaces through the Table printer', async (t) => {
  const h = await harness(t);
  const r = await kubectl(h, ['get', 'ns']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^NAME\s+STATUS\s+AGE\n/);
  t.regex(r.stdout, /\ndefault\s+Active\s+\d+s\n/);
  t.regex(r.stdout, /\nkube-system\s+Active\s+\d+s\n/);
});

test('kubectl get pods -A -o wide shows IP and NODE columns', async (t) => {
  const h = await harness(t);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: POD() })).code, 0);
  const pod = await call(h.server, 'GET', '/api/v1/namespaces/default/pods/web');
  pod.body.status = { phase: 'Running', podIP: '10.244.1.7' };
  t.is((await call(h.server, 'PUT', '/api/v1/namespaces/default/pods/web/status', pod.body)).status, 200);
  t.is((await call(h.server, 'POST', '/api/v1/namespaces/default/pods/web/binding', { apiVersion: 'v1', kind: 'Binding', metadata: { name: 'web' }, target: { kind: 'Node', name: 'node-1' } })).status, 201);
  const r = await kubectl(h, ['get', 'pods', '-A', '-o', 'wide']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^NAMESPACE\s+NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s/);
  t.regex(r.stdout, /\ndefault\s+web\s+0\/1\s+Running\s+0\s+\d+s\s+10\.244\.1\.7\s+node-1\s/);
});

test('kubectl label, relabel with --overwrite, unlabel and annotate a namespace', async (t) => {
  const h = await harness(t);
  const labels = async () => (await call(h.server, 'GET', '/api/v1/namespaces/default')).body.metadata.labels;
  t.is((await kubectl(h, ['label', 'ns', 'default', 'mesh.io/dataplane-mode=ambient'])).code, 0);
  t.is((await labels())['mesh.io/dataplane-mode'], 'ambient');
  const refused = await kubectl(h, ['label', 'ns', 'default', 'mesh.io/dataplane-mode=none']);
  t.not(refused.code, 0);
  t.regex(refused.stderr, /already has a value \(ambient\)/);
  t.is((await kubectl(h, ['label', 'ns', 'default', 'mesh.io/dataplane-mode=none', '--overwrite'])).code, 0);
  t.is((await labels())['mesh.io/dataplane-mode'], 'none');
  const shown = await kubectl(h, ['get', 'ns', 'default', '--show-labels']);
  t.regex(shown.stdout, /mesh\.io\/dataplane-mode=none/);
  t.is((await kubectl(h, ['label', 'ns', 'default', 'mesh.io/dataplane-mode-'])).code, 0);
  t.false('mesh.io/dataplane-mode' in (await labels()));
  t.is((await kubectl(h, ['annotate', 'ns', 'default', 'mesh.io/owner=team-a'])).code, 0);
  const ns = await call(h.server, 'GET', '/api/v1/namespaces/default');
  t.is(ns.body.metadata.annotations['mesh.io/owner'], 'team-a');
});

for (const [what, manifest, changed, resource] of [
  ['a Pod', POD(), POD('busybox:1.36'), '/api/v1/namespaces/default/pods/web'],
  ['an AuthorizationPolicy', POLICY(), POLICY('DENY', 'POST'), '/apis/security.mesh.io/v1/namespaces/default/authorizationpolicies/allow-web'],
] as const) {
  test(`kubectl apply (client-side, then --server-side) and delete -f for ${what}`, async (t) => {
    const h = await harness(t);
    await applyCrds(h.server);
    const file = join(h.dir, 'manifest.yaml');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, manifest);
    const first = await kubectl(h, ['apply', '-f', file]);
    t.is(first.code, 0, first.stderr);
    t.regex(first.stdout, /created/);
    const created = await call(h.server, 'GET', resource);
    t.truthy(created.body.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']);

    const again = await kubectl(h, ['apply', '-f', file]);
    t.is(again.code, 0, again.stderr);
    t.regex(again.stdout, /unchanged/);
    t.is((await call(h.server, 'GET', resource)).body.metadata.resourceVersion, created.body.metadata.resourceVersion);
    t.is(again.stderr, '', 'no warnings on re-apply');

    await writeFile(file, changed);
    const update = await kubectl(h, ['apply', '-f', file]);
    t.is(update.code, 0, update.stderr);
    t.regex(update.stdout, /configured/);
    t.is(update.stderr, '');

    const ssa = await kubectl(h, ['apply', '--server-side', '-f', file]);
    t.is(ssa.code, 0, ssa.stderr);
    t.regex(ssa.stdout, /serverside-applied/);
    const ssaAgain = await kubectl(h, ['apply', '--server-side', '-f', file]);
    t.is(ssaAgain.code, 0, ssaAgain.stderr);

    const del = await kubectl(h, ['delete', '-f', file]);
    t.is(del.code, 0, del.stderr);
    t.regex(del.stdout, /deleted/);
    t.is((await call(h.server, 'GET', resource)).status, 404);

    // Server-side apply creates when absent (no prior GET), and delete works again.
    const ssaCreate = await kubectl(h, ['apply', '--server-side', '-f', file]);
    t.is(ssaCreate.code, 0, ssaCreate.stderr);
    t.is((await call(h.server, 'GET', resource)).status, 200);
    t.is((await kubectl(h, ['delete', '-f', file])).code, 0);
  });
}

test('kubectl apply of a bad manifest gets a clear error and changes nothing', async (t) => {
  const h = await harness(t);
  await applyCrds(h.server);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: POLICY() })).code, 0);
  const before = await call(h.server, 'GET', '/apis/security.mesh.io/v1/namespaces/default/authorizationpolicies/allow-web');
  for (const args of [['apply', '-f', '-'], ['apply', '--server-side', '-f', '-']]) {
    const bad = await kubectl(h, args, { input: POLICY('PERMIT') });
    t.not(bad.code, 0);
    t.regex(bad.stderr, /spec\.action: Unsupported value: "PERMIT": supported values: "ALLOW", "DENY", "AUDIT", "CUSTOM"/);
  }
  const badPod = await kubectl(h, ['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers: [{name: a, image: x}, {name: a}]\n' });
  t.not(badPod.code, 0);
  t.regex(badPod.stderr, /spec\.containers\[1\]\.name: Duplicate value: "a"/);
  t.regex(badPod.stderr, /spec\.containers\[1\]\.image: Required value/);
  const after = await call(h.server, 'GET', '/apis/security.mesh.io/v1/namespaces/default/authorizationpolicies/allow-web');
  t.deepEqual(after.body, before.body);
  t.is((await call(h.server, 'GET', '/api/v1/namespaces/default/pods/bad')).status, 404);
});

test('kubectl get -w sees a change', async (t) => {
  const h = await harness(t);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: POD() })).code, 0);
  const child = spawn('kubectl', ['get', 'pods', '-w'], { env: { ...process.env, KUBECONFIG: h.kubeconfig, KUBECACHEDIR: join(h.dir, 'kube-cache'), HOME: h.dir } });
  t.teardown(() => {
    if (child.exitCode === null) process.kill(child.pid!, 'SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const until = async (re: RegExp, ms = 15_000) => {
    const end = Date.now() + ms;
    while (!re.test(out) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    return re.test(out);
  };
  t.true(await until(/web\s+0\/1\s+Pending/), out);
  const pod = await call(h.server, 'GET', '/api/v1/namespaces/default/pods/web');
  pod.body.status = { phase: 'Running', containerStatuses: [{ name: 'web', ready: true, restartCount: 0, state: { running: {} } }] };
  t.is((await call(h.server, 'PUT', '/api/v1/namespaces/default/pods/web/status', pod.body)).status, 200);
  t.true(await until(/web\s+1\/1\s+Running/), out);
  process.kill(child.pid!, 'SIGTERM');
});
